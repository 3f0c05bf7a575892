"""Checks of a train.py / test.py run, before any work starts.

Each settings class checks its own fields (`panet.settings`); this module adds what involves
the script, several sections, what the command line gave, or the file system. Every problem is
one line naming the key, the value given and what is allowed, e.g.

    train.batch_size=0: must be an integer >= 1
    test.resolution='foo': must be one of 'label', 'original'

`panet.run.experiments` runs `config_problems` on every command (print_config included) and
`path_problems` before a run's main function; any problem stops the run with a `ConfigError`,
which sacred prints as those lines alone (no traceback) with a non-zero exit status. Nothing is
written before: the run folder is made after these checks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

from sacred.utils import SacredError

from panet.data.datasets import dataset_root_problem
from panet.base.device import precision_problem, torchrun_problem
from panet.base.distributed import launched_processes
from panet.base.files import writable_problem
from panet.models.factory import DEFAULT_FACTORY, FactoryError, own_loss, trial_model
from panet.base.rules import problem
from panet.run.folder import RESULTS_FILE, planned_run_dir
from panet.settings import SCRIPT_SECTIONS, Settings, TrainSettings

# keys that may differ between a checkpoint and the run resuming it: where the data is, how
# fast it is read, how long the run goes on, where and how often it writes, where it computes
RESUMABLE = ("device", "tf32", "memory_format", "data.root", "data.workers", "data.cache_dir",
             "data.lists_dir", "train.steps", "train.resume", "train.output_dir",
             "train.checkpoint_every", "train.snapshot_every", "train.log_every")
# what a released snapshot's path must give, when it names no setting
RELEASED_KEYS = {"data.name": "voc or coco", "data.fold": "data.fold=<i>",
                 "data.shots": "1shot or 5shot"}


class ConfigError(SacredError, ValueError):
    """A configuration that cannot run; sacred prints the message without a traceback."""

    def __init__(self, problems: List[str]):
        super().__init__("\n".join(problems), print_traceback=False)
        self.problems = list(problems)


def config_problems(settings: Settings, request) -> List[str]:
    """Every key of the sections `request.script` reads that breaks its rule, the keys given
    that the script does not read, and the combinations that cannot work. `request`:
    `panet.run.experiments.Request` (what was given, the checkpoint)."""
    script = request.script
    problems = [line for section in SCRIPT_SECTIONS[script]
                for line in settings.section(section).problems()]
    for hardware in (torchrun_problem(settings.run.device),
                     precision_problem(settings.run.precision, settings.run.device)):
        if hardware:
            problems.append(hardware)
    other = "test" if script == "train" else "train"
    problems += [problem(key, settings.value(key), f"{script}.py does not read {other}.* keys "
                                                   f"(they configure {other}.py): drop it")
                 for key in request.command_line_keys() if key.startswith(other + ".")]
    if problems:
        return problems
    problems = model_problems(settings, request)
    if script == "train":
        return problems + _train_problems(settings, request)
    return problems + _test_problems(settings, request)


def model_problems(settings: Settings, request) -> List[str]:
    """What model.factory makes, built on the meta device (no memory, no arithmetic): it must
    follow PANet's interface; a model with its own loss takes no other train.align_weight than
    the default (`noalign` would not switch anything off)."""
    model = settings.model
    if model.factory == DEFAULT_FACTORY:
        return []
    try:
        made = trial_model(model.factory, model.encoder, model.alpha)
    except FactoryError as error:
        return [problem("model.factory", model.factory, str(error))]
    weight = settings.train.align_weight
    if (request.script == "train" and weight != TrainSettings().align_weight
            and own_loss(made)):
        return [problem("train.align_weight", weight,
                        f"the model of model.factory={model.factory!r} defines its own `loss`, "
                        "which replaces PANet's L_seg + align_weight * L_PAR: drop it (and "
                        "`noalign`)")]
    return []


def _train_problems(settings: Settings, request) -> List[str]:
    problems = []
    if settings.data.weak != "dense":
        problems.append(problem("data.weak", settings.data.weak,
                                "must be 'dense' for training: weak supports are a test-time "
                                "setting (Table 6)"))
    world_size = launched_processes()
    if settings.train.batch_size % world_size:
        problems.append(problem("train.batch_size", settings.train.batch_size,
                                f"must be a multiple of the {world_size} processes"))
    checkpoint = request.checkpoint
    if checkpoint is not None and checkpoint.format == "panet":
        problems += resume_problems(checkpoint.config, settings, request)
    return problems


def resume_problems(stored: dict, settings: Settings, request) -> List[str]:
    """The keys given beside train.resume that differ from the checkpoint's `stored` config but
    may not change when resuming (anything outside `RESUMABLE`)."""
    problems = []
    for key in request.given:
        section, _, name = key.rpartition(".")
        then = stored.get(section, {}) if section else stored
        if key in RESUMABLE or section == "test" or name not in then:
            continue  # a key newer than the checkpoint keeps its default
        now = settings.value(key)
        if _plain(now) != then[name]:
            problems.append(problem(key, now, f"the checkpoint was trained with {then[name]!r}; "
                                              "a resumed run keeps its setting, resuming would "
                                              f"mix two runs (only {', '.join(RESUMABLE)} may "
                                              "change)"))
    return problems


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, tuple) else value


def _test_problems(settings: Settings, request) -> List[str]:
    test, checkpoint = settings.test, request.checkpoint
    if test.notrain and test.checkpoint:
        return [problem("test.checkpoint", test.checkpoint,
                        "must be None with test.notrain=True (PANet-init evaluates the "
                        "ImageNet-initialised encoder): drop one of the two")]
    if checkpoint is None:
        return []
    stored = request.base
    return [problem(key, settings.value(key),
                    f"the checkpoint holds a model with {key}={stored[key]!r}: a trained "
                    "model's architecture cannot change at test time")
            for key in request.command_line_keys()
            if key.startswith("model.") and key != "model.weights"
            and key in stored and _plain(settings.value(key)) != stored[key]]


def protocol_overrides(settings: Settings, request) -> Optional[str]:
    """One line naming the given values that test a checkpoint on another protocol than it was
    trained on (dataset, input size, fold or classes), or None."""
    base, changed = request.base, []
    for key in ("data.name", "data.size", "data.fold", "data.n_folds", "data.test_classes"):
        if key in request.given and key in base and _plain(settings.value(key)) != base[key]:
            changed.append(f"{key}={_plain(settings.value(key))!r} (trained: {base[key]!r})")
    if not changed:
        return None
    return "testing on another protocol than the checkpoint's: " + ", ".join(changed)


def precision_override(settings: Settings, request) -> Optional[str]:
    """One line when a checkpoint trained in one precision is tested in another, or None
    (a released snapshot, trained in float32 by the authors, counts as fp32)."""
    checkpoint = request.checkpoint
    if checkpoint is None:
        return None
    trained = (checkpoint.config or {}).get("precision", "fp32")
    if trained == settings.run.precision:
        return None
    return (f"warning: {checkpoint.path} was trained with precision={trained} but is tested with "
            f"precision={settings.run.precision} (add precision={trained} to test it as it was "
            "trained)")


def path_problems(settings: Settings, request) -> List[str]:
    """What a run would find missing or unwritable on disk: checkpoints, weights, data, output
    folders. Run before a run's main function, so nothing is trained or written first."""
    if request.script == "train":
        return _train_path_problems(settings, request)
    return _test_path_problems(settings, request)


