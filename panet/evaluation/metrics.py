"""PANet's evaluation metric: class-wise IoU accumulated over episodes (PROTOCOL §9).

Per query, for each episode label j (0 = background, c = way c), counted under the global id of
that label (0 for background):
    TP_j = |pred = j and gt = j|,  FP_j = |pred = j and gt != j and gt != 255|,
    FN_j = |gt = j and pred != j|.
Rule "released" (default, the released code and Tables 1-6): a label is counted only if the
ground truth contains it, so false positives of a way absent from the query are never counted.
Rule "corrected": every episode label is counted.

mean-IoU of a run: mean over the meter's classes of TP / (TP + FP + FN). binary-IoU (FB-IoU):
mean of the background IoU (label 0's counts) and the foreground IoU (counts summed over all
classes), both also reported (the released ``classIoU_binary``). Reported: mean and population
std (numpy's default, as released) over runs, and the per-run values.
"""

from __future__ import annotations

import warnings
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from panet.base.constants import IGNORE_INDEX
from panet.base.distributed import Context, all_reduce_sum, gather_lists

RULES = ("released", "corrected")
Array = Union[np.ndarray, torch.Tensor]


def episode_counts(pred: Array, target: Array, n_labels: int, rule: str = "released") -> np.ndarray:
    """TP, FP, FN of each episode label for one query.

    pred: H x W in 0..n_labels-1; target: H x W in 0..n_labels-1 or 255.
    Returns n_labels x 3 int64 (columns TP, FP, FN); labels the rule skips count zero.
    """
    pred = torch.as_tensor(pred).reshape(-1).long()
    target = torch.as_tensor(target, device=pred.device).reshape(-1).long()
    labelled = target != IGNORE_INDEX
    if bool(((pred < 0) | (pred >= n_labels)).any()) or \
            bool(((target[labelled] < 0) | (target[labelled] >= n_labels)).any()):
        raise ValueError(f"labels must lie in 0..{n_labels - 1} "
                         f"(target may also be {IGNORE_INDEX})")
    # confusion[g, p] = number of labelled pixels with ground truth g predicted as p
    confusion = torch.bincount(target[labelled] * n_labels + pred[labelled],
                               minlength=n_labels * n_labels).view(n_labels, n_labels).cpu()
    tp = confusion.diagonal()
    fp = confusion.sum(dim=0) - tp
    fn = confusion.sum(dim=1) - tp
    counts = torch.stack([tp, fp, fn], dim=1).numpy()
    if rule == "released":
        counts[fn + tp == 0] = 0  # label absent from the ground truth: not counted at all
    return counts


def iou_from_counts(counts: np.ndarray) -> Dict[str, np.ndarray]:
    """The IoUs of accumulated counts ... x (1 + K) x 3 (TP, FP, FN; slot 0 background):
    `class_iou` ... x (1 + K), and of shape ...: `mean_iou` (over the evaluated classes: NaNs
    left out), `background_iou`, `foreground_iou` (counts summed over the K classes) and
    `binary_iou` (their mean). The metric's and every bootstrap statistic's one function.
    """
    tp, fp, fn = np.moveaxis(np.asarray(counts, dtype=np.float64), -1, 0)  # each ... x (1 + K)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows stay NaN
        class_iou = tp / (tp + fp + fn)
        fg_tp, fg_fp, fg_fn = (x[..., 1:].sum(axis=-1) for x in (tp, fp, fn))
        background_iou = class_iou[..., 0]
        foreground_iou = fg_tp / (fg_tp + fg_fp + fg_fn)
        mean_iou = np.nanmean(class_iou[..., 1:], axis=-1)
    return {"class_iou": class_iou, "mean_iou": mean_iou, "background_iou": background_iou,
            "foreground_iou": foreground_iou, "binary_iou": (background_iou + foreground_iou) / 2}


class QueryRecord(NamedTuple):
    """One query's counts: counts is (1 + W) x 3 (TP, FP, FN of background, way 1, ...)."""

    run: int
    episode: int
    query: int
    class_ids: Tuple[int, ...]
    counts: np.ndarray


