"""The configuration of train.py and test.py, in one place: sacred ingredients built from the
settings classes (`panet.settings`: defaults, rules and docs), and named configs.

Both scripts see the same tree, so any named config composes with either:

    data   dataset, fold and episode setting (PROTOCOL §5-8, §10)
    model  encoder and its initialisation (§1, §3)
    train  optimisation schedule, PAR weight, checkpoints (§4-5)
    test   checkpoint, runs x episodes, metric rule and resolution (§8-9)

What runs is what was asked (`PanetExperiment.prepare`):

- Named configs (configs/*.yaml) compose in any order: `python train.py with voc 5shot
  data.fold=2`. Where two set one key to different values, a config of that one key refines a
  config of several (`resnet50` beside `fast`: a ResNet at `fast`'s scale); two of one key
  (`1shot 5shot`) or two of several (`voc coco`, `small fast`) are refused.
- A checkpoint (train.resume, test.checkpoint) is resolved once (`panet.weights.model_files
  .resolve_checkpoint`), and its stored settings become the base beneath the named configs and
  the command line: every value given explicitly is applied, whether or not it equals a
  default. (For a released snapshot, the base is the setting its path names.)
- The keys given, and where each came from, are kept (`Request`) for validation and records.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import yaml

from sacred import Experiment, Ingredient
from sacred.config.config_dict import ConfigDict
from sacred.utils import SacredError

from panet.base.errors import OneLineError
from panet.weights.model_files import CheckpointRef, resolve_checkpoint
from panet.settings import SECTIONS, RunSettings, Settings
from panet.run.validation import ConfigError, config_problems, path_problems

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
CHECKPOINT_KEYS = {"train": "train.resume", "test": "test.checkpoint"}
BASE_CONFIG = "checkpoint settings"  # the named config holding a checkpoint's stored settings
# data.* keys that belong to one dataset (its files, splits and class split): a checkpoint's
# values give way to the defaults when another dataset is given
DATASET_KEYS = ("root", "train_split", "test_split", "year", "lists_dir", "cache_dir", "n_folds",
                "fold_style", "test_classes")
FOLD_KEYS = ("data.fold", "data.n_folds", "data.fold_style")
RESUMED_RUN_KEYS = ("precision", "memory_format")  # top-level keys a resumed run keeps


class DocumentedConfig(ConfigDict):
    """A sacred config from a settings class: its defaults, with each field's doc as the
    comment `print_config` shows."""

    def __init__(self, kind: type):
        super().__init__(kind.defaults())
        self.field_docs = kind.docs()

    def __call__(self, fixed=None, preset=None, fallback=None):
        summary = super().__call__(fixed, preset, fallback)
        summary.docs.update(self.field_docs)
        return summary


def _ingredient(name: str, kind: type) -> Ingredient:
    ingredient = Ingredient(name)
    ingredient.configurations.append(DocumentedConfig(kind))
    return ingredient


INGREDIENTS = [_ingredient(name, kind) for name, kind in SECTIONS.items()]


def flatten(tree: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """{"data": {"fold": 2}} -> {"data.fold": 2} (config values are never dicts)."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def unflatten(flat: Mapping[str, Any]) -> Dict[str, Any]:
    tree: Dict[str, Any] = {}
    for key, value in flat.items():
        *sections, name = key.split(".")
        node = tree
        for section in sections:
            node = node.setdefault(section, {})
        node[name] = value
    return tree


def named_config_files() -> Dict[str, Dict[str, Any]]:
    """Every named config of configs/*.yaml: name -> its values by dotted key."""
    return {path.stem: flatten(yaml.safe_load(path.read_text()) or {})
            for path in sorted(CONFIG_DIR.glob("*.yaml"))}


@dataclass
class Request:
    """What a command line asked for: the keys given (dotted key -> "command line" or "named
    config <name>") and the checkpoint it names, resolved (or why it could not be)."""

    script: str
    given: Dict[str, str] = field(default_factory=dict)
    checkpoint: Optional[CheckpointRef] = None
    checkpoint_error: Optional[str] = None
    base: Dict[str, Any] = field(default_factory=dict)  # the checkpoint's settings, dotted keys

    def command_line_keys(self) -> List[str]:
        return [key for key, origin in self.given.items() if origin == "command line"]

    def source(self, key: str) -> str:
        """Where the value of `key` came from: the command line, a named config, the checkpoint
        (or a released snapshot's path), or the default."""
        overridden = (self.script == "test" and key.startswith("model.") and key in self.base
                      and self.given.get(key) != "command line")  # the checkpoint's model
        if key in self.given and not overridden:
            return self.given[key]
        if key in self.base:
            return "path" if self.checkpoint.format == "released" else "checkpoint"
        return "default"


def checkpoint_base(ref: CheckpointRef, script: str, given: Mapping[str, Any]) -> Dict[str, Any]:
    """The settings a checkpoint contributes beneath what was given (dotted keys): a train.py
    checkpoint's stored data and model settings (for resume also train, seed, precision and
    memory_format), or a released snapshot's path setting. `given`: the values given explicitly,
    by dotted key. The checkpoint's dataset-specific keys give way when another dataset is
    given, its explicit test classes when a fold is."""
    if ref.format == "released":
        if ref.path_setting is None:
            return {}
        setting = ref.path_setting
        dataset = named_config_files()[setting.dataset]
        return {**{key: value for key, value in dataset.items() if key.startswith("data.")},
                **flatten(setting.config_updates()),
                "model.encoder": "vgg16", "model.weights": None}
    sections = ("data", "model", "train") if script == "train" else ("data", "model")
    base = {key: value for key, value in flatten(ref.config).items()
            if key.split(".")[0] in sections and key != "train.resume"}
    base["model.weights"] = None  # the weights are the checkpoint's
    if script == "train":  # a resumed run also keeps its seed and how its encoder computes
        base["seed"] = ref.config["seed"]
        base.update({key: ref.config[key] for key in RESUMED_RUN_KEYS if key in ref.config})
    if "data.name" in given and given["data.name"] != base.get("data.name"):
        base = {key: value for key, value in base.items()
                if not (key.startswith("data.") and key[len("data."):] in DATASET_KEYS)}
    if any(key in given for key in FOLD_KEYS) and "data.test_classes" not in given:
        base["data.test_classes"] = None
    return base


