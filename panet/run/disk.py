"""The checks of what a train.py / test.py run reads and writes on disk, made before its main
function runs: its checkpoint (read as data only, its weights checked against the model), its
weights file (torchvision's ImageNet file downloaded when absent), its data (opened, episodes
drawn empty), its output folders and free space. One line per problem, naming the key; the run
reuses what these checks open (`opened_source`, `read_checkpoint`).
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional

from panet.base.download import DownloadError
from panet.base.errors import one_line
from panet.base.files import format_size, free_space, writable_problem
from panet.base.rules import problem
from panet.data import make_source
from panet.data.datasets import dataset_root_problem
from panet.data.builder import draw_episodes
from panet.data.protocols import REFERENCE
from panet.data.sources import Source
from panet.models.builder import weights_problem
from panet.models.encoders import IMAGENET, fetch_imagenet_weights, imagenet_url
from panet.run.compose import CHECKPOINT_KEYS
from panet.run.folder import RUNS_DIR, RunFolder
from panet.settings import EpisodeSetting, Settings
from panet.weights.model_files import ModelFile, read_model_file
from panet.weights.released import RELEASED_PATH_FORM

MIN_FREE_BYTES = 2 ** 19  # a run's record (config, run, sources) before its first file
# what a released snapshot's path must give, when it names no setting
RELEASED_KEYS = {"data.name": "voc or coco", "data.fold": "data.fold=<i>",
                 "data.shots": "1shot or 5shot"}


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
    """What a run would find missing, unreadable or unwritable on disk (module docstring)."""
    check = _train_path_problems if composition.script == "train" else _test_path_problems
    return check(composition.settings, composition) or space_problems(composition)


def planned_problems(composition, checkpoint_planned: bool, fetch: bool) -> List[str]:
    """`path_problems` of a job of scripts/reproduce.py, checked before the first job starts:
    the checkpoint an earlier job writes (`checkpoint_planned`) is not there yet, the output
    folder may hold the job's own unfinished run or outputs it replaces, and torchvision's
    ImageNet file is downloaded only if `fetch` (not for a dry run)."""
    settings = composition.settings
    if composition.script == "train":
        problems = (_weights_problems(settings, fetch) + data_problems(settings, train=True)
                    + _writable("train.output_dir", settings.train.output_dir))
    else:
        if settings.test.notrain:
            problems = _weights_problems(settings, fetch)
        else:
            problems = [] if checkpoint_planned else (
                _released_setting_problems(composition)
                or checkpoint_problems(settings, composition))
        problems += (data_problems(settings, train=False)
                     + _writable("test.output_dir", settings.test.output_dir)
                     + _writable("test.cache_dir", settings.test.cache_dir))
    return problems or space_problems(composition)


def space_problems(composition) -> List[str]:
    """The run folder's file system must have `MIN_FREE_BYTES` free before sacred writes the
    run's record there."""
    folder = planned_run_folder(composition)
    where = folder.path if folder is not None else Path(RUNS_DIR)
    free = free_space(where)
    if free >= MIN_FREE_BYTES:
        return []
    return [problem(f"{composition.script}.output_dir", str(where),
                    f"{format_size(free)} free there, and a run needs {format_size(MIN_FREE_BYTES)}"
                    " for its record before its first result: free some space or choose another "
                    "folder")]


def _weights_problems(settings: Settings, fetch: bool = True) -> List[str]:
    """The weights file the encoder starts from must be there; torchvision's ImageNet file is
    downloaded when absent if `fetch` (its failure is the problem), else left to the run."""
    model = settings.model
    path = model.weights_path
    if path is None or path.is_file():
        return []
    if model.weights == IMAGENET:
        why = _fetch_problem(model.encoder, imagenet_url(model.encoder), path) if fetch else None
        return [] if why is None else [problem("model.weights", model.weights, why)]
    return [problem("model.weights", model.weights,
                    f"no such file ({path}); it must be torchvision's ImageNet file of "
                    f"{model.encoder!r}, or None to start from random weights")]


@functools.lru_cache(maxsize=None)
def _fetch_problem(encoder: str, url: str, path: Path) -> Optional[str]:
    """Why torchvision's ImageNet file of `encoder` could not be downloaded from `url` to
    `path`, or None: tried once per process (scripts/reproduce.py checks many jobs)."""
    try:
        fetch_imagenet_weights(encoder)
    except DownloadError as error:
        return one_line(error)
    return None


_OPENED: Dict[tuple, Source] = {}  # by `EpisodeSetting.source_key`, the oldest dropped first
KEEP_OPENED = 4


def opened_source(data: EpisodeSetting, train: bool) -> Source:
    """The training (`train`) or test split a run reads (`panet.data.make_source`), opened once
    per `EpisodeSetting.source_key` and shared by the checks, the run and reproduce.py's jobs
    (the last `KEEP_OPENED` are kept)."""
    key = data.source_key(train)
    if key not in _OPENED:
        if len(_OPENED) >= KEEP_OPENED:
            del _OPENED[next(iter(_OPENED))]
        _OPENED[key] = make_source(data, train)
    return _OPENED[key]


def data_problems(settings: Settings, train: bool) -> List[str]:
    """The data a run reads, opened (no image decoded) and its episodes drawn empty: a missing
    root or part of one, a class split that does not fit, more ways than the classes with the
    images an episode needs."""
    data = settings.data
    why = dataset_root_problem(data.name, data.root_path)
    if why is not None:
        return [problem("data.root", data.root, why)]
    try:
        source = opened_source(data, train)
    except (FileNotFoundError, ValueError, OSError) as error:
        return [problem("data.root", data.root, one_line(error))]
    try:
        classes = data.classes(source, train)
    except ValueError as error:
        key = "data.test_classes" if data.test_classes else "data.fold"
        return [problem(key, settings.value(key), one_line(error))]
    test = settings.test
    if not train and test.episodes_file is not None:
        try:
            draw_episodes(source, data, 0, 0, train, test.episodes_file)
        except (ValueError, FileNotFoundError) as error:
            return [problem("test.episodes_file", test.episodes_file, one_line(error))]
        return []
    reference = not train and data.episode_rule in REFERENCE  # every episode drawn: cheap
    try:
        with warnings.catch_warnings():  # classes left out: said when the run draws episodes
            warnings.simplefilter("ignore")
            for run in range(1 if train else test.runs):
                draw_episodes(source, data, test.episodes if reference else 0,
                              settings.run.seed + run, train)
    except (ValueError, FileNotFoundError) as error:
        return [f"data.ways={data.ways}, data.shots={data.shots}, data.queries={data.queries}"
                f"{f', test.episodes={test.episodes}' if reference else ''}: "
                f"{one_line(error)} ({len(classes)} {'training' if train else 'test'} classes "
                f"in {data.name}'s {data.split(train)} split)"]
    return []


@functools.lru_cache(maxsize=1)
def read_checkpoint(path: Path) -> ModelFile:
    """`read_model_file`, once per process: the checks below and the run share it."""
    return read_model_file(path)


def checkpoint_problems(settings: Settings, composition) -> List[str]:
    """The checkpoint a run reads, read as data only, its weights checked against the model
    the settings make (`weights_problem`)."""
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
                    "a released PANet snapshot whose path names no setting (expected "
                    f"{RELEASED_PATH_FORM}); give it: {' '.join(missing)} (e.g. `voc 5shot "
                    "data.fold=2`)")]


def _output_problems(settings: Settings) -> List[str]:
    """test.output_dir: writable, no training run's, without results unless test.overwrite."""
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
