"""The paper's Tables 1-6 as declarative specs, the train.py / test.py jobs they need, and the
markdown that sets our numbers beside the paper's (PROTOCOL §9, §11).

A table is a grid. Its rows are methods: a method we run has a `Variant` (PAR on or off, the
support annotation, PANet-init), the other methods' rows are printed from the paper file only.
Its columns are cells of one metric at one shot count over one fold, or over all four folds (then
the mean over folds, as the paper reports it). Each (variant, shots, fold) is one `Setting`: one
test job, plus the train job that makes its checkpoint (none for PANet-init).

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
names only what differs (weak supports). A job is done once its output exists
(`checkpoints/final.pt` of a train job, `results.json` of a test job).

Table 6 alone, for instance, runs for each checkpoint: the train job (if not done), then its
dense, scribble and box tests with `test.cache_dir=<out>/feature_cache/<train job name>`: the
first test encodes the images, the other two read their features.
"""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from panet.data import synthetic
from panet.models import build_encoder
from panet.statistics import (RECORDS_FILE, EpisodeRecords, bootstrap_seed, percentile_interval,
                              resampled_run_means)

REPO_ROOT = Path(__file__).resolve().parent.parent
PAPER_RESULTS = REPO_ROOT / "results" / "paper_results.json"
FOLDS = (0, 1, 2, 3)
QUERIES = 1  # N: one query per episode in every experiment (PROTOCOL §8)

# Paper scale: the config defaults (PROTOCOL §5, §8). Commands do not repeat them; the dry-run
# estimate uses them.
PAPER_STEPS = 30000
PAPER_TEST_RUNS = 5
PAPER_TEST_EPISODES = 1000

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
BOOTSTRAP_RESAMPLES = 1000  # test.py's default test.bootstrap
MISSING = "—"  # a cell without a number (job not run yet, or not reported by the paper)


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

    @property
    def episode(self) -> str:
        return f"{self.dataset}-fold{self.fold}-{self.ways}way-{self.shots}shot"

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
        """(named configs, config updates) that select `dataset` at this scale."""
        root = self.data_root_of(dataset)
        updates = [] if root is None else [f"data.root={root}"]
        if not self.synthetic:
            return [dataset], updates
        if self.size is not None:
            updates.append(f"data.size={self.size}")
        if dataset == "voc":  # test on the training split's images, as voc.yaml (and coco.yaml)
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
        trained = train_job(setting, scale)
        named = [] if setting.variant.weak == "dense" else [setting.variant.weak]
        root = scale.data_root_of(setting.dataset)
        updates = ([] if root is None else [f"data.root={root}"]) + [
            f"test.checkpoint={trained.output}"]
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
        groups.setdefault(setting.weights_name, {}).setdefault(setting.test_name, setting)
    jobs: List[Job] = []
    for weights, tests in groups.items():
        first = next(iter(tests.values()))
        if not first.variant.init:
            jobs.append(train_job(first, scale))
        shared = len(tests) > 1 and scale.feature_cache_gb > 0
        cache = scale.feature_cache(weights) if shared else None
        group = [test_job(setting, scale, cache) for setting in tests.values()]
        if shared:
            group[-1] = replace(group[-1], cleanup=(cache,))
        jobs += group
    return jobs


@dataclass(frozen=True)
class Column:
    """One column of a table: `metric` at `shots` shots, on one fold or the mean over several."""

    title: str
    metric: str  # key of test.py's results.json: mean_iou | binary_iou
    shots: int
    folds: Tuple[int, ...]
    paper: Tuple[Union[str, int], ...]  # path to the paper's number inside a method's entry


@dataclass(frozen=True)
class Method:
    """A row: `name` is also its key in the paper table; `variant` None = paper-only row."""

    name: str
    variant: Optional[Variant] = None


