"""The checks of a train.py / test.py run, made once, before any work and before anything is
written; code below this boundary trusts its settings.

Each settings class checks its own fields (`panet.settings`); this module adds what involves the
script, several sections, what was given beside a checkpoint, or the file system. Every problem
is one line naming the key, the value given and what is allowed, e.g.

    train.batch_size=0: must be an integer >= 1
    test.resolution='foo': must be one of 'label', 'original'

`config_problems` runs on every command (print_config included), `path_problems` before a
run's main function; any problem stops the run with a `ConfigError` (one line per problem).
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Any, List, Optional

from panet.base.device import (is_device_name, launched_processes, precision_problem,
                               resolve_device, torchrun_problem)
from panet.base.errors import one_line
from panet.base.files import format_size, free_space, writable_problem
from panet.base.rules import problem
from panet.data import make_source
from panet.data.datasets import dataset_root_problem
from panet.data.sampling import sample_episodes
from panet.data.sources import Source
from panet.data.folds import split_classes
from panet.models.builder import weights_problem
from panet.models.factory import DEFAULT_FACTORY, FactoryError, own_loss, trial_model
from panet.run.compose import CHECKPOINT_KEYS
from panet.run.folder import RUNS_DIR, RunFolder
from panet.weights.model_files import ModelFile, read_model_file
from panet.settings import (MAX_SEED, SCRIPT_SECTIONS, EpisodeSetting, Settings, TrainSettings,
                            describe_setting, plain)

# keys that may differ between a checkpoint and the run resuming it: where the data is, how
# fast it is read, how long the run goes on, where and how often it writes, where it computes
RESUMABLE = ("device", "tf32", "memory_format", "data.root", "data.workers", "data.cache_dir",
             "data.lists_dir", "train.steps", "train.resume", "train.output_dir",
             "train.checkpoint_every", "train.snapshot_every", "train.log_every")
TEST_SECONDS_PER_IMAGE = 0.02  # VGG-16 forward at 417 x 417 on a V100-class GPU (estimate)
MIN_FREE_BYTES = 2 ** 19  # a run's record (config, run, sources) before its first file
# what a released snapshot's path must give, when it names no setting
RELEASED_KEYS = {"data.name": "voc or coco", "data.fold": "data.fold=<i>",
                 "data.shots": "1shot or 5shot"}


def config_problems(composition) -> List[str]:
    """Every key of the sections the script reads that breaks its rule, the keys given that the
    script does not read, and the combinations that cannot work. `composition`:
    `panet.run.compose.Composition`."""
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
    """What model.factory makes, built on the meta device (no memory, no arithmetic): it must
    follow the method interface; a model with its own loss takes no other train.align_weight
    than the default (`noalign` would not switch anything off)."""
    model = settings.model
    if model.factory == DEFAULT_FACTORY:
        return []
    try:
        made = trial_model(model.factory, model.encoder, model.alpha)
    except FactoryError as error:
        return [problem("model.factory", model.factory, str(error))]
    weight = settings.train.align_weight
    if script == "train" and weight != TrainSettings().align_weight and own_loss(made):
        return [problem("train.align_weight", weight,
                        f"the model of model.factory={model.factory!r} defines its own `loss`, "
                        "which replaces PANet's L_seg + align_weight * L_PAR: drop it (and "
                        "`noalign`)")]
    return []


def _train_problems(settings: Settings, composition) -> List[str]:
    problems = []
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
    """The keys given beside train.resume that differ from the checkpoint's but may not change
    when resuming (anything outside `RESUMABLE`)."""
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
    """One line naming the given values that test a checkpoint on another protocol than it was
    trained on (dataset, input size, fold or classes), or None."""
    settings, base, changed = composition.settings, composition.base, []
    for key in ("data.name", "data.size", "data.fold", "data.n_folds", "data.test_classes"):
        if composition.given(key) and key in base and plain(settings.value(key)) != base[key]:
            changed.append(f"{key}={plain(settings.value(key))!r} (trained: {base[key]!r})")
    if not changed:
        return None
    return "testing on another protocol than the checkpoint's: " + ", ".join(changed)


def precision_override(composition) -> Optional[str]:
    """One line when a checkpoint trained in one precision is tested in another, or None
    (a released snapshot, trained in float32 by the authors, counts as fp32)."""
    checkpoint = composition.checkpoint
    if checkpoint is None:
        return None
    trained = (checkpoint.config or {}).get("precision", "fp32")
    tested = composition.settings.run.precision
    if trained == tested:
        return None
    return (f"warning: {checkpoint.path} was trained with precision={trained} but is tested with "
            f"precision={tested} (add precision={trained} to test it as it was trained)")


def _classes(source, data: EpisodeSetting, train: bool) -> List[int]:
    return split_classes(source, train, data.fold, n_folds=data.n_folds,
                         fold_style=data.fold_style, test_classes=data.test_classes)


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
    """One line naming the test classes the tested checkpoint trained on (a fold or class
    override that tests classes the model has seen), or None. `source`: the test data."""
    data, trained = composition.settings.data, trained_setting(composition)
    if trained is None or trained.name != data.name:
        return None  # another dataset: its class ids mean other classes
    seen = sorted(set(_classes(source, trained, True)) & set(_classes(source, data, False)))
    if not seen:
        return None
    return (f"testing on classes the checkpoint trained on: "
            f"{', '.join(source.class_name(c) for c in seen)} (trained: "
            f"{describe_setting(trained)}; tested: {describe_setting(data)}); these numbers "
            "are not few-shot results")


def test_classes(source, data: EpisodeSetting) -> List[int]:
    """The test classes of an episode setting on `source` (`split_classes`)."""
    return _classes(source, data, train=False)


def episode_count_warning(settings: Settings) -> Optional[str]:
    """One line when a test would send so many images through the encoder that it takes more
    than a day at `TEST_SECONDS_PER_IMAGE` (a V100-class GPU, VGG-16 at 417 x 417, the
    per-episode path: an upper bound), else None."""
    data, test = settings.data, settings.test
    images = test.runs * test.episodes * (data.ways * data.shots + data.queries)
    hours = images * TEST_SECONDS_PER_IMAGE / 3600
    if hours <= 24:
        return None
    return (f"warning: test.runs={test.runs} x test.episodes={test.episodes:,} episodes send up "
            f"to {images:,} images through the encoder: about {hours:,.0f} hours at "
            f"{TEST_SECONDS_PER_IMAGE} s per image on a V100-class GPU (fewer on the default "
            "path, which encodes each distinct image once); PANet's tests are 5 x 1,000")


def planned_run_folder(composition) -> Optional[RunFolder]:
    """The run folder asked for (`panet.run.folder`): train.output_dir / test.output_dir when
    given, else the run folder of a resumed checkpoint, else None (a new numbered one)."""
    settings = composition.settings
    output = (settings.train if composition.script == "train" else settings.test).output_dir
    if output is not None:
        return RunFolder(output)
    checkpoint = composition.checkpoint
    return checkpoint.run_folder if composition.script == "train" and checkpoint else None


def path_problems(composition) -> List[str]:
    """What a run would find missing, unreadable or unwritable on disk: checkpoints, weights,
    data, output folders and the space its record needs. Run before a run's main function, so
    nothing is trained or written first."""
    settings = composition.settings
    if composition.script == "train":
        return _train_path_problems(settings, composition) or space_problems(composition)
    return _test_path_problems(settings, composition) or space_problems(composition)


def space_problems(composition) -> List[str]:
    """The run folder's file system must have `MIN_FREE_BYTES` free before sacred writes the
    run's record there (a full disk then says so in one line, leaving nothing half-written)."""
    folder = planned_run_folder(composition)
    where = folder.path if folder is not None else Path(RUNS_DIR)
    free = free_space(where)
    if free >= MIN_FREE_BYTES:
        return []
    return [problem(f"{composition.script}.output_dir", str(where),
                    f"{format_size(free)} free there, and a run needs {format_size(MIN_FREE_BYTES)}"
                    " for its record before its first result: free some space or choose another "
                    "folder")]


