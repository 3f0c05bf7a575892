"""The train.py / test.py jobs a table needs: one `Setting` per evaluated configuration, the
`Scale` it runs at, and each job's exact command line (planning; `panet.reproduce.specs` says which
settings a table evaluates).

Jobs are exact command lines, run from the repository root, named after their setting so that
tables share them (Table 2 reads Table 1's test results, Table 5's PANet row is Table 1's,
Table 6 tests Table 1's checkpoints with weak supports). The tests of one set of weights run one
after another and share one feature pass: their commands name one `test.cache_dir` (test.py then
encodes each image once for all of them), removed once the last of them is done:

    python train.py with voc 1way 1shot align data.fold=2 \\
        train.output_dir=<out>/runs/train-voc-fold2-1way-1shot-align
    python test.py with bbox \\
        test.checkpoint=<out>/runs/train-voc-fold2-1way-1shot-align/checkpoints/final.pt \\
        test.output_dir=<out>/runs/test-voc-fold2-1way-1shot-align-bbox
    python test.py with voc notrain 1way 1shot data.fold=2 test.output_dir=...  (PANet-init)

The episode setting of a trained model's test is read by test.py from its checkpoint; the command
names only what differs (weak supports). With another encoder than the paper's VGG-16
(`Scale.encoder`, e.g. resnet50) every job adds its named config and its name ends with it.

A job is *finished* once its output exists (`checkpoints/final.pt` of a train job,
`results.json` of a test job); `scripts/reproduce.py` counts it as done only when the settings
its output records equal the job's own (`panet.settings.fingerprint`).
"""

from __future__ import annotations

import functools
import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from panet.data import synthetic
from panet.base.errors import one_line

REPO_ROOT = Path(__file__).resolve().parents[2]
FOLDS = (0, 1, 2, 3)
QUERIES = 1  # N: one query per episode in every experiment (PROTOCOL §8)

# Paper scale: the config defaults (PROTOCOL §5, §8). Commands do not repeat them; the dry-run
# estimate uses them.
PAPER_STEPS = 30000
PAPER_TEST_RUNS = 5
PAPER_TEST_EPISODES = 1000
PAPER_ENCODER = "vgg16"

# Folders of each benchmark under --data-root: paper scale, and the generated synthetic root.
PAPER_DATA_DIRS = {"voc": "VOC2012", "coco": "COCO"}
SYNTHETIC_DATA_DIRS = {"voc": ".", "coco": synthetic.COCO_DIR}

# A test image costs one forward pass, a training image a forward and a backward pass, which is
# about three forward passes (the backward computes gradients of inputs and of weights).
FORWARD_SHARE_OF_TRAINING = 1 / 3

# Disk budget of the feature cache shared by the tests of one set of weights (test.cache_gb):
# VGG-16 features at 417 take 5.5 MiB per image; the 5 x 1,000 episodes of one PASCAL-5i setting
# use at most 5,361 distinct images (fold 2, 2-way 5-shot; scripts/bench_eval.py --count), 29 GiB.
FEATURE_CACHE_GB = 32.0

PAPER_SEED = 1234  # the configs' seed: the first training seed and every test's episode seed


@dataclass(frozen=True)
class Variant:
    """How we run one of the paper's PANet rows."""

    align: bool = True  # PAR during training (Table 5 switches it off)
    weak: str = "dense"  # support annotation at test time: dense | scribble | bbox (Table 6)
    init: bool = False  # PANet-init: the initial encoder, no episode training (Tables 1-2)


@dataclass(frozen=True)
class Setting:
    """One evaluated configuration: benchmark, fold, episode shape and method variant."""

    dataset: str  # voc | coco (the named configs)
    fold: int
    ways: int
    shots: int
    variant: Variant = Variant()
    seed: int = PAPER_SEED  # training seed (tests always sample their episodes from PAPER_SEED)
    encoder: Optional[str] = None  # None: the scale's default (VGG-16, or small at toy scale)

    @property
    def episode(self) -> str:
        suffix = "" if self.encoder is None else f"-{self.encoder}"
        return f"{self.dataset}-fold{self.fold}-{self.ways}way-{self.shots}shot{suffix}"

    @property
    def train_name(self) -> str:
        seed = "" if self.seed == PAPER_SEED else f"-seed{self.seed}"
        return f"train-{self.episode}-{'align' if self.variant.align else 'noalign'}{seed}"

    @property
    def test_name(self) -> str:
        if self.variant.init:
            return f"test-{self.episode}-init"
        return f"test-{self.train_name[len('train-'):]}-{self.variant.weak}"

    @property
    def weights_name(self) -> str:
        """The weights the test evaluates: its train job's name, or PANet-init's of the fold."""
        return f"init-{self.dataset}-fold{self.fold}" if self.variant.init else self.train_name

    @property
    def released_key(self) -> tuple:
        """What a released snapshot's path names of this setting (`panet.weights.released`)."""
        return (self.dataset, self.variant.align, self.fold, self.ways, self.shots)

    @property
    def images_per_episode(self) -> int:
        """Images one episode sends through the encoder: W * S supports and the queries."""
        return self.ways * self.shots + QUERIES