@dataclass(frozen=True)
class TableSpec:
    number: int
    title: str
    paper_key: str  # the table's key in paper_results.json
    dataset: str
    ways: int
    columns: Tuple[Column, ...]
    methods: Tuple[Method, ...]
    params: bool = False  # add the encoder's parameter count (Table 1)

    def setting(self, variant: Variant, shots: int, fold: int,
                seed: int = PAPER_SEED) -> Setting:
        return Setting(self.dataset, fold, self.ways, shots, variant, seed)

    def settings(self, seeds: Sequence[int] = (PAPER_SEED,)) -> List[Setting]:
        """Every evaluated setting, for each training seed (PANet-init, untrained, once)."""
        return [self.setting(method.variant, column.shots, fold, seed)
                for method in self.methods if method.variant is not None
                for seed in (seeds[:1] if method.variant.init else seeds)
                for column in self.columns for fold in column.folds]


METRIC_NAMES = {"mean_iou": "mean-IoU", "binary_iou": "binary-IoU"}


def _fold_means(metric: str, by_metric: bool = False) -> Tuple[Column, ...]:
    """1-shot and 5-shot columns of `metric`, each the mean over the four folds. `by_metric`:
    the table holds both metrics (Tables 3-4): titles name it, and the paper file nests each
    method's numbers under it."""
    prefix = (METRIC_NAMES[metric] + " ") if by_metric else ""
    nesting = (metric,) if by_metric else ()
    return tuple(Column(f"{prefix}{shots}-shot", metric, shots, FOLDS, (*nesting, f"{shots}shot"))
                 for shots in (1, 5))


PANET = Method("PANet", Variant())
PANET_INIT = Method("PANet-init", Variant(init=True))
BOTH_METRICS = _fold_means("mean_iou", by_metric=True) + _fold_means("binary_iou", by_metric=True)

TABLES: Dict[int, TableSpec] = {spec.number: spec for spec in (
    TableSpec(1, "PASCAL-5i, 1-way, mean-IoU (%) per fold", "table1_pascal_1way_mean_iou",
              "voc", 1,
              tuple(column for shots in (1, 5) for column in (
                  *(Column(f"{shots}-shot split-{fold + 1}", "mean_iou", shots, (fold,),
                           (f"{shots}shot", fold)) for fold in FOLDS),
                  Column(f"{shots}-shot mean", "mean_iou", shots, FOLDS, (f"{shots}shot_mean",)))),
              (PANET_INIT, PANET, Method("OSLSM"), Method("co-FCN"), Method("SG-One")),
              params=True),
    TableSpec(2, "PASCAL-5i, 1-way, binary-IoU (%), mean over folds",
              "table2_pascal_1way_binary_iou", "voc", 1, _fold_means("binary_iou"),
              (*(Method(name) for name in ("FG-BG", "Fine-tuning", "OSLSM", "co-FCN", "PL",
                                           "A-MCG", "SG-One")), PANET_INIT, PANET)),
    TableSpec(3, "PASCAL-5i, 2-way (models trained 2-way), mean over folds",
              "table3_pascal_2way", "voc", 2, BOTH_METRICS, (Method("PL"), PANET)),
    TableSpec(4, "COCO-20i, 1-way, mean over folds", "table4_coco_1way", "coco", 1,
              BOTH_METRICS, (Method("A-MCG"), PANET)),
    TableSpec(5, "PASCAL-5i, 1-way, PAR ablation, mean-IoU (%), mean over folds",
              "table5_pascal_par_ablation_mean_iou", "voc", 1, _fold_means("mean_iou"),
              (Method("PANet w/o PAR", Variant(align=False)), PANET)),
    TableSpec(6, "PASCAL-5i, 1-way, weak support annotations at test time, mean-IoU (%), "
                 "mean over folds", "table6_pascal_weak_annotations_mean_iou", "voc", 1,
              _fold_means("mean_iou"),
              (Method("Dense", Variant()), Method("Scribble", Variant(weak="scribble")),
               Method("Bounding box", Variant(weak="bbox")))),
)}

# Sec. 4.3 (PROTOCOL §11): fold 0, 1-way 5-shot; the models with and without PAR (Table 5's).
PROTOTYPE_DISTANCE_PAPER_KEY = "sec4_3_prototype_distance_fold0_1way_5shot"
PROTOTYPE_DISTANCE_MODELS = {"with_PAR": Setting("voc", 0, 1, 5, Variant(align=True)),
                             "without_PAR": Setting("voc", 0, 1, 5, Variant(align=False))}