def _weights_problems(settings: Settings) -> List[str]:
    model = settings.model
    path = model.weights_path
    if path is None or path.is_file():
        return []
    return [problem("model.weights", model.weights,
                    f"no such file ({path}); it must be torchvision's ImageNet file of "
                    f"{model.encoder!r}, or None to start from random weights")]


@functools.lru_cache(maxsize=4)
def opened_source(data: EpisodeSetting, train: bool) -> Source:
    """The training (`train`) or test split a run reads (`panet.data.make_source`), opened once
    per process: the checks below and the run share it."""
    return make_source(data, train)


def data_problems(settings: Settings, train: bool) -> List[str]:
    """The data a run reads, opened (lists read, no image decoded) and its episodes drawn empty:
    a missing folder or a root missing its parts (the dataset names each part and where it
    comes from), a class split that does not fit the dataset, more ways than the classes that
    have the images an episode needs. One line each, naming the keys."""
    data = settings.data
    why = dataset_root_problem(data.name, data.root_path)
    if why is not None:
        return [problem("data.root", data.root, why)]
    try:
        source = opened_source(data, train)
    except (FileNotFoundError, ValueError, OSError) as error:
        return [problem("data.root", data.root, one_line(error))]
    try:
        classes = _classes(source, data, train)
    except ValueError as error:
        key = "data.test_classes" if data.test_classes else "data.fold"
        return [problem(key, settings.value(key), one_line(error))]
    runs = 1 if train else settings.test.runs
    try:
        with warnings.catch_warnings():  # classes left out: said when the run draws episodes
            warnings.simplefilter("ignore")
            for run in range(runs):
                sample_episodes(source.class_images(), classes, data.ways, data.shots,
                                data.queries, 0, settings.run.seed + run)
    except ValueError as error:
        return [f"data.ways={data.ways}, data.shots={data.shots}, data.queries={data.queries}: "
                f"{one_line(error)} ({len(classes)} {'training' if train else 'test'} classes "
                f"in {data.name}'s {data.split(train)} split)"]
    return []


