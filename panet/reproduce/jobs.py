"""The train.py / test.py jobs a table needs: one `Setting` per evaluated configuration, the
`Scale` it runs at, and each job's exact command line, run from the repository root:

    python train.py with voc 1way 1shot align data.fold=2 \\
        train.output_dir=<out>/runs/train-voc-fold2-1way-1shot-align
    python test.py with bbox test.checkpoint=<out>/runs/train-voc-fold2-1way-1shot-align/\\
        checkpoints/final.pt test.output_dir=<out>/runs/test-voc-fold2-1way-1shot-align-bbox
    python test.py with voc notrain 1way 1shot data.fold=2 test.output_dir=...  (PANet-init)
    python test.py with deepglobe data.root=<root>/CDFSS/Deepglobe test.checkpoint=<out>/runs/\\
        train-cdfss-1way-1shot-align/checkpoints/final.pt ...  (cross-domain: trained by `cdfss`)

Jobs are named after their setting, so tables share them; test.py reads a trained model's
setting from its checkpoint. The tests of one set of weights run one after another and share one
feature cache (`test.cache_dir`). A job *has its output* once checkpoints/final.pt (train) or
results.json (test) exists; it is *done* when that output records what the job would make now
(`panet.reproduce.outputs`).
"""

from __future__ import annotations

import functools
import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from panet.data import synthetic, synthetic_cdfss
from panet.run.compose import named_config_files
from panet.run.folder import RunFolder
from panet.settings import RunSettings, TestSettings, TrainSettings
from panet.weights.released import ReleasedSetting, parse_released_path, released_step

REPO_ROOT = Path(__file__).resolve().parents[2]
FOLDS = (0, 1, 2, 3)
QUERIES = 1  # one query per episode in every experiment (PROTOCOL §8)
# the settings' defaults (PROTOCOL §5, §8), which commands do not repeat; the episodes' seed
PAPER_STEPS, PAPER_SEED = TrainSettings().steps, RunSettings().seed
PAPER_TEST_RUNS, PAPER_TEST_EPISODES = TestSettings().runs, TestSettings().episodes
PAPER_ENCODER = "vgg16"
TARGETS = ("deepglobe", "isic2018", "chestxray", "fss1000")  # the cross-domain benchmark
TARGET_DIRS = (synthetic_cdfss.DEEPGLOBE_DIR, synthetic_cdfss.ISIC_DIR, synthetic_cdfss.LUNG_DIR,
               synthetic_cdfss.FSS_DIR)  # each under CDFSS/ (toy scale: the synthetic cdfss/)
TOY_CDFSS_DIR = "cdfss"  # in the synthetic dataset's folder: synthetic_cdfss.generate_cdfss's
TOY_FSS_EPISODES = synthetic_cdfss.FSS_SPLITS["test"] * synthetic_cdfss.FSS_IMAGES
# each benchmark's folder under the data root: paper scale (False), synthetic (True)
DATA_DIRS = {False: {"voc": "VOC2012", "coco": "COCO", "cdfss": "VOC2012",
                     **{t: f"CDFSS/{d}" for t, d in zip(TARGETS, TARGET_DIRS)}},
             True: {"voc": ".", "coco": synthetic.COCO_DIR, "cdfss": ".",
                    **{t: f"{TOY_CDFSS_DIR}/{d}" for t, d in zip(TARGETS, TARGET_DIRS)}}}
FORWARD_SHARE_OF_TRAINING = 1 / 3  # a test image: a forward pass; a training image: ~three
# test.cache_gb of the tests sharing features: VGG-16 features at 417 take 5.5 MiB per image,
# one PASCAL-5i setting's 5 x 1,000 episodes at most 5,361 images (scripts/bench_eval.py --count)
FEATURE_CACHE_GB = 32.0
CACHE_KEY = "test.cache_dir="


@functools.lru_cache(maxsize=None)
def config_value(name: str, key: str) -> Any:
    """A value of the named config configs/<name>.yaml, e.g. ("deepglobe", "test.episodes")."""
    return named_config_files()[name][key]