def loss_curve_models(fold: int = 0) -> Dict[Tuple[int, bool], Setting]:
    """Fig. 5: the train jobs with and without PAR, 1-shot and 5-shot, keyed (shots, align)."""
    return {(shots, align): Setting("voc", fold, 1, shots, Variant(align=align))
            for shots in (1, 5) for align in (True, False)}


def encoder_parameters(synthetic_scale: bool) -> int:
    """Parameters of the encoder the jobs train: PANet's VGG-16 (14,714,688), or at toy scale
    the small encoder. PAR and the head add none."""
    encoder = build_encoder("small" if synthetic_scale else "vgg16")
    return sum(parameter.numel() for parameter in encoder.parameters())


def load_paper_results(path: Path = PAPER_RESULTS) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read the paper's numbers from {path}: {error}; restore it with "
                         f"`git checkout -- {path.name}` in results/") from None


def paper_value(paper: Mapping, spec: TableSpec, method: str,
                path: Sequence[Union[str, int]]) -> Optional[float]:
    """The paper's number of a cell (percent), None where the paper reports none."""
    value = paper.get(spec.paper_key, {}).get(method)
    try:
        for key in path:
            value = value[key]
    except (KeyError, IndexError, TypeError):
        raise ValueError(f"{PAPER_RESULTS} has no number at {spec.paper_key} / {method} / "
                         f"{' / '.join(map(str, path))}; restore the file from git") from None
    return value


RESULT_KEYS = ("mean_iou", "binary_iou", "setting")


def read_result(path: Path) -> Optional[dict]:
    """test.py's results.json at `path`, None if it does not exist yet."""
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); delete it and rerun to redo "
                         "the test job") from None
    absent = [key for key in RESULT_KEYS if key not in result]
    if absent:
        raise ValueError(f"{path} lacks {absent}: not a results.json of test.py; delete it "
                         "and rerun to redo the test job")
    return result


def read_results(jobs: Iterable[Job]) -> Dict[str, dict]:
    """The results.json of every finished test job, by job name."""
    results = {job.name: read_result(job.output) for job in jobs if not job.trains}
    return {name: result for name, result in results.items() if result is not None}


@dataclass(frozen=True)
class Cell:
    """Our number of a table cell, in percent: `value` is the mean over training seeds of the
    fold's value (or of the mean over the column's folds), `std` the sample standard deviation
    over seeds (None with one seed), `interval` the 95% bootstrap interval over the test
    episodes of that mean (None without per-episode records)."""

    value: Optional[float]
    std: Optional[float] = None
    interval: Optional[Tuple[float, float]] = None

    def text(self) -> str:
        if self.value is None:
            return MISSING
        shown = format_number(self.value)
        if self.std is not None:
            shown += f" ± {self.std:.1f}"
        if self.interval is not None:
            shown += f" [{self.interval[0]:.1f}, {self.interval[1]:.1f}]"
        return shown

    def holds(self, paper: Optional[float]) -> str:
        """Whether the paper's number lies in our interval: yes | no | MISSING."""
        if paper is None or self.interval is None:
            return MISSING
        return "yes" if self.interval[0] <= paper <= self.interval[1] else "no"


def cell(spec: TableSpec, variant: Variant, column: Column, results: Mapping[str, dict],
         resampled: Mapping[str, Mapping[str, np.ndarray]],
         seeds: Sequence[int] = (PAPER_SEED,)) -> Cell:
    """Our `Cell` of a column for a method. A training seed's value is the fold's, or the mean
    over the column's folds; the interval resamples each fold's episodes (the seeds' tests of a
    fold share their episodes and their draws) and averages like the value. Value None while
    any test is missing."""
    seeds = seeds[:1] if variant.init else seeds
    names = [[spec.setting(variant, column.shots, fold, seed).test_name for fold in column.folds]
             for seed in seeds]  # seed x fold
    if any(results.get(name, {}).get(column.metric) is None for row in names for name in row):
        return Cell(None)
    per_seed = [float(np.mean([100 * results[name][column.metric] for name in row]))
                for row in names]
    std = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else None
    interval = None
    if all(name in resampled for row in names for name in row):
        draws = np.mean([[resampled[name][column.metric] for name in row] for row in names],
                        axis=(0, 1))  # mean over seeds and folds, per resample
        interval = tuple(percentile_interval(100 * draws))
    return Cell(float(np.mean(per_seed)), std, interval)


