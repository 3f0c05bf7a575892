"""Preparation of a PASCAL VOC folder (used by ``scripts/prepare_voc.py`` and the synthetic set).

- ``write_class_lists``: for every ``{split}.txt`` list, the per-class lists
  ``{split}/class{k}.txt`` = ids whose ``SegmentationClassAug`` mask holds class k (0 and 255 are
  not classes; PROTOCOL §6); its parts also serve ``panet.data.folder_prepare``.
- ``convert_instances``: ``SegmentationObjectAug/{id}.png`` instance maps, from VOC's own
  ``SegmentationObject`` or SBD's ``inst/{id}.mat`` (``GTinst.Segmentation``).
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Union

import numpy as np
import scipy.io

from panet.base.files import PathLike
from panet.data.folds import PASCAL_N_CLASSES
from panet.data.label_png import classes_present, load_class_mask, save_label_png
from panet.data.sources import read_id_list
from panet.data.voc import CLASS_DIR, IMAGE_DIR, INSTANCE_DIR, LIST_DIR, ORIGIN

VOC_OBJECT_DIR = "SegmentationObject"  # VOC2012's own instance PNGs (2,913 ids)


def split_lists(lists_dir: PathLike) -> Dict[str, Path]:
    """Split name (file stem) -> path, for every ``*.txt`` directly under ``lists_dir``."""
    return {path.stem: path for path in sorted(Path(lists_dir).glob("*.txt"))}


def layout_problems(voc_root: PathLike, lists_dir: Optional[PathLike] = None) -> List[str]:
    """What class-list preparation cannot find, one line per problem (empty when all is there);
    ``lists_dir`` defaults to ``voc_root/ImageSets/Segmentation``."""
    voc_root = Path(voc_root)
    lists_dir = Path(lists_dir) if lists_dir else voc_root / LIST_DIR
    if not voc_root.is_dir():
        return [f"missing folder {voc_root} (the VOC2012 folder)"]
    problems = []
    mask_dir = voc_root / CLASS_DIR
    if not mask_dir.is_dir():
        problems.append(f"missing folder {mask_dir}: get it from {ORIGIN[CLASS_DIR]}")
    if not split_lists(lists_dir):
        problems.append(f"no split list ({{split}}.txt) in {lists_dir}: they come from "
                        f"{ORIGIN[str(LIST_DIR)]}")
    if problems:
        return problems
    present = {path.stem for path in mask_dir.glob("*.png")}
    for split, path in split_lists(lists_dir).items():
        missing = [i for i in read_id_list(path) if i not in present]
        if missing:
            problems.append(f"{len(missing)} ids of {path} have no mask in {mask_dir}, e.g. "
                            f"{missing[:3]}: get the masks from {ORIGIN[CLASS_DIR]}")
    return problems


class MaskProblems(ValueError):
    """Masks that class-list preparation cannot read: every one of them, one line each."""

    def __init__(self, problems: Sequence[str], n_masks: int):
        self.problems = list(problems)
        super().__init__(f"{len(self.problems)} of {n_masks} masks cannot be used (nothing was "
                         "written):\n  " + "\n  ".join(self.problems))


def _classes_or_problem(path: Path, n_classes: int) -> Union[List[int], str]:
    """The classes of one mask (``load_class_mask``), or why it cannot be used."""
    try:
        return classes_present(load_class_mask(path, n_classes, ORIGIN[CLASS_DIR]), n_classes)
    except (FileNotFoundError, ValueError) as error:
        return str(error)


def write_class_lists(voc_root: PathLike, lists_dir: Optional[PathLike] = None,
                      out_dir: Optional[PathLike] = None, n_classes: int = PASCAL_N_CLASSES,
                      workers: int = 2) -> Dict[str, Dict[int, List[str]]]:
    """Write ``out_dir/{split}/class{k}.txt`` for every ``lists_dir/{split}.txt``; returns
    split -> class id -> sorted ids.

    ``lists_dir`` defaults to ``voc_root/ImageSets/Segmentation``, ``out_dir`` to ``lists_dir``
    (a separate ``out_dir`` also gets the split lists: a complete ``data.lists_dir``). Each mask
    is read once, in ``workers`` threads; if any is unreadable or holds labels outside
    0..n_classes and 255, ``MaskProblems`` lists all of them and nothing is written.
    """
    voc_root = Path(voc_root)
    lists_dir = Path(lists_dir) if lists_dir else voc_root / LIST_DIR
    out_dir = Path(out_dir) if out_dir else lists_dir
    problems = layout_problems(voc_root, lists_dir)
    if problems:
        raise FileNotFoundError("; ".join(problems))
    splits = {split: read_id_list(path) for split, path in split_lists(lists_dir).items()}
    all_ids = sorted({i for ids in splits.values() for i in ids})
    paths = [voc_root / CLASS_DIR / f"{i}.png" for i in all_ids]
    with ThreadPoolExecutor(max(1, workers)) as pool:
        classes_of = dict(zip(all_ids, pool.map(lambda p: _classes_or_problem(p, n_classes),
                                                paths)))
    unreadable = [found for found in classes_of.values() if isinstance(found, str)]
    if unreadable:
        raise MaskProblems(unreadable, len(all_ids))
    lists = group_by_class(splits, classes_of, n_classes)
    save_class_lists(out_dir, lists)
    if out_dir != lists_dir:
        for split, path in split_lists(lists_dir).items():
            shutil.copyfile(path, out_dir / f"{split}.txt")
    return lists


def group_by_class(splits: Mapping[str, Sequence[str]], classes_of: Mapping[str, Sequence[int]],
                   n_classes: int) -> Dict[str, Dict[int, List[str]]]:
    """split -> class id (1..n_classes) -> sorted unique ids of the split whose mask holds it,
    from each image's classes ``classes_of[id]``."""
    result = {}
    for split, ids in splits.items():
        per_class: Dict[int, List[str]] = {k: [] for k in range(1, n_classes + 1)}
        for image_id in sorted(set(ids)):
            for class_id in classes_of[image_id]:
                per_class[class_id].append(image_id)
        result[split] = per_class
    return result


