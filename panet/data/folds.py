"""Class splits: PASCAL-5i and COCO-20i folds (PROTOCOL §6, §7), or explicit test classes.

Fold i of ``N_FOLDS`` = 4 tests on a quarter of the classes and trains on the rest:

- ``contiguous`` (PASCAL-5i, PANet's COCO-20i): test classes {b*i + 1, ..., b*i + b}, b =
  n_classes / 4: {5i+1..5i+5} for PASCAL, {20i+1..20i+20} for COCO;
- ``interleaved`` (the COCO-20i split of later papers): test classes {4k + i + 1, k = 0..b-1};
- ``all`` (cross-domain, docs/cross-domain.md): every class trains and every class tests.

With n folds (``n_folds``), contiguous blocks differ in size by at most one class, larger blocks
first (10 classes in 4 folds: 1-3, 4-6, 7-8, 9-10); interleaved fold i holds the classes c with
(c - 1) mod n = i. ``split_classes`` is the one place a run's class split is decided.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Union

from panet.data.sources import Source

N_FOLDS = 4
FOLD_STYLES = ("contiguous", "interleaved", "all")

#: PASCAL VOC class names, index 0 = class id 1 (PROTOCOL §6 order)
PASCAL_CLASS_NAMES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)
PASCAL_N_CLASSES = len(PASCAL_CLASS_NAMES)


def held_out_classes(n_classes: int, fold: int, style: str = "contiguous",
                     n_folds: int = N_FOLDS) -> List[int]:
    """The held-out class ids, ascending, of ``fold`` of ``n_folds`` folds of ``style``."""
    if style == "all":
        return list(range(1, n_classes + 1))
    if n_classes < n_folds:
        raise ValueError(f"{n_classes} classes cannot be split into {n_folds} folds; use fewer "
                         f"folds or explicit test classes")
    if style == "interleaved":
        return list(range(fold + 1, n_classes + 1, n_folds))
    size, extra = divmod(n_classes, n_folds)
    first = fold * size + min(fold, extra) + 1
    return list(range(first, first + size + (fold < extra)))


def fold_classes(n_classes: int, fold: int, train: bool, style: str = "contiguous",
                 n_folds: int = N_FOLDS) -> List[int]:
    """Class ids an episode of ``fold`` draws from: its training classes or its test classes."""
    held_out = held_out_classes(n_classes, fold, style, n_folds)
    if not train or style == "all":
        return held_out
    return [c for c in range(1, n_classes + 1) if c not in held_out]


def split_classes(source: Source, train: bool, fold: int = 0, *, n_folds: int = N_FOLDS,
                  fold_style: str = "contiguous",
                  test_classes: Optional[Sequence[Union[int, str]]] = None) -> List[int]:
    """The training (``train``) or test classes of ``source``, ascending: the ``fold`` of
    ``n_folds`` folds of ``fold_style`` holds the test classes, or ``test_classes`` (ids or
    names) lists them. A ValueError names an unknown or twice-named class, or no class left to
    train on."""
    if test_classes is None:
        return fold_classes(len(source.class_ids), fold, train, fold_style, n_folds)
    names = getattr(source, "class_names", None) or {}
    by_name = {name: class_id for class_id, name in names.items()}
    held_out = []
    for entry in test_classes:
        class_id = by_name.get(entry) if isinstance(entry, str) else entry
        if class_id not in source.class_ids:
            known = ", ".join(source.class_name(k) for k in source.class_ids)
            raise ValueError(f"test_classes: {entry!r} is not a class id or name of this dataset "
                             f"(classes: {known})")
        if class_id in held_out:
            raise ValueError(f"test_classes: {entry!r} is listed twice")
        held_out.append(class_id)
    if not train:
        return sorted(held_out)
    training = [c for c in source.class_ids if c not in held_out]
    if not training:
        raise ValueError("test_classes lists every class of the dataset: none is left to train on")
    return training