def resampled_results(jobs: Iterable[Job], results: Mapping[str, dict],
                      n_resamples: int = BOOTSTRAP_RESAMPLES) -> Dict[str, Dict[str, np.ndarray]]:
    """Per finished test job with per-episode records: its bootstrap resamples of mean- and
    binary-IoU (fractions; `panet.statistics.resampled_run_means`, drawn from the fold's seed)."""
    resampled = {}
    for job in jobs:
        records = job.output.with_name(RECORDS_FILE)
        if job.trains or job.name not in results or not records.is_file():
            continue
        result = results[job.name]
        classes = sorted(int(class_id) for class_id in result["class_iou"])
        resampled[job.name] = resampled_run_means(
            EpisodeRecords.load(records), classes, n_resamples,
            bootstrap_seed(result["setting"]["data"]["fold"]))
    return resampled


def format_number(value: Optional[float], signed: bool = False) -> str:
    """One decimal (percent, distances); signed for differences; MISSING for None or NaN."""
    if value is None or math.isnan(value):
        return MISSING
    return f"{value:+.1f}" if signed else f"{value:.1f}"


def _difference(ours: Optional[float], paper: Optional[float]) -> Optional[float]:
    return None if ours is None or paper is None else ours - paper


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> List[str]:
    """A markdown table: the first column left-aligned, the others right-aligned."""
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _distinct(results: Iterable[dict], describe: Callable[[dict], str]) -> str:
    """The distinct descriptions of the results' settings, joined."""
    values = sorted({describe(result["setting"]) for result in results})
    return ", ".join(values) if values else "no results yet"


def describe_results(results: Mapping[str, dict]) -> List[str]:
    """Header lines stating how the finished tests were run (from their results.json)."""
    done = list(results.values())
    return [
        "- data: " + _distinct(done, lambda s: f"{s['data']['name']}, test split "
                                               f"{s['data']['test_split']}, input "
                                               f"{s['data']['size']} px"),
        "- encoder: " + _distinct(done, lambda s: s["model"]["encoder"]),
        "- metric: " + _distinct(done, lambda s: f"rule {s['rule']}, {s['resolution']} "
                                                 "resolution"),
        "- runs x episodes: " + _distinct(done, lambda s: f"{s['runs']} x {s['episodes']}"),
        "- training steps: " + _distinct(
            done, lambda s: "none (PANet-init)" if s["trained_steps"] is None
            else str(s["trained_steps"])),
    ]