class IoUMeter:
    """Accumulates TP/FP/FN per global class id over the episodes of `n_runs` runs.

    class_ids: the classes whose IoUs make the mean-IoU (the fold's test classes). Episodes may
    only use these classes. rule: "released" (default) or "corrected" (see module docstring).
    """

    def __init__(self, class_ids: Sequence[int], n_runs: int = 1, rule: str = "released",
                 keep_records: bool = False):
        if rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
        self.class_ids = [int(c) for c in class_ids]
        if 0 in self.class_ids or len(set(self.class_ids)) != len(self.class_ids):
            raise ValueError(f"class_ids must be distinct foreground ids, got {self.class_ids}")
        self.rule = rule
        self.n_runs = n_runs
        self._row = {c: i + 1 for i, c in enumerate(self.class_ids)}  # row 0: background
        self.counts = np.zeros((n_runs, 1 + len(self.class_ids), 3), dtype=np.int64)
        # keep_records: every query's record, for panet.report.statistics
        self.records: Optional[List[QueryRecord]] = [] if keep_records else None

    def update(self, pred: Array, target: Array, episode_class_ids: Sequence[int],
               run: int = 0, episode: Optional[int] = None, query: int = 0) -> None:
        """Add one query: pred, target H x W in episode-local labels (pred 0..W, target 0..W or
        255); episode_class_ids: the W global ids of the episode's ways, in way order. With
        `keep_records`, the query's counts are also kept under (run, `episode`, `query`)."""
        episode_class_ids = [int(c) for c in episode_class_ids]
        unknown = [c for c in episode_class_ids if c not in self._row]
        if unknown:
            raise ValueError(f"episode classes {unknown} are not among the meter's "
                             f"{self.class_ids}")
        counts = episode_counts(pred, target, 1 + len(episode_class_ids), self.rule)
        rows = [0] + [self._row[c] for c in episode_class_ids]
        self.counts[run, rows] += counts  # rows are distinct: ways have distinct classes
        if self.records is not None:
            if episode is None:
                raise ValueError("a meter that keeps records needs each query's episode index")
            self.records.append(QueryRecord(run, episode, query, tuple(episode_class_ids),
                                            counts))

    def merge(self, context: Context) -> "IoUMeter":
        """Sum the counts (and gather the kept records, in rank order) over processes."""
        if context.distributed:
            self.counts = all_reduce_sum(torch.from_numpy(self.counts).to(context.device),
                                         context).cpu().numpy()
            if self.records is not None:
                self.records = gather_lists(self.records, context)
        return self

    def summary(self) -> Dict:
        """Mean-IoU, binary-IoU, its background and foreground halves and per-class IoU
        (fractions): mean and std over runs (``<name>``, ``<name>_std``) and per-run values
        (``<name>_runs``). A class never counted in a run has IoU NaN there: the run's mean-IoU
        averages the others, the class's mean and std use the runs that evaluated it, and it is
        listed under "unevaluated" with a warning.
        """
        ious = iou_from_counts(self.counts)  # each n_runs x ...
        class_iou = ious["class_iou"]
        unevaluated = {run: [c for c, gone in zip(self.class_ids, row) if gone]
                       for run, row in enumerate(np.isnan(class_iou[:, 1:])) if row.any()}
        if unevaluated:
            warnings.warn(f"classes never evaluated (run: class ids): {unevaluated}; their IoU is "
                          "NaN and the mean-IoU of those runs averages the other classes",
                          stacklevel=2)

        summary: Dict = {"unevaluated": unevaluated, "rule": self.rule}
        for name in ("mean_iou", "binary_iou", "background_iou", "foreground_iou"):
            summary.update({name: float(ious[name].mean()), f"{name}_std": float(ious[name].std()),
                            f"{name}_runs": ious[name].tolist()})
        per_class = dict(zip(self.class_ids, class_iou[:, 1:].T))
        with warnings.catch_warnings():  # over the runs that evaluated the class
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows stay NaN
            summary.update({
                "class_iou": {c: float(np.nanmean(v)) for c, v in per_class.items()},
                "class_iou_std": {c: float(np.nanstd(v)) for c, v in per_class.items()},
                "class_iou_runs": {c: v.tolist() for c, v in per_class.items()}})
        return summary


def reference_scores(counts: np.ndarray) -> Dict[str, List[float]]:
    """PATNet's and HSNet's mIoU and FB-IoU, in percent, per run, from an ``IoUMeter``'s counts
    under rule "corrected" (every label of every query counted) of 1-way episodes: n_runs x
    (1 + K) x 3 (TP, FP, FN; slot 0 background).

    As their AverageMeter (PATNet common/logger.py:40-56): per class k, I = TP and U = TP + FP +
    FN summed over its episodes; mIoU = 100 x mean over the K classes of I / max(U, 1) (a class
    never drawn counts 0); FB-IoU = 100 x (I_bg / U_bg + I_fg / U_fg) / 2 with the background
    and foreground counts summed over every class's episodes.
    """
    tp, fp, fn = np.moveaxis(np.asarray(counts, dtype=np.float64), -1, 0)  # each R x (1 + K)
    union = tp + fp + fn
    miou = (tp[:, 1:] / np.maximum(union[:, 1:], 1)).mean(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        fb_iou = (tp[:, 0] / union[:, 0] + tp[:, 1:].sum(1) / union[:, 1:].sum(1)) / 2
    return {"miou": (100 * miou).tolist(), "fb_iou": (100 * fb_iou).tolist()}