def save_class_lists(out_dir: PathLike, lists: Mapping[str, Mapping[int, Sequence[str]]]) -> None:
    """Write ``out_dir/{split}/class{k}.txt`` (one id per line) for ``group_by_class`` output."""
    for split, per_class in lists.items():
        split_dir = Path(out_dir) / split
        split_dir.mkdir(parents=True, exist_ok=True)
        for class_id, ids in per_class.items():
            (split_dir / f"class{class_id}.txt").write_text("".join(i + "\n" for i in ids))


def sbd_instance_map(mat_path: Path) -> np.ndarray:
    """H x W uint8 instance ids (0 background, 1..n) from an SBD ``inst/{id}.mat`` file."""
    try:
        record = scipy.io.loadmat(mat_path, squeeze_me=True, struct_as_record=False)["GTinst"]
        instances = np.asarray(record.Segmentation)
    except (OSError, ValueError, KeyError, AttributeError) as error:
        raise ValueError(f"cannot read GTinst.Segmentation from {mat_path} ({error}); it should "
                         f"be an SBD instance file (dataset/inst/*.mat)") from error
    if instances.ndim != 2 or instances.min() < 0 or instances.max() > 255:
        raise ValueError(f"{mat_path}: GTinst.Segmentation is not an H x W map of ids 0..255")
    return instances.astype(np.uint8)


def convert_instances(voc_root: PathLike, sbd_dir: PathLike, ids: Iterable[str]) -> List[str]:
    """Write ``SegmentationObjectAug/{id}.png`` for ``ids``; returns the ids found nowhere.

    VOC's ``SegmentationObject/{id}.png`` is copied when present (it matches the VOC class masks
    ``SegmentationClassAug`` uses for those ids), else SBD's ``inst/{id}.mat`` converted."""
    voc_root, sbd_dir = Path(voc_root), Path(sbd_dir)
    out_dir = voc_root / INSTANCE_DIR
    out_dir.mkdir(exist_ok=True)
    missing = []
    for image_id in sorted(set(ids)):
        voc_png = voc_root / VOC_OBJECT_DIR / f"{image_id}.png"
        sbd_mat = sbd_dir / "inst" / f"{image_id}.mat"
        target = out_dir / f"{image_id}.png"
        if voc_png.is_file():
            shutil.copyfile(voc_png, target)
        elif sbd_mat.is_file():
            save_label_png(target, sbd_instance_map(sbd_mat))
        else:
            missing.append(image_id)
    return missing


def listed_ids(lists_dir: PathLike) -> List[str]:
    """Every id of every split list under ``lists_dir``, sorted and unique."""
    return sorted({i for path in split_lists(lists_dir).values() for i in read_id_list(path)})


def images_missing(voc_root: PathLike, ids: Sequence[str]) -> List[str]:
    """Ids without ``JPEGImages/{id}.jpg`` (class lists do not need them, training does)."""
    present = {path.stem for path in (Path(voc_root) / IMAGE_DIR).glob("*.jpg")}
    return [i for i in ids if i not in present]