@dataclass(frozen=True)
class Variant:
    """How we run one of the paper's PANet rows."""

    align: bool = True  # PAR during training (Table 5 switches it off)
    weak: str = "dense"  # support annotation at test time: dense | scribble | bbox (Table 6)
    init: bool = False  # PANet-init: the initial encoder, no episode training (Tables 1-2)


@dataclass(frozen=True)
class Setting:
    """One evaluated configuration: benchmark, fold, episode shape, method variant, training
    seed (tests draw their episodes from PAPER_SEED, a target's from its config's), encoder
    (None: the scale's) and the cross-domain target tested (None: the benchmark trained on)."""

    dataset: str  # voc | coco | cdfss (the named configs)
    fold: int
    ways: int
    shots: int
    variant: Variant = Variant()
    seed: int = PAPER_SEED
    encoder: Optional[str] = None
    target: Optional[str] = None

    @property
    def episode(self) -> str:
        suffix = "" if self.encoder is None else f"-{self.encoder}"
        fold = "" if self.dataset == "cdfss" else f"-fold{self.fold}"  # no class is held out
        return f"{self.dataset}{fold}-{self.ways}way-{self.shots}shot{suffix}"

    @property
    def train_name(self) -> str:
        seed = "" if self.seed == PAPER_SEED else f"-seed{self.seed}"
        return f"train-{self.episode}-{'align' if self.variant.align else 'noalign'}{seed}"

    @property
    def test_name(self) -> str:
        if self.variant.init:
            return f"test-{self.episode}-init"
        target = "" if self.target is None else f"-{self.target}"
        return f"test-{self.train_name[len('train-'):]}-{self.variant.weak}{target}"

    @property
    def weights_name(self) -> str:
        """The weights the test evaluates: its train job's name, or PANet-init's of the fold."""
        return f"init-{self.dataset}-fold{self.fold}" if self.variant.init else self.train_name

    @property
    def released(self) -> ReleasedSetting:
        """What a released snapshot's path names of this setting."""
        return ReleasedSetting(self.dataset, self.variant.align, self.fold, self.ways, self.shots)

    @property
    def images_per_episode(self) -> int:
        """Images one episode sends through the encoder: W * S supports and the queries."""
        return self.ways * self.shots + QUERIES

    def test_episodes(self, scale: "Scale") -> int:
        """Episodes per test run: the scale's; a target's (its named config's test.episodes),
        at toy scale at most the generated data holds (FSS-1000: one per test image)."""
        if self.target is not None and not scale.synthetic:
            return config_value(self.target, "test.episodes")
        return min(scale.test_episodes, TOY_FSS_EPISODES) if self.target == "fss1000" \
            else scale.test_episodes


