"""Class tables and fold splits of PASCAL-5i and COCO-20i (PROTOCOL §6, §7).

Both benchmarks split their classes into ``N_FOLDS`` = 4 folds. Fold i tests on a quarter of the
classes and trains on the other three quarters:

- ``contiguous`` (PASCAL-5i, and PANet's COCO-20i): test classes {b*i + 1, ..., b*i + b} with
  b = n_classes / 4, i.e. {5i+1..5i+5} for PASCAL and {20i+1..20i+20} for COCO;
- ``interleaved`` (the COCO-20i split of later papers): test classes {4k + i + 1, k = 0..b-1}.
"""

from __future__ import annotations

from typing import Dict, List

N_FOLDS = 4
FOLD_STYLES = ("contiguous", "interleaved")

#: PASCAL VOC class names, index 0 = class id 1 (PROTOCOL §6 order)
PASCAL_CLASS_NAMES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)
PASCAL_N_CLASSES = len(PASCAL_CLASS_NAMES)


def pascal_class_names() -> Dict[int, str]:
    """Global class id (1..20) -> PASCAL class name."""
    return {class_id: name for class_id, name in enumerate(PASCAL_CLASS_NAMES, start=1)}


def held_out_classes(n_classes: int, fold: int, style: str = "contiguous") -> List[int]:
    """The ``n_classes / 4`` held-out class ids of ``fold``, ascending."""
    if fold not in range(N_FOLDS):
        raise ValueError(f"fold must be in 0..{N_FOLDS - 1}, got {fold}")
    if n_classes <= 0 or n_classes % N_FOLDS:
        raise ValueError(f"n_classes must be a positive multiple of {N_FOLDS}, got {n_classes}")
    per_fold = n_classes // N_FOLDS
    if style == "contiguous":
        return list(range(per_fold * fold + 1, per_fold * (fold + 1) + 1))
    if style == "interleaved":
        return [N_FOLDS * k + fold + 1 for k in range(per_fold)]
    raise ValueError(f"fold style must be one of {FOLD_STYLES}, got {style!r}")


def fold_classes(n_classes: int, fold: int, train: bool, style: str = "contiguous") -> List[int]:
    """Class ids an episode of ``fold`` draws from: its training classes or its test classes."""
    held_out = held_out_classes(n_classes, fold, style)
    if not train:
        return held_out
    return [c for c in range(1, n_classes + 1) if c not in held_out]
