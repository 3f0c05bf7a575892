"""The paper's Tables 1-6 and the cross-domain table (docs/cross-domain.md) as declarative specs
(PROTOCOL §9, §11), and the papers' numbers. A table's rows are methods (ours have a `Variant`;
the others are printed from the paper file only); its columns are cells of one metric at one
shot count over one fold or the mean over all four, on the training benchmark or the mean over
cross-domain targets. Each (variant, shots, fold, target) is one `Setting`: one test job, plus
the train job of its checkpoint (`panet.reproduce.jobs`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

from panet.models import build_encoder
from panet.reproduce.jobs import (FOLDS, PAPER_ENCODER, PAPER_SEED, REPO_ROOT, TARGETS, Setting,
                                  Variant)

PAPER_RESULTS = REPO_ROOT / "results" / "paper_results.json"


@dataclass(frozen=True)
class Column:
    """One column of a table: `metric` at `shots` shots, on one fold or the mean over several."""

    title: str
    metric: str  # key of test.py's results.json: mean_iou | binary_iou
    shots: int
    folds: Tuple[int, ...]
    paper: Tuple[Union[str, int], ...]  # path to the paper's number inside a method's entry
    targets: Tuple[Optional[str], ...] = (None,)  # cross-domain datasets tested (None: none)


@dataclass(frozen=True)
class Method:
    """A row: `name` is also its key in the paper table; `variant` None = paper-only row."""

    name: str
    variant: Optional[Variant] = None


@dataclass(frozen=True)
class TableSpec:
    """A table: number (or name), title, key in paper_results.json, benchmark, ways, columns."""

    number: str
    title: str
    paper_key: str
    dataset: str
    ways: int
    columns: Tuple[Column, ...]
    methods: Tuple[Method, ...]
    params: bool = False  # add the encoder's parameter count (Table 1)

    @property
    def heading(self) -> str:
        return f"Table {self.number}" if self.number.isdigit() else "Table"

    @property
    def stem(self) -> str:
        """Its files' name: table1, ..., table_cdfss."""
        return f"table{self.number}" if self.number.isdigit() else f"table_{self.number}"

    def setting(self, variant: Variant, shots: int, fold: int, seed: int = PAPER_SEED,
                encoder: Optional[str] = None, target: Optional[str] = None) -> Setting:
        return Setting(self.dataset, fold, self.ways, shots, variant, seed, encoder, target)

    def settings(self, seeds: Sequence[int] = (PAPER_SEED,),
                 encoder: Optional[str] = None) -> List[Setting]:
        """Every evaluated setting, for each training seed (PANet-init, untrained, once), with
        `encoder` (None: the scale's)."""
        return [self.setting(method.variant, column.shots, fold, seed, encoder, target)
                for method in self.methods if method.variant is not None
                for seed in (seeds[:1] if method.variant.init else seeds)
                for column in self.columns for fold in column.folds
                for target in column.targets]


METRIC_NAMES = {"mean_iou": "mean-IoU", "binary_iou": "binary-IoU"}


def _fold_means(metric: str, by_metric: bool = False) -> Tuple[Column, ...]:
    """1-shot and 5-shot columns of `metric`, each the mean over the folds. `by_metric` (Tables
    3-4 hold both): titles name it, and the paper file nests each method's numbers under it."""
    prefix = (METRIC_NAMES[metric] + " ") if by_metric else ""
    nesting = (metric,) if by_metric else ()
    return tuple(Column(f"{prefix}{shots}-shot", metric, shots, FOLDS, (*nesting, f"{shots}shot"))
                 for shots in (1, 5))


PANET = Method("PANet", Variant())
PANET_INIT = Method("PANet-init", Variant(init=True))
BOTH_METRICS = _fold_means("mean_iou", by_metric=True) + _fold_means("binary_iou", by_metric=True)

TARGET_TITLES = {"deepglobe": "Deepglobe", "isic2018": "ISIC", "chestxray": "Chest X-ray",
                 "fss1000": "FSS-1000"}