def render_table(spec: TableSpec, results: Mapping[str, dict], paper: Mapping, *,
                 commit: str, synthetic_scale: bool, parameters: Optional[int] = None,
                 resampled: Optional[Mapping[str, Mapping[str, np.ndarray]]] = None,
                 seeds: Sequence[int] = (PAPER_SEED,), jobs: Sequence[Job] = ()) -> str:
    """tableN.md: for each method we run, our row (mean over training seeds ± their std, and the
    95% bootstrap interval over test episodes), the paper's row, their difference (ours minus
    paper, percentage points) and whether the paper's number lies in our interval; other
    methods' rows from the paper. `parameters`: our encoder's parameter count (Table 1). Ends
    with how the numbers were made (commit, seeds, the exact `jobs` commands) and how to cite
    them."""
    resampled = resampled or {}
    lines = [f"# Table {spec.number}: {spec.title}", ""]
    if synthetic_scale:
        has_init = any(m.variant is not None and m.variant.init for m in spec.methods)
        lines += ["**Toy scale on the synthetic dataset** (small encoder, few steps and "
                  "episodes). The paper column is NOT comparable: it is shown only to exercise "
                  "the pipeline from configs to this table."
                  + (" PANet-init here is the randomly initialised small encoder."
                     if has_init else ""), ""]
    seed_text = (f"{len(seeds)} training seeds ({', '.join(map(str, seeds))}); cells are mean "
                 "± sample std over seeds" if len(seeds) > 1 else f"training seed {seeds[0]}")
    lines += [*describe_results(results), f"- {seed_text}; [low, high]: 95% bootstrap "
              "interval over the test episodes (panet/statistics.py)",
              f"- commit: {commit}",
              f"- paper: results/{PAPER_RESULTS.name} ({spec.paper_key})", ""]

    header = ["method"] + [column.title for column in spec.columns]
    if spec.params:
        header.append("params (M)")
    rows = []
    for method in spec.methods:
        paper_cells = [paper_value(paper, spec, method.name, column.paper)
                       for column in spec.columns]
        if spec.params:
            paper_cells.append(paper_value(paper, spec, method.name, ("params_M",)))
        if method.variant is None:
            rows.append([f"{method.name} (paper)"] + [format_number(v) for v in paper_cells])
            continue
        ours = [cell(spec, method.variant, column, results, resampled, seeds)
                for column in spec.columns]
        if spec.params:
            ours.append(Cell(None if parameters is None else parameters / 1e6))
        label = method.name
        if synthetic_scale and method.variant.init:
            label += ", random-init small encoder"
        rows += [[f"{label} (ours)"] + [c.text() for c in ours],
                 [f"{method.name} (paper)"] + [format_number(v) for v in paper_cells],
                 ["difference (ours - paper)"] + [format_number(_difference(c.value, p),
                                                                signed=True)
                                                  for c, p in zip(ours, paper_cells)],
                 ["paper in our interval"] + [c.holds(p) for c, p in zip(ours, paper_cells)]]
    lines += markdown_table(header, rows)

    expected = {setting.test_name for setting in spec.settings(seeds)}
    pending = sorted(expected - set(results))
    lines.append("")
    if pending:
        lines.append(f"{len(pending)} of {len(expected)} test jobs have no results yet "
                     f"({MISSING}): {', '.join(pending)}")
    else:
        lines.append(f"All {len(expected)} test jobs done; their results.json are under runs/.")
    return "\n".join(lines + citation(spec, results, commit, seeds, jobs)) + "\n"


def citation(spec: TableSpec, results: Mapping[str, dict], commit: str, seeds: Sequence[int],
             jobs: Sequence[Job]) -> List[str]:
    """The closing block of a table: how the numbers were made and how to cite them."""
    done = list(results.values())
    protocol = _distinct(done, lambda s: (
        f"{s['data']['name']} test split {s['data']['test_split']}, {s['runs']} runs x "
        f"{s['episodes']} episodes from seed {PAPER_SEED} + run, metric rule {s['rule']}, "
        f"{s['resolution']} resolution ({s['data']['size']} px)"))
    column = spec.columns[-1]
    method = next(m.name for m in spec.methods if m.variant is not None and not m.variant.init)
    example = (f"{method} (PANet), {column.title} {METRIC_NAMES[column.metric]}: <value> % "
               f"(95% bootstrap interval over test episodes [<low>, <high>]"
               + (f"; ± std over {len(seeds)} training seeds" if len(seeds) > 1 else "")
               + f"), panet-repro commit {commit[:12]}, {protocol}")
    return ["", "## How these numbers were made", "",
            f"- commit {commit}; training seeds {', '.join(map(str, seeds))}; test episodes "
            f"from seed {PAPER_SEED} + run (the same episodes for every model and seed)",
            f"- protocol: {protocol}",
            "- the interval covers the sampling of test episodes given the trained models, "
            "not the randomness of training (that is the ± over seeds)",
            "- commands, in the order run (`python scripts/reproduce.py` runs them):", "",
            *(f"      {job.command}" for job in jobs), "",
            "How to cite a number of this table (fill in the cell):", "",
            f"> {example}"]