def _weights_problems(settings: Settings) -> List[str]:
    model = settings.model
    path = model.weights_path
    if path is None or path.is_file():
        return []
    return [problem("model.weights", model.weights,
                    f"no such file ({path}); it must be torchvision's ImageNet file of "
                    f"{model.encoder!r}, or None to start from random weights")]


def data_root_problems(settings: Settings) -> List[str]:
    """data.root must be an existing folder (its contents are checked by the dataset)."""
    why = dataset_root_problem(settings.data.name, settings.data.root_path)
    return [] if why is None else [problem("data.root", settings.data.root, why)]


def _writable(key: str, folder: Optional[Any]) -> List[str]:
    if folder is None:
        return []
    why = writable_problem(Path(folder).expanduser())
    return [] if why is None else [problem(key, str(folder), why)]


def _train_path_problems(settings: Settings, request) -> List[str]:
    train = settings.train
    if train.resume is not None:
        if request.checkpoint_error is not None:
            return [problem("train.resume", train.resume, request.checkpoint_error)]
        checkpoint = request.checkpoint
        if checkpoint.format != "panet":
            return [problem("train.resume", train.resume,
                            "a released PANet snapshot holds no optimizer or schedule state to "
                            "continue; convert it (python scripts/convert_checkpoint.py --to "
                            "panet) to test it, or train anew")]
        problems = []
        if train.steps < checkpoint.step:
            problems.append(problem("train.steps", train.steps, f"must be >= {checkpoint.step}, "
                                    f"the step {checkpoint.path} was saved at"))
        target = planned_run_dir(settings.train.output_dir, checkpoint)
        return problems + data_root_problems(settings) + _writable(
            "train.output_dir", target)
    problems = _weights_problems(settings) + data_root_problems(settings)
    if train.output_dir is not None:
        problems += _writable("train.output_dir", train.output_dir)
        held = sorted(Path(train.output_dir).expanduser().glob("checkpoints/*.pt"))
        if held:
            problems.append(problem("train.output_dir", train.output_dir,
                                    f"already holds a run ({held[0]}): continue it with "
                                    f"train.resume={train.output_dir}, or choose another folder"))
    return problems