CDFSS_COLUMNS = tuple(
    Column(f"{TARGET_TITLES[target]} {shots}-shot", "mean_iou", shots, (0,),
           (target, f"{shots}shot"), (target,)) for target in TARGETS for shots in (1, 5)) + tuple(
    Column(f"mean {shots}-shot", "mean_iou", shots, (0,), ("mean", f"{shots}shot"), TARGETS)
    for shots in (1, 5))

TABLES: Dict[str, TableSpec] = {spec.number: spec for spec in (
    TableSpec("1", "PASCAL-5i, 1-way, mean-IoU (%) per fold", "table1_pascal_1way_mean_iou",
              "voc", 1,
              tuple(column for shots in (1, 5) for column in (
                  *(Column(f"{shots}-shot split-{fold + 1}", "mean_iou", shots, (fold,),
                           (f"{shots}shot", fold)) for fold in FOLDS),
                  Column(f"{shots}-shot mean", "mean_iou", shots, FOLDS, (f"{shots}shot_mean",)))),
              (PANET_INIT, PANET, Method("OSLSM"), Method("co-FCN"), Method("SG-One")),
              params=True),
    TableSpec("2", "PASCAL-5i, 1-way, binary-IoU (%), mean over folds",
              "table2_pascal_1way_binary_iou", "voc", 1, _fold_means("binary_iou"),
              (*(Method(name) for name in ("FG-BG", "Fine-tuning", "OSLSM", "co-FCN", "PL",
                                           "A-MCG", "SG-One")), PANET_INIT, PANET)),
    TableSpec("3", "PASCAL-5i, 2-way (models trained 2-way), mean over folds",
              "table3_pascal_2way", "voc", 2, BOTH_METRICS, (Method("PL"), PANET)),
    TableSpec("4", "COCO-20i, 1-way, mean over folds", "table4_coco_1way", "coco", 1,
              BOTH_METRICS, (Method("A-MCG"), PANET)),
    TableSpec("5", "PASCAL-5i, 1-way, PAR ablation, mean-IoU (%), mean over folds",
              "table5_pascal_par_ablation_mean_iou", "voc", 1, _fold_means("mean_iou"),
              (Method("PANet w/o PAR", Variant(align=False)), PANET)),
    TableSpec("6", "PASCAL-5i, 1-way, weak support annotations at test time, mean-IoU (%), "
                 "mean over folds", "table6_pascal_weak_annotations_mean_iou", "voc", 1,
              _fold_means("mean_iou"),
              (Method("Dense", Variant()), Method("Scribble", Variant(weak="scribble")),
               Method("Bounding box", Variant(weak="bbox")))),
    TableSpec("cdfss", "Cross-domain few-shot segmentation (PATNet's benchmark and episodes), "
                       "trained on PASCAL VOC's 20 classes, 1-way, mIoU (%)",
              "cdfss_patnet_table1", "cdfss", 1, CDFSS_COLUMNS, (PANET,)),
)}

# Sec. 4.3 (PROTOCOL §11): fold 0, 1-way 5-shot; the models with and without PAR (Table 5's).
PROTOTYPE_DISTANCE_PAPER_KEY = "sec4_3_prototype_distance_fold0_1way_5shot"
PROTOTYPE_DISTANCE_MODELS = {"with_PAR": Setting("voc", 0, 1, 5, Variant(align=True)),
                             "without_PAR": Setting("voc", 0, 1, 5, Variant(align=False))}


def loss_curve_models(fold: int = 0, encoder: Optional[str] = None
                      ) -> Dict[Tuple[int, bool], Setting]:
    """Fig. 5: the train jobs with and without PAR, 1-shot and 5-shot, keyed (shots, align)."""
    return {(shots, align): Setting("voc", fold, 1, shots, Variant(align=align), encoder=encoder)
            for shots in (1, 5) for align in (True, False)}


def load_paper_results(path: Path = PAPER_RESULTS) -> dict:
    """results/paper_results.json (ValueError saying how to restore it)."""
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


def encoder_parameters(synthetic_scale: bool, encoder: Optional[str] = None) -> int:
    """Trainable parameters of the encoder the jobs train: `encoder`, else PANet's VGG-16
    (14,714,688), or at toy scale the small encoder. PAR and the head add none."""
    name = encoder or ("small" if synthetic_scale else PAPER_ENCODER)
    return sum(parameter.numel() for parameter in build_encoder(name).parameters())