@dataclass(frozen=True)
class Scale:
    """Where jobs write and how big they are.

    Paper scale: the configs' defaults on the real benchmarks, under `data_root` (its VOC2012/
    and COCO/ folders) or, when None, where configs/voc.yaml and coco.yaml point. Synthetic (toy)
    scale: the generated dataset under `data_root` (PASCAL layout; COCO-json variant in coco/),
    tested on its training split like the paper's runs (released protocol, PROTOCOL §6-7: the
    held-out classes' episodes drawn from the training images), the small encoder
    (configs/small.yaml) at input size `size` (None: that config's), `steps` training steps
    and `test_runs` x `test_episodes` test episodes. `feature_cache_gb`: disk budget of the
    feature cache the tests of one set of weights share (0: none, each test in memory).
    `encoder`: another encoder than the scale's (VGG-16 at paper scale, the small one at toy
    scale), e.g. "resnet50": named in every job's command and name. `released`: a folder of
    snapshots of the authors' released code (`.../PANet_<VOC|COCO>[_align]_sets_<fold>_<W>way_
    <S>shot_[train]/<run>/snapshots/<step>.pth`): each trained setting is tested on the snapshot
    whose path names it (the latest step), nothing is trained, and settings without one stay
    empty. `factory`: another model than PANet (`model.factory`, e.g. your method), given to
    every train job and PANet-init test (the tests of trained models read it from their
    checkpoints); job names stay, so give each method its own `out`.
    """

    out: Path
    synthetic: bool = False
    data_root: Optional[Path] = None
    steps: int = PAPER_STEPS
    test_runs: int = PAPER_TEST_RUNS
    test_episodes: int = PAPER_TEST_EPISODES
    size: Optional[int] = None
    feature_cache_gb: float = FEATURE_CACHE_GB
    seeds: int = 1  # training seeds per model: PAPER_SEED, PAPER_SEED + 1, ...
    encoder: Optional[str] = None  # another encoder than the scale's (e.g. resnet50)
    released: Optional[Path] = None  # a folder of the authors' snapshots: test them, train none
    factory: Optional[str] = None  # another model than PANet (model.factory)

    def __post_init__(self):
        if self.synthetic and self.data_root is None:
            raise ValueError("synthetic scale needs data_root (the generated dataset's folder)")
        toy = (self.steps, self.test_runs, self.test_episodes, self.size)
        if not self.synthetic and toy != (PAPER_STEPS, PAPER_TEST_RUNS, PAPER_TEST_EPISODES, None):
            raise ValueError("steps, test runs/episodes and size are toy-scale knobs: the paper "
                             "scale keeps the configs' defaults (add --synthetic)")
        if min(self.steps, self.test_runs, self.test_episodes) < 1:
            raise ValueError(f"steps, test_runs and test_episodes must be >= 1, got {toy[:3]}")
        if not self.feature_cache_gb >= 0:
            raise ValueError(f"feature_cache_gb must be >= 0, got {self.feature_cache_gb}")
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")

    @property
    def training_seeds(self) -> Tuple[int, ...]:
        return tuple(PAPER_SEED + index for index in range(self.seeds))

    def released_snapshot(self, setting: "Setting") -> Optional[Path]:
        """The released snapshot of a trained setting under `released` (None: none)."""
        return released_snapshots(self.released).get(setting.released_key)

    def run_dir(self, job: str) -> Path:
        return self.out / "runs" / job

    def feature_cache(self, weights: str) -> Path:
        return self.out / "feature_cache" / weights

    def data_root_of(self, dataset: str) -> Optional[Path]:
        """The data.root of `dataset` at this scale (None: the named config's default)."""
        if self.data_root is None:
            return None
        folders = SYNTHETIC_DATA_DIRS if self.synthetic else PAPER_DATA_DIRS
        return (self.data_root / folders[dataset]).resolve()

    def dataset_config(self, dataset: str) -> Tuple[List[str], List[str]]:
        """(named configs, config updates) that select `dataset` (and the encoder and model)
        at this scale."""
        root = self.data_root_of(dataset)
        updates = [] if root is None else [f"data.root={root}"]
        if self.factory is not None:
            updates.append(f"model.factory={self.factory}")
        if not self.synthetic:
            return [dataset, *([self.encoder] if self.encoder else [])], updates
        if self.size is not None:
            updates.append(f"data.size={self.size}")
        if self.encoder is not None:  # beside `small`, which sets the toy scale's encoder
            updates.append(f"model.encoder={self.encoder}")
        if dataset == "voc":  # test on the training split's images, as the released protocol
            return ["synthetic", "small"], updates + ["data.test_split=trainaug"]
        return ["coco", "small"], updates


