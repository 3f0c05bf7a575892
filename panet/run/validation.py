"""The checks of a train.py / test.py run, made once, before any work and before anything is
written; code below this boundary trusts its settings.

Each settings class checks its own fields (`panet.settings`); this module adds what involves the
script, several sections, the hardware or a checkpoint, and the notes a run prints about its
setting. Every problem is one line naming the key, the value given and what is allowed, e.g.

    train.batch_size=0: must be an integer >= 1
    test.resolution='foo': must be one of 'label', 'original'

`config_problems` runs on every command (print_config included), `panet.run.disk.path_problems`
before a run's main function; any problem stops the run with a `ConfigError` (one per line).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import torch

from panet.base.device import (is_device_name, launched_processes, precision_problem,
                               resolve_device, torchrun_problem)
from panet.base.errors import one_line
from panet.base.rules import problem
from panet.data.datasets import DATASETS
from panet.data.protocols import REFERENCE
from panet.models.encoders import build_encoder
from panet.models.factory import (DEFAULT_FACTORY, FactoryError, factory_levels, own_loss,
                                  query_logits, trial_model)
from panet.models.numerics import Numerics
from panet.training import FREEZE_CHOICES
from panet.settings import (MAX_SEED, SCRIPT_SECTIONS, EpisodeSetting, Settings, TrainSettings,
                            describe_setting, plain)

# keys that may differ between a checkpoint and the run resuming it: where the data is, how
# fast it is read, how long the run goes on, where and how often it writes, where it computes
RESUMABLE = ("device", "tf32", "memory_format", "data.root", "data.workers", "data.cache_dir",
             "data.lists_dir", "train.steps", "train.resume", "train.output_dir",
             "train.checkpoint_every", "train.snapshot_every", "train.log_every")
TEST_SECONDS_PER_IMAGE = 0.02  # VGG-16 forward at 417 x 417 on a V100-class GPU (estimate)


def config_problems(composition) -> List[str]:
    """Every key of the sections the script reads that breaks its rule, the keys given that it
    does not read, and the combinations that cannot work (`composition`: `Composition`)."""
    script, settings = composition.script, composition.settings
    problems = [line for section in SCRIPT_SECTIONS[script]
                for line in settings.section(section).problems()]
    for hardware in (device_problem(settings.run.device), torchrun_problem(settings.run.device),
                     precision_problem(settings.run.precision, settings.run.device)):
        if hardware:
            problems.append(hardware)
            break  # the first says what to fix
    other = "test" if script == "train" else "train"
    problems += [problem(key, settings.value(key), f"{script}.py does not read {other}.* keys "
                                                   f"(they configure {other}.py): drop it")
                 for key in composition.command_line_keys() if key.startswith(other + ".")]
    if problems:
        return problems
    problems = model_problems(settings, script)
    checks = _train_problems if script == "train" else _test_problems
    return problems + checks(settings, composition)


def device_problem(device: str) -> Optional[str]:
    """One line when `device` names a CUDA device torch cannot use here, else None."""
    if not is_device_name(device):
        return None  # the setting's rule says so
    try:
        resolve_device(device)
    except RuntimeError as error:
        return problem("device", device, one_line(error))
    return None


def model_problems(settings: Settings, script: str) -> List[str]:
    """What model.factory makes, built on the meta device, must follow the method interface; a
    model with its own loss takes no other train.align_weight than the default."""
    model = settings.model
    if model.factory == DEFAULT_FACTORY:
        return []
    try:
        made = trial_model(model.factory, model.encoder, model.alpha)
        trial_forward(made, settings.data)
    except FactoryError as error:
        return [problem("model.factory", model.factory, str(error))]
    run = settings.run
    if not callable(getattr(made, "use_numerics", None)) and run.numerics() != Numerics():
        return [problem("precision", run.precision,
                        f"the model of model.factory={model.factory!r} has no `use_numerics`: "
                        "it computes in fp32, contiguous (add one to run in others)")]
    weight = settings.train.align_weight
    if script == "train" and weight != TrainSettings().align_weight and own_loss(made):
        return [problem("train.align_weight", weight,
                        f"the model of model.factory={model.factory!r} defines its own `loss`, "
                        "which replaces PANet's L_seg + align_weight * L_PAR: drop it (and "
                        "`noalign`)")]
    return []


def trial_forward(model, data: EpisodeSetting) -> None:
    """Run `model` (built on the meta device) on one episode of the run's shapes; FactoryError
    (one line) unless it gives B x Q x (1 + W) x h x w logits. A forward needing values
    (k-means, `.item()`) cannot run on the meta device: it is checked when the run starts."""
    height, width = (data.size, data.size) if isinstance(data.size, int) else data.size
    with torch.device("meta"):
        support_fg = torch.empty(1, data.ways, data.shots, height, width)
        inputs = (torch.empty(1, data.ways, data.shots, 3, height, width), support_fg,
                  support_fg, torch.empty(1, data.queries, 3, height, width))
        try:
            logits = query_logits(model(*inputs), model)
        except Exception as error:  # the user's code: any error is a reason to stop ...
            if "meta" in str(error):  # ... but a step that needs values, which meta has not
                return
            raise FactoryError(f"its forward on a {data.ways}-way {data.shots}-shot episode "
                               f"raised {type(error).__name__}: {one_line(error)}") from error
    expected = (1, data.queries, 1 + data.ways)
    if tuple(logits.shape[:3]) != expected:
        raise FactoryError(f"its forward gives logits of shape {tuple(logits.shape)}, not "
                           f"B x Q x (1 + W) x h x w = {expected} x h x w")


def encoder_levels(model) -> List[str]:
    """The level names of the encoder `model` (settings) makes, built on the meta device."""
    with torch.device("meta"):
        return list(build_encoder(model.encoder, None, factory_levels(model.factory)).levels)


def _train_problems(settings: Settings, composition) -> List[str]:
    problems = []
    freeze = settings.train.freeze_encoder
    if freeze not in FREEZE_CHOICES and freeze not in encoder_levels(settings.model):
        problems.append(problem("train.freeze_encoder", freeze,
                                f"must be {' or '.join(FREEZE_CHOICES)} or a level of the "
                                f"{settings.model.encoder} encoder "
                                f"({', '.join(encoder_levels(settings.model))})"))
    if settings.data.weak != "dense":
        problems.append(problem("data.weak", settings.data.weak,
                                "must be 'dense' for training: weak supports are a test-time "
                                "setting (Table 6)"))
    world_size = launched_processes()
    if settings.train.batch_size % world_size:
        problems.append(problem("train.batch_size", settings.train.batch_size,
                                f"must be a multiple of the {world_size} processes"))
    checkpoint = composition.checkpoint
    if checkpoint is not None and checkpoint.format == "panet":
        problems += resume_problems(settings, composition)
    return problems


def resume_problems(settings: Settings, composition) -> List[str]:
    """The keys given beside train.resume that differ from the checkpoint's, outside
    `RESUMABLE`."""
    stored = composition.checkpoint.config
    problems = []
    for key in composition.given_keys():
        section, _, name = key.rpartition(".")
        then = stored.get(section, {}) if section else stored
        if key in RESUMABLE or section == "test" or name not in then:
            continue  # a key newer than the checkpoint keeps its default
        now = settings.value(key)
        if plain(now) != then[name]:
            problems.append(problem(key, now, f"the checkpoint was trained with {then[name]!r}; "
                                              "a resumed run keeps its setting, resuming would "
                                              f"mix two runs (only {', '.join(RESUMABLE)} may "
                                              "change)"))
    return problems


def _test_problems(settings: Settings, composition) -> List[str]:
    test, checkpoint = settings.test, composition.checkpoint
    if settings.run.seed + test.runs - 1 > MAX_SEED:
        return [problem("seed", settings.run.seed, f"test run r draws its episodes from seed + r:"
                                                   f" must be at most {MAX_SEED - test.runs + 1} "
                                                   f"with test.runs={test.runs}")]
    if test.episodes_file is not None:
        path = Path(test.episodes_file).expanduser()
        if not path.is_file():
            return [problem("test.episodes_file", test.episodes_file,
                            "no such file: it must be an episode file of scripts/episodes.py")]
        if test.runs != 1:
            return [problem("test.runs", test.runs, "must be 1 with test.episodes_file (the file "
                                                    "is the one run's episodes)")]
    if settings.data.episode_rule in REFERENCE and test.rule != "corrected":
        return [problem("test.rule", test.rule,
                        f"must be corrected with data.protocol={settings.data.episode_rule} (its "
                        "metric counts every label of every query; the named configs of the "
                        "cross-domain datasets set it)")]
    if test.notrain and test.checkpoint:
        return [problem("test.checkpoint", test.checkpoint,
                        "must be None with test.notrain=True (PANet-init evaluates the "
                        "ImageNet-initialised encoder): drop one of the two")]
    if checkpoint is None:
        return []
    if checkpoint.format == "released":
        return [problem(key, settings.value(key), "a released snapshot is PANet's VGG-16: "
                                                  f"drop {key} (model.alpha and model.factory "
                                                  "apply to it)")
                for key in ("model.encoder", "model.weights")
                if composition.given(key) and plain(settings.value(key)) !=
                composition.base.get(key)]
    return [problem(key, settings.value(key),
                    f"the checkpoint holds a model with {key}={composition.base[key]!r}: a "
                    "trained model's architecture cannot change at test time")
            for key in composition.command_line_keys()
            if key.startswith("model.") and key != "model.weights" and key in composition.base
            and plain(settings.value(key)) != composition.base[key]]


def protocol_overrides(composition) -> Optional[str]:
    """One line naming the given values that test a checkpoint on another protocol (dataset,
    input size, fold or classes) than it trained on, or None."""
    settings, base, changed = composition.settings, composition.base, []
    for key in ("data.name", "data.size", "data.fold", "data.n_folds", "data.test_classes"):
        if composition.given(key) and key in base and plain(settings.value(key)) != base[key]:
            changed.append(f"{key}={plain(settings.value(key))!r} (trained: {base[key]!r})")
    if not changed:
        return None
    return "testing on another protocol than the checkpoint's: " + ", ".join(changed)


def precision_override(composition) -> Optional[str]:
    """One line when a checkpoint trained in one precision (released: fp32) is tested in
    another, or None."""
    checkpoint = composition.checkpoint
    if checkpoint is None:
        return None
    trained = (checkpoint.config or {}).get("precision", "fp32")
    tested = composition.settings.run.precision
    if trained == tested:
        return None
    return (f"warning: {checkpoint.path} was trained with precision={trained} but is tested with "
            f"precision={tested} (add precision={trained} to test it as it was trained)")


def trained_setting(composition) -> Optional[EpisodeSetting]:
    """The episode setting the tested checkpoint trained on (None: PANet-init, or a released
    snapshot whose path names none)."""
    checkpoint, data = composition.checkpoint, composition.settings.data
    if checkpoint is None:
        return None
    if checkpoint.format == "panet":
        return EpisodeSetting.from_config(checkpoint.config["data"])
    named = checkpoint.path_setting
    if named is None:
        return None
    return data.replace(name="pascal" if named.dataset == "voc" else "coco", fold=named.fold,
                        n_folds=4, fold_style="contiguous", test_classes=None)


def classes_seen_in_training(composition, source) -> Optional[str]:
    """One line naming the test classes the tested checkpoint trained on, or None. `source`:
    the test data."""
    data, trained = composition.settings.data, trained_setting(composition)
    if trained is None or trained.name != data.name or (
            not DATASETS[data.name].shared_classes and trained.split(True) != data.split(False)):
        return None  # another dataset or split: its class ids mean other classes
    seen = sorted(set(trained.classes(source, True)) & set(data.classes(source, False)))
    if not seen:
        return None
    return (f"testing on classes the checkpoint trained on: "
            f"{', '.join(source.class_name(c) for c in seen)} (trained: "
            f"{describe_setting(trained)}; tested: {describe_setting(data)}); these numbers "
            "are not few-shot results")


def episode_count_warning(settings: Settings) -> Optional[str]:
    """One line when a test would send so many images through the encoder that it takes more
    than a day at `TEST_SECONDS_PER_IMAGE` (per-episode path: an upper bound), else None."""
    data, test = settings.data, settings.test
    images = test.runs * test.episodes * (data.ways * data.shots + data.queries)
    hours = images * TEST_SECONDS_PER_IMAGE / 3600
    if hours <= 24:
        return None
    return (f"warning: test.runs={test.runs} x test.episodes={test.episodes:,} episodes send up "
            f"to {images:,} images through the encoder: about {hours:,.0f} hours at "
            f"{TEST_SECONDS_PER_IMAGE} s per image on a V100-class GPU (fewer on the default "
            "path, which encodes each distinct image once); PANet's tests are 5 x 1,000")