@functools.lru_cache(maxsize=1)
def read_checkpoint(path: Path) -> ModelFile:
    """`read_model_file`, once per process: the checks below and the run share it."""
    return read_model_file(path)


def checkpoint_problems(settings: Settings, composition) -> List[str]:
    """The checkpoint a run reads, read (as data only) and its weights checked against the
    model the settings make (`weights_problem`: names, shapes, dtypes, finite values)."""
    checkpoint = composition.checkpoint
    key = CHECKPOINT_KEYS[composition.script]
    try:
        why = weights_problem(settings.model, read_checkpoint(checkpoint.path).state)
    except (FileNotFoundError, ValueError) as error:
        why = one_line(error)
    return [] if why is None else [problem(key, checkpoint.given, why)]


def _writable(key: str, folder: Optional[Any]) -> List[str]:
    if folder is None:
        return []
    why = writable_problem(Path(folder).expanduser())
    return [] if why is None else [problem(key, str(folder), why)]


def _train_path_problems(settings: Settings, composition) -> List[str]:
    train, checkpoint = settings.train, composition.checkpoint
    if checkpoint is not None:
        if checkpoint.format != "panet":
            return [problem("train.resume", train.resume,
                            "a released PANet snapshot holds no optimizer or schedule state to "
                            "continue; convert it (python scripts/convert_checkpoint.py --to "
                            "panet) to test it, or train anew")]
        problems = []
        if train.steps < checkpoint.step:
            problems.append(problem("train.steps", train.steps, f"must be >= {checkpoint.step}, "
                                    f"the step {checkpoint.path} was saved at"))
        target = planned_run_folder(composition)
        return (problems + checkpoint_problems(settings, composition)
                + data_problems(settings, train=True)
                + _writable("train.output_dir", None if target is None else target.path))
    problems = _weights_problems(settings) + data_problems(settings, train=True)
    if train.output_dir is not None:
        problems += _writable("train.output_dir", train.output_dir)
        held = RunFolder(train.output_dir).saved_checkpoints()
        if held:
            problems.append(problem("train.output_dir", train.output_dir,
                                    f"already holds a run ({held[0]}): continue it with "
                                    f"train.resume={train.output_dir}, or choose another folder"))
    return problems


def _test_path_problems(settings: Settings, composition) -> List[str]:
    test = settings.test
    if test.notrain:
        problems = _weights_problems(settings) + data_problems(settings, train=False)
    elif test.checkpoint is None:
        problems = [problem("test.checkpoint", None,
                            "nothing to evaluate: set test.checkpoint=<a train.py checkpoint, run "
                            "folder or released snapshot>, or add `notrain` to evaluate the "
                            "ImageNet-initialised encoder (PANet-init)")]
    else:
        problems = (_released_setting_problems(composition)
                    or checkpoint_problems(settings, composition)
                    + data_problems(settings, train=False))
    return (problems + _output_problems(settings)
            + _writable("test.cache_dir", test.cache_dir))


def _released_setting_problems(composition) -> List[str]:
    """A released snapshot whose path names no setting needs it on the command line."""
    checkpoint = composition.checkpoint
    if checkpoint.format != "released" or checkpoint.path_setting is not None:
        return []
    missing = [hint for key, hint in RELEASED_KEYS.items() if not composition.given(key)]
    if not missing:
        return []
    return [problem("test.checkpoint", checkpoint.given,
                    "a released PANet snapshot whose path names no setting (expected .../PANet_"
                    "<VOC|COCO>[_align]_sets_<fold>_<W>way_<S>shot_[train]/<run>/snapshots/"
                    f"<step>.pth); give it: {' '.join(missing)} (e.g. `voc 5shot data.fold=2`)")]


def _output_problems(settings: Settings) -> List[str]:
    """test.output_dir: writable, not a training run's folder, and without results unless
    test.overwrite."""
    folder = settings.test.output_dir
    if folder is None:
        return []
    run = RunFolder(folder)
    if run.holds_training():
        return [problem("test.output_dir", folder,
                        "holds a training run (checkpoints/): test.py would overwrite its record "
                        "(config.json, run.json, metrics.json); choose another folder")]
    if run.results.is_file() and not settings.test.overwrite:
        return [problem("test.output_dir", folder,
                        f"already holds results ({run.results}): choose another folder, "
                        "or add test.overwrite=true to replace them")]
    return _writable("test.output_dir", folder)