def _test_path_problems(settings: Settings, request) -> List[str]:
    test = settings.test
    if test.notrain:
        problems = _weights_problems(settings) + data_root_problems(settings)
    elif test.checkpoint is None:
        problems = [problem("test.checkpoint", None,
                            "nothing to evaluate: set test.checkpoint=<a train.py checkpoint, run "
                            "folder or released snapshot>, or add `notrain` to evaluate the "
                            "ImageNet-initialised encoder (PANet-init)")]
    elif request.checkpoint_error is not None:
        problems = [problem("test.checkpoint", test.checkpoint, request.checkpoint_error)]
    else:
        problems = _released_setting_problems(settings, request) + data_root_problems(settings)
    return (problems + _output_problems(settings)
            + _writable("test.cache_dir", test.cache_dir))


def _released_setting_problems(settings: Settings, request) -> List[str]:
    """A released snapshot whose path names no setting needs it on the command line."""
    checkpoint = request.checkpoint
    if checkpoint.format != "released" or checkpoint.path_setting is not None:
        return []
    missing = [hint for key, hint in RELEASED_KEYS.items() if key not in request.given]
    if not missing:
        return []
    return [problem("test.checkpoint", settings.test.checkpoint,
                    "a released PANet snapshot whose path names no setting (expected .../PANet_"
                    "<VOC|COCO>[_align]_sets_<fold>_<W>way_<S>shot_[train]/<run>/snapshots/"
                    f"<step>.pth); give it: {' '.join(missing)} (e.g. `voc 5shot data.fold=2`)")]


def _output_problems(settings: Settings) -> List[str]:
    """test.output_dir: writable, not a training run's folder, and without results unless
    test.overwrite."""
    folder = settings.test.output_dir
    if folder is None:
        return []
    path = Path(folder).expanduser()
    if (path / "checkpoints").is_dir():
        return [problem("test.output_dir", folder,
                        "holds a training run (checkpoints/): test.py would overwrite its record "
                        "(config.json, run.json, metrics.json); choose another folder")]
    if (path / RESULTS_FILE).is_file() and not settings.test.overwrite:
        return [problem("test.output_dir", folder,
                        f"already holds results ({path / RESULTS_FILE}): choose another folder, "
                        "or add test.overwrite=True to replace them")]
    return _writable("test.output_dir", folder)
