"""The one composition of a run's configuration, from what was asked: pure (it reads nothing but
what it is given) and the same for train.py, test.py and scripts/reproduce.py.

    composition = compose("test", ["5shot"], {"test.checkpoint": "runs/1"}, checkpoint)
    composition.config    # the tree the run gets: {"seed": ..., "data": {...}, "model": {...}, ...}
    composition.sources   # dotted key -> "command line", "named config 5shot", "checkpoint",
                          # "path" (a released snapshot's) or "default"

Layers, each over the ones before it:

1. the defaults of the settings (`panet.settings`);
2. the settings of the checkpoint named by train.resume / test.checkpoint (`checkpoint_base`):
   settings only, never code or places: its model.factory runs only when the command line names
   it too; its output and cache folders are never taken;
3. the named configs (configs/*.yaml), in any order: first those that set several keys, then
   those that set one key, which refine them (`fast resnet50` is a ResNet at fast's scale); two
   of one kind that set a key differently are refused (`1shot 5shot`), and so is a named config
   whose keys the script does not read (`noalign` on test.py);
4. the command line.

A tested train.py checkpoint's model.* stay its own over named configs; a model.* given on the
command line that differs is refused by validation. Booleans may be typed True or true.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import yaml

from panet.base.rules import problem
from panet.models.factory import DEFAULT_FACTORY
from panet.models.panet import ALPHA
from panet.run.folder import CheckpointRef
from panet.settings import SCRIPT_SECTIONS, Settings
from panet.base.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
CHECKPOINT_KEYS = {"train": "train.resume", "test": "test.checkpoint"}
COMMAND_LINE = "command line"
# data.* keys that belong to one dataset (its files, splits and class split): a checkpoint's
# values give way to the defaults when another dataset is given
DATASET_KEYS = ("root", "train_split", "test_split", "year", "lists_dir", "n_folds",
                "fold_style", "test_classes")
FOLD_KEYS = ("data.fold", "data.n_folds", "data.fold_style")
# places a checkpoint may not supply: where a run writes (and the checkpoint setting itself)
PLACES = ("train.output_dir", "train.resume", "data.cache_dir")
RESUMED_RUN_KEYS = ("seed", "precision", "memory_format")  # top-level keys a resumed run keeps


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


def read_named_config(name: str, known: Mapping[str, Dict[str, Any]]) -> Dict[str, Any]:
    """The values of a named config: one of configs/*.yaml, or a .yaml / .json file's path (as
    sacred allows). Raises ConfigError for any other name."""
    if name in known:
        return known[name]
    path = Path(name).expanduser()
    if path.suffix in (".yaml", ".yml", ".json") and path.is_file():
        text = path.read_text()
        return flatten((json.loads(text) if path.suffix == ".json" else yaml.safe_load(text))
                       or {})
    raise ConfigError([f"unknown named config {name!r}: the named configs are "
                       f"{', '.join(known)} (configs/*.yaml), or a .yaml / .json file"])


@dataclass(frozen=True)
class Composition:
    """A composed configuration (module docstring): the config tree, where each value came from,
    the script, the checkpoint it names and what that contributed (`base`, by dotted key)."""

    script: str
    config: Dict[str, Any]
    sources: Dict[str, str]
    checkpoint: Optional[CheckpointRef] = None
    base: Dict[str, Any] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        return Settings.from_config(self.config)

    def given(self, key: str) -> bool:
        """Whether `key` was given explicitly (command line or named config)."""
        source = self.sources.get(key, "default")
        return source == COMMAND_LINE or source.startswith("named config")

    def given_keys(self) -> List[str]:
        return [key for key in self.sources if self.given(key)]

    def command_line_keys(self) -> List[str]:
        return [key for key, source in self.sources.items() if source == COMMAND_LINE]


def merge_named(script: str, names: Sequence[str],
                known: Mapping[str, Dict[str, Any]]) -> Tuple[Dict[str, Any], Dict[str, str]]:
    """The values of the named configs `names` and which config gave each (module docstring,
    layer 3). Raises ConfigError for unknown names, clashes and configs for the other script."""
    read = {name: read_named_config(name, known) for name in names}
    sections = SCRIPT_SECTIONS[script]
    problems = [f"named config {name!r} sets only keys that {script}.py does not read "
                f"({', '.join(values)}): drop it"
                for name, values in read.items()
                if values and not any(key.split(".")[0] in sections for key in values)]
    values: Dict[str, Any] = {}
    sources: Dict[str, str] = {}
    for one_key in (False, True):  # several-key configs, then the one-key ones over them
        chosen: Dict[str, Tuple[str, Any]] = {}
        for name in (name for name in names if (len(read[name]) == 1) == one_key):
            for key, value in read[name].items():
                if key in chosen and chosen[key][1] != value:
                    problems.append(f"named configs {chosen[key][0]!r} and {name!r} both set "
                                    f"{key} ({chosen[key][1]!r}, {value!r}): they choose the "
                                    "same setting; give one of them")
                chosen[key] = (name, value)
        for key, (name, value) in chosen.items():
            values[key], sources[key] = value, f"named config {name}"
    if problems:
        raise ConfigError(problems)
    return values, sources


def checkpoint_base(ref: CheckpointRef, script: str, given: Mapping[str, Any]) -> Dict[str, Any]:
    """What a checkpoint contributes (module docstring, layer 2), by dotted key: a train.py
    checkpoint's data and model settings (resuming: also train and `RESUMED_RUN_KEYS`), or the
    setting a released snapshot's path names. Its dataset-specific keys give way when `given`
    names another dataset, its explicit test classes when it names a fold."""
    if ref.format == "released":
        if ref.path_setting is None:
            return {}
        setting = ref.path_setting
        dataset = named_config_files()[setting.dataset]
        return {**{key: value for key, value in dataset.items() if key.startswith("data.")},
                **flatten(setting.config_updates()), "model.encoder": "vgg16",
                "model.weights": None, "model.alpha": ALPHA, "model.factory": DEFAULT_FACTORY}
    sections = ("data", "model", "train") if script == "train" else ("data", "model")
    stored = flatten(ref.config)
    base = {key: value for key, value in stored.items()
            if key.split(".")[0] in sections and key not in PLACES}
    base["model.weights"] = None  # the weights are the checkpoint's
    if script == "train":
        base.update({key: stored[key] for key in RESUMED_RUN_KEYS if key in stored})
    if "data.name" in given and given["data.name"] != base.get("data.name"):
        base = {key: value for key, value in base.items()
                if not (key.startswith("data.") and key[len("data."):] in DATASET_KEYS)}
    if any(key in given for key in FOLD_KEYS) and "data.test_classes" not in given:
        base["data.test_classes"] = None
    return base


def _as_typed(key: str, value: Any, defaults: Mapping[str, Any]) -> Any:
    """A command-line value as people type it: 'true' / 'false' for a boolean setting."""
    if isinstance(defaults.get(key), bool) and isinstance(value, str) and \
            value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


def compose(script: str, names: Sequence[str], command_line: Mapping[str, Any],
            checkpoint: Optional[CheckpointRef] = None) -> Composition:
    """The configuration of a `script` run (module docstring). `command_line`: values by dotted
    key; `checkpoint`: the one train.resume / test.checkpoint names, resolved. Raises
    ConfigError for unknown keys and named configs, clashes, and a checkpoint whose
    model.factory is not given."""
    defaults = flatten(Settings.defaults())
    unknown = [key for key in command_line if key not in defaults]
    if unknown:
        raise ConfigError([problem(key, command_line[key], "no such setting (python "
                                   f"{script}.py print_config lists them)") for key in unknown])
    named, sources = merge_named(script, names, named_config_files())
    given = {**named, **{key: _as_typed(key, value, defaults)
                         for key, value in command_line.items()}}
    sources.update({key: COMMAND_LINE for key in command_line})
    base = {} if checkpoint is None else checkpoint_base(checkpoint, script, given)
    if checkpoint is not None and checkpoint.format == "panet":
        _check_factory(script, base, given)
    origin = "path" if checkpoint is not None and checkpoint.format == "released" else "checkpoint"
    values = {**defaults, **base, **given}
    sources = {key: sources.get(key, origin if key in base else "default") for key in values}
    if script == "test" and checkpoint is not None and checkpoint.format == "panet":
        for key in (key for key in base if key.startswith("model.")):  # the model is its own
            if sources[key] != COMMAND_LINE:
                values[key], sources[key] = base[key], origin
    return Composition(script, unflatten(values), sources, checkpoint, base)


def _check_factory(script: str, base: Mapping[str, Any], given: Mapping[str, Any]) -> None:
    """A stored model.factory other than PANet's runs only when it is given too."""
    stored = base.get("model.factory", DEFAULT_FACTORY)
    if stored != DEFAULT_FACTORY and "model.factory" not in given:
        key = CHECKPOINT_KEYS[script]
        raise ConfigError([f"{key}: its model was made by model.factory={stored!r}, and a "
                           "checkpoint supplies settings, never code to import: add "
                           f"model.factory={stored} to the command line to run that code"])