@dataclass(frozen=True)
class Scale:
    """Where jobs write and how big they are (ValueError for values that do not fit).

    Paper scale: the configs' defaults on the benchmarks under `data_root` (None: the configs'
    roots). Synthetic (toy) scale: the generated dataset under `data_root`, tested on its
    training split as the released protocol does, the small encoder at input `size`, `steps`
    training steps and `test_runs` x `test_episodes` episodes. `released`: a folder of the
    authors' snapshots (.../PANet_VOC_align_sets_0_1way_5shot_[train]/1/snapshots/<step>.pth),
    the latest of a setting tested, nothing trained; `updates`: added to every command.
    """

    out: Path
    synthetic: bool = False
    data_root: Optional[Path] = None
    steps: int = PAPER_STEPS
    test_runs: int = PAPER_TEST_RUNS
    test_episodes: int = PAPER_TEST_EPISODES
    size: Optional[int] = None
    feature_cache_gb: float = FEATURE_CACHE_GB
    seeds: int = 1
    encoder: Optional[str] = None
    released: Optional[Path] = None
    factory: Optional[str] = None
    updates: Tuple[str, ...] = ()

    def __post_init__(self):
        if self.synthetic and self.data_root is None:
            raise ValueError("synthetic scale needs data_root (the generated dataset's folder)")
        toy = (self.steps, self.test_runs, self.test_episodes, self.size)
        if not self.synthetic and toy != (PAPER_STEPS, PAPER_TEST_RUNS, PAPER_TEST_EPISODES, None):
            raise ValueError("steps, test runs/episodes and size are toy-scale knobs: the paper "
                             "scale keeps the configs' defaults (add --synthetic)")
        if min(self.steps, self.test_runs, self.test_episodes, self.seeds) < 1 \
                or not self.feature_cache_gb >= 0:
            raise ValueError(f"steps, test runs, test episodes and seeds must be >= 1, "
                             f"feature_cache_gb >= 0: got {toy[:3]}, {self.seeds}, "
                             f"{self.feature_cache_gb}")
        if self.released is not None and (self.synthetic or self.factory is not None):
            raise ValueError("released snapshots are the authors' PANet at paper scale: no "
                             "synthetic scale, no factory")

    @property
    def training_seeds(self) -> Tuple[int, ...]:
        return tuple(PAPER_SEED + index for index in range(self.seeds))

    def released_snapshot(self, setting: Setting) -> Optional[Path]:
        """The released snapshot of a trained setting under `released` (None: none)."""
        return released_snapshots(self.released).get(setting.released)

    def run_dir(self, job: str) -> Path:
        return self.out / "runs" / job

    def data_root_of(self, dataset: str) -> Optional[Path]:
        """The data.root of `dataset` at this scale (None: the named config's default)."""
        if self.data_root is None:
            return None
        return (self.data_root / DATA_DIRS[self.synthetic][dataset]).resolve()

    def dataset_config(self, dataset: str) -> Tuple[List[str], List[str]]:
        """(named configs, config updates) that select `dataset`, the encoder and the model."""
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
        if dataset == "voc":  # tested on the training split's images, as the released protocol
            return ["synthetic", "small"], updates + ["data.test_split=trainaug"]
        if dataset == "cdfss":  # every class trains
            return ["synthetic", "small"], updates + ["data.fold_style=all"]
        return ["coco", "small"], updates


@dataclass(frozen=True)
class Job:
    """One run of train.py or test.py: its exact command, the file it leaves, the jobs whose
    outputs it reads, the images it sends through the encoder (for estimates) and the folders
    to remove once it is done (a shared feature cache)."""

    name: str
    argv: Tuple[str, ...]  # "python", the script, its arguments
    output: Path  # <run folder>/checkpoints/final.pt (train) or <run folder>/results.json (test)
    needs: Tuple[str, ...]
    images: int
    cleanup: Tuple[Path, ...] = ()

    @property
    def script(self) -> str:
        """ "train", "test" (or another script's stem)"""
        return Path(self.argv[1]).stem

    @property
    def trains(self) -> bool:
        return self.script == "train"

    @property
    def command(self) -> str:
        return shlex.join(self.argv)

    @property
    def folder(self) -> Path:
        """Its run folder."""
        parent = self.output.parent
        return parent.parent if parent.name == RunFolder.CHECKPOINTS else parent

    @property
    def shared_cache(self) -> Optional[Path]:
        """The feature cache folder its test shares with other tests, if any."""
        given = [arg[len(CACHE_KEY):] for arg in self.argv if arg.startswith(CACHE_KEY)]
        return Path(given[-1]) if given else None

    def has_output(self) -> bool:
        return self.output.is_file()

    def partial_checkpoint(self) -> Optional[Path]:
        """The last.pt of an unfinished train job (resuming continues it exactly), else None."""
        last = RunFolder(self.folder).last
        return last if self.trains and not self.has_output() and last.is_file() else None

    def command_now(self) -> List[str]:
        """The argv to run now: an unfinished train job continues from its last.pt."""
        partial = self.partial_checkpoint()
        return [*self.argv, *([] if partial is None else [f"train.resume={partial}"])]

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
    updates += [] if setting.dataset == "cdfss" else [f"data.fold={setting.fold}"]
    updates += [] if setting.seed == PAPER_SEED else [f"seed={setting.seed}"]
    updates += [f"train.steps={scale.steps}"] if scale.synthetic else []
    return Job(setting.train_name, ("python", "train.py", "with", *named, *updates,
                                    f"train.output_dir={run}", *scale.updates),
               RunFolder(run).final, (), scale.steps * setting.images_per_episode)