@dataclass(frozen=True)
class Job:
    """One run of train.py or test.py: the exact command and the file it leaves when done."""

    name: str
    argv: Tuple[str, ...]  # "python", the script, its arguments
    output: Path  # checkpoints/final.pt (train) or results.json (test)
    needs: Tuple[str, ...]  # jobs whose output this one reads
    images: int  # images through the encoder (steps x episode images, or runs x episodes x ...)
    cleanup: Tuple[Path, ...] = ()  # removed once this job is done (a shared feature cache)

    @property
    def script(self) -> str:
        """ "train" or "test" """
        return Path(self.argv[1]).stem

    @property
    def trains(self) -> bool:
        return self.script == "train"

    @property
    def command(self) -> str:
        return shlex.join(self.argv)

    def done(self) -> bool:
        return self.output.is_file()

    def partial_checkpoint(self) -> Optional[Path]:
        """The last.pt of an unfinished train job (resuming continues it exactly), else None."""
        last = self.output.parent / "last.pt"
        return last if self.trains and not self.done() and last.is_file() else None

    def gpu_seconds(self, seconds_per_training_image: float) -> float:
        share = 1.0 if self.trains else FORWARD_SHARE_OF_TRAINING
        return self.images * seconds_per_training_image * share


def train_job(setting: Setting, scale: Scale) -> Job:
    """The train.py run whose checkpoint `setting` evaluates (its weak supports do not matter)."""
    if setting.variant.init:
        raise ValueError(f"{setting.test_name}: PANet-init evaluates the untrained encoder")
    run = scale.run_dir(setting.train_name)
    named, updates = scale.dataset_config(setting.dataset)
    named += [f"{setting.ways}way", f"{setting.shots}shot",
              "align" if setting.variant.align else "noalign"]
    updates += [f"data.fold={setting.fold}"]
    if setting.seed != PAPER_SEED:
        updates.append(f"seed={setting.seed}")
    if scale.synthetic:
        updates.append(f"train.steps={scale.steps}")
    updates.append(f"train.output_dir={run}")
    return Job(setting.train_name,
               ("python", "train.py", "with", *named, *updates),
               output=run / "checkpoints" / "final.pt", needs=(),
               images=scale.steps * setting.images_per_episode)


def test_job(setting: Setting, scale: Scale, feature_cache: Optional[Path] = None) -> Job:
    """The test.py run of `setting`: a trained checkpoint (setting read from it), or PANet-init;
    with `feature_cache`, its encoder features go to (or come from) that folder."""
    run = scale.run_dir(setting.test_name)
    if setting.variant.init:
        named, updates = scale.dataset_config(setting.dataset)
        named += ["notrain", f"{setting.ways}way", f"{setting.shots}shot"]
        updates += [f"data.fold={setting.fold}"]
        needs: Tuple[str, ...] = ()
    else:
        named = [] if setting.variant.weak == "dense" else [setting.variant.weak]
        root = scale.data_root_of(setting.dataset)
        updates = [] if root is None else [f"data.root={root}"]
        if scale.released is not None:
            updates.append(f"test.checkpoint={scale.released_snapshot(setting)}")
            needs = ()
        else:
            trained = train_job(setting, scale)
            updates.append(f"test.checkpoint={trained.output}")
            needs = (trained.name,)
    if scale.synthetic:
        updates += [f"test.runs={scale.test_runs}", f"test.episodes={scale.test_episodes}"]
    if feature_cache is not None:
        updates += [f"test.cache_dir={feature_cache}", f"test.cache_gb={scale.feature_cache_gb}"]
    updates.append(f"test.output_dir={run}")
    return Job(setting.test_name,
               ("python", "test.py", "with", *named, *updates),
               output=run / "results.json", needs=needs,
               images=scale.test_runs * scale.test_episodes * setting.images_per_episode)