class PanetExperiment(Experiment):
    """The sacred experiment of train.py (`script="train"`) or test.py (`script="test"`).

    Before a run starts, its configuration is composed by `prepare` (module docstring) and
    checked (`panet.run.validation`): bad values, and for the main function missing files and
    unwritable folders, stop it with one line per problem.
    """

    def __init__(self, name: str, script: str):
        super().__init__(name, ingredients=INGREDIENTS)
        self.script = script
        self.configurations.append(DocumentedConfig(RunSettings))
        self.named_values = named_config_files()
        for name in self.named_values:
            self.add_named_config(name, str(CONFIG_DIR / f"{name}.yaml"))
        self.logger = _sacred_logger()
        self.request = Request(script)

        def check(config, command_name, logger):  # the signature sacred's config hooks need
            settings = Settings.from_config(config)
            problems = config_problems(settings, self.request)
            if not problems and command_name == self.default_command:
                problems = path_problems(settings, self.request)
            if problems:
                raise ConfigError(problems)
            return {}

        self.config_hook(check)

    def prepare(self, config_updates: Optional[Mapping[str, Any]],
                named_configs: Sequence[str]) -> Tuple[Dict[str, Any], List[str]]:
        """Record what was given (`self.request`) and put the named checkpoint's settings
        beneath it; returns the config updates and named configs to run (the checkpoint's
        first). A tested checkpoint's model settings are its own: its model.* keys go into the
        updates, over what named configs say (`fast` on a ResNet model tests the ResNet), and
        model.* keys given on the command line that differ are refused by validation. Raises
        ConfigError when two named configs set one key to different values."""
        request = Request(self.script)
        command_line = flatten(config_updates or {})
        # a named config of one key (`resnet50`, `5shot`) refines one of several (`fast`,
        # `small`) where they disagree; sacred applies later named configs over earlier ones,
        # so the one-key configs go last, whatever order was given
        named_configs = sorted(named_configs, key=lambda name: len(self.named_values.get(
            name, {})) == 1)
        chosen: Dict[str, Tuple[str, Any]] = {}
        clashes = []
        for name in named_configs:
            values = self.named_values.get(name, {})
            for key, value in values.items():
                earlier = chosen.get(key)
                if (earlier is not None and earlier[1] != value
                        and (len(self.named_values[earlier[0]]) == 1) == (len(values) == 1)):
                    clashes.append(f"named configs {earlier[0]!r} and {name!r} both set {key} "
                                   f"({earlier[1]!r}, {value!r}): they choose the same "
                                   "setting; give one of them")
                chosen[key] = (name, value)
        if clashes:
            raise ConfigError(clashes)
        request.given = {**{key: f"named config {name}" for key, (name, _) in chosen.items()},
                         **{key: "command line" for key in command_line}}
        values = {**{key: value for key, (_, value) in chosen.items()}, **command_line}
        self.named_configs.pop(BASE_CONFIG, None)
        checkpoint = values.get(CHECKPOINT_KEYS[self.script])
        if checkpoint:
            try:
                request.checkpoint = resolve_checkpoint(checkpoint)
            except (FileNotFoundError, ValueError) as error:
                request.checkpoint_error = " ".join(str(error).split())
        updates = dict(command_line)
        if request.checkpoint is not None:
            request.base = checkpoint_base(request.checkpoint, self.script, values)
            if request.base:
                self.add_named_config(BASE_CONFIG, unflatten(request.base))
                named_configs = [BASE_CONFIG, *named_configs]
            if self.script == "test":
                updates = {**{key: value for key, value in request.base.items()
                              if key.startswith("model.")}, **command_line}
        self.request = request
        return unflatten(updates), list(named_configs)

    def run(self, command_name=None, config_updates=None, named_configs=(), info=None,
            meta_info=None, options=None):
        config_updates, named_configs = self.prepare(config_updates, named_configs)
        try:
            return super().run(command_name, config_updates, named_configs, info, meta_info,
                               options)
        except OneLineError as error:  # a run folder in use, a full disk: one line, no trace
            raise RunStopped(str(error)) from error


class RunStopped(SacredError):
    """A run stopped by a `panet.base.errors.OneLineError`: sacred prints its message alone."""

    def __init__(self, message: str):
        super().__init__(message, print_traceback=False)



class _ExpectedTypeChanges(logging.Filter):
    """Drops sacred's warning when a key that defaults to a value is set to None or back
    (model.weights=None, train.output_dir=..., test.checkpoint=...): that is how they are used."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("Changed type of config entry") and "NoneType" in message)


def _sacred_logger() -> logging.Logger:
    logger = logging.getLogger("panet")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s - %(name)s - %(message)s"))
        handler.addFilter(_ExpectedTypeChanges())
        logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(logging.INFO)
    return logger