def test_job(setting: Setting, scale: Scale, feature_cache: Optional[Path] = None) -> Job:
    """The test.py run of `setting`: a trained checkpoint (setting read from it), or PANet-init;
    with `feature_cache`, its encoder features go to (or come from) that folder."""
    needs: Tuple[str, ...] = ()
    if setting.variant.init:
        named, updates = scale.dataset_config(setting.dataset)
        named += ["notrain", f"{setting.ways}way", f"{setting.shots}shot"]
        updates += [f"data.fold={setting.fold}"]
    else:
        named = [] if setting.variant.weak == "dense" else [setting.variant.weak]
        if setting.target is not None:
            named.append(setting.target)
        root = scale.data_root_of(setting.target or setting.dataset)
        updates = [] if root is None else [f"data.root={root}"]
        if setting.target is not None and scale.synthetic:  # the toy model's input size
            updates.append(f"data.size={scale.size or config_value('small', 'data.size')}")
        if scale.factory is not None:  # a checkpoint names no code: the command line does
            updates.append(f"model.factory={scale.factory}")
        checkpoint = scale.released_snapshot(setting)
        if scale.released is None:
            trained = train_job(setting, scale)
            checkpoint, needs = trained.output, (trained.name,)
        updates.append(f"test.checkpoint={checkpoint}")
    episodes = setting.test_episodes(scale)
    runs = scale.test_runs if setting.target is None or scale.synthetic \
        else config_value(setting.target, "test.runs")
    if scale.synthetic:
        updates += [f"test.runs={runs}", f"test.episodes={episodes}"]
    if feature_cache is not None:
        updates += [f"{CACHE_KEY}{feature_cache}", f"test.cache_gb={scale.feature_cache_gb}"]
    run = scale.run_dir(setting.test_name)
    return Job(setting.test_name, ("python", "test.py", "with", *named, *updates,
                                   f"test.output_dir={run}", *scale.updates),
               RunFolder(run).results, needs, runs * episodes * setting.images_per_episode)


def jobs_for(settings: Iterable[Setting], scale: Scale) -> List[Job]:
    """Every job the settings need, each once, grouped by weights: a train job, then the tests
    of its checkpoint; two or more tests of the same weights share a feature cache folder
    (when scale.feature_cache_gb > 0), removed after the last of them."""
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
        cache = scale.out / "feature_cache" / weights if shared else None
        group = [test_job(setting, scale, cache) for setting in tests.values()]
        if shared:
            group[-1] = replace(group[-1], cleanup=(cache,))
        jobs += group
    return jobs


@functools.lru_cache(maxsize=4)
def released_snapshots(folder: Optional[Path]) -> Dict[ReleasedSetting, Path]:
    """The released snapshots under `folder` by the setting their path names, the latest step
    of each."""
    found: Dict[ReleasedSetting, Tuple[int, Path]] = {}
    for path in sorted(folder.glob("**/snapshots/*.pth")) if folder is not None else ():
        named, step = parse_released_path(path), released_step(path)
        if named is not None and step is not None and step > found.get(named, (-1,))[0]:
            found[named] = (step, path)
    return {named: path for named, (_, path) in found.items()}


def absent_synthetic(root: Path, table: Optional[str]) -> List[Callable[[], object]]:
    """What of the synthetic dataset under `root` is absent, as the calls that generate it: the
    PASCAL and COCO layouts (one call), and the cross-domain targets for --table cdfss."""
    calls: List[Callable[[], object]] = []
    if not ((root / synthetic.VOC_DIR / "ImageSets" / "Segmentation" / "trainaug.txt").is_file()
            and (root / synthetic.COCO_DIR / "annotations" / "instances_train2014.json").is_file()):
        calls.append(lambda: synthetic.generate(root, coco=True))
    targets = root / TOY_CDFSS_DIR
    if table == "cdfss" and not (targets / synthetic_cdfss.FSS_DIR / "splits" /
                                 "test.txt").is_file():
        calls.append(lambda: synthetic_cdfss.generate_cdfss(targets))
    return calls