def jobs_for(settings: Iterable[Setting], scale: Scale) -> List[Job]:
    """Every job the settings need, each once, grouped by weights: a train job, then the tests
    of its checkpoint one after another. Two or more tests of the same weights share a feature
    cache folder (when scale.feature_cache_gb > 0), removed after the last of them."""
    groups: Dict[str, Dict[str, Setting]] = {}
    for setting in settings:
        if (scale.released is not None and not setting.variant.init
                and scale.released_snapshot(setting) is None):
            continue  # the authors released no model of this setting
        groups.setdefault(setting.weights_name, {}).setdefault(setting.test_name, setting)
    jobs: List[Job] = []
    for weights, tests in groups.items():
        first = next(iter(tests.values()))
        if not first.variant.init and scale.released is None:
            jobs.append(train_job(first, scale))
        shared = len(tests) > 1 and scale.feature_cache_gb > 0
        cache = scale.feature_cache(weights) if shared else None
        group = [test_job(setting, scale, cache) for setting in tests.values()]
        if shared:
            group[-1] = replace(group[-1], cleanup=(cache,))
        jobs += group
    return jobs


@functools.lru_cache(maxsize=4)
def released_snapshots(folder: Optional[Path]) -> Dict[tuple, Path]:
    """The released snapshots under `folder` by the setting their path names (dataset, align,
    fold, ways, shots; `Setting.released_key`), the latest step of each."""
    from panet.weights.released import parse_released_path, released_step

    found: Dict[tuple, Tuple[int, Path]] = {}
    for path in sorted(folder.glob("**/snapshots/*.pth")) if folder is not None else ():
        named, step = parse_released_path(path), released_step(path)
        if named is not None and step is not None:
            key = (named.dataset, named.align, named.fold, named.ways, named.shots)
            if key not in found or step > found[key][0]:
                found[key] = (step, path)
    return {key: path for key, (_, path) in found.items()}


def composition(job: Job, checkpoint=None):
    """The composition (`panet.run.compose`) of `job`'s command line, as its script composes it,
    and checked (ConfigError). A test job's checkpoint must exist, or be given (`checkpoint`, a
    `panet.run.folder.CheckpointRef` standing for the one its train job will write)."""
    from sacred.arg_parser import get_config_updates

    from panet.base.errors import ConfigError
    from panet.run.compose import flatten
    from panet.run.experiments import compose_command
    from panet.run.validation import config_problems

    updates, named = get_config_updates(list(job.argv[job.argv.index("with") + 1:]))
    composed = compose_command(job.script, named, flatten(updates), checkpoint)
    problems = config_problems(composed)
    if problems:
        raise ConfigError(problems)
    return composed


def recorded_config(job: Job) -> Optional[dict]:
    """The config a finished job's output records: a train job's checkpoint, a test job's
    results.json (None when it records none: written before records of the config)."""
    if job.trains:
        from panet.weights.checkpoint import load_checkpoint_header

        return load_checkpoint_header(job.output)["config"]
    import json

    return json.loads(job.output.read_text()).get("config")


def changed_settings(job: Job) -> List[str]:
    """Why a finished job's output is not what the job would compute now: the settings that
    differ between its record and the job's command ([] when none do)."""
    from panet.run.identity import differences, fingerprint

    try:
        recorded = recorded_config(job)
    except (OSError, ValueError) as error:
        return [f"its output cannot be read: {one_line(error)}"]
    if recorded is None:
        return ["its output records no settings (written by an older panet-repro)"]
    try:
        wanted = composition(job).config
    except (ValueError, FileNotFoundError) as error:
        return [f"its command cannot be composed now: {one_line(error)}"]
    return differences(fingerprint(recorded, job.script), fingerprint(wanted, job.script))
