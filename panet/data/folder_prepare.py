"""Checking a folder dataset and writing its per-class lists (``scripts/prepare_folder.py``).

``check_folder`` inspects the whole layout of ``panet.data.folder`` and every file in it
(``classes.txt``; every image decodes as an 8-bit image; every image has a single-channel mask
PNG of its size whose labels are within 0..K or 255; no stray or orphan files; split lists name
existing images) and collects *every* problem instead of stopping at the first.
``write_folder_lists`` then writes ``lists/<split>/class<k>.txt`` for split ``all`` and every
``splits/<split>.txt``, with ``panet.data.voc_prepare``'s machinery, plus ``counts.txt`` and
``sources.sha256`` (what they were written from, checked by ``FolderSource``).
"""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Tuple

from panet.base.files import PathLike
from panet.data.folder import (ALL_SPLIT, CLASSES_FILE, IMAGE_DIR, IMAGE_SUFFIXES, LIST_DIR,
                               MASK_DIR, MASK_ORIGIN, MASK_SUFFIX, MAX_CLASSES, SOURCES_FILE,
                               SPLIT_DIR, image_files, is_utf8, list_sources, parse_classes,
                               shown_name, write_list_sources)
from panet.data.label_png import classes_present, load_class_mask
from panet.data.sources import read_id_list, read_image
from panet.data.voc_prepare import group_by_class, save_class_lists

SHOWN_IDS = 10  # ids quoted per problem that concerns many ids


@dataclass(frozen=True)
class Problem:
    kind: str  # category for the summary, e.g. "bad mask"
    message: str  # names the file, the value found and what is allowed


@dataclass
class FolderCheck:
    """What ``check_folder`` found."""

    root: Path
    class_names: Dict[int, str] = field(default_factory=dict)
    splits: Dict[str, List[str]] = field(default_factory=dict)  # split -> ids
    classes_of: Dict[str, List[int]] = field(default_factory=dict)  # id -> classes in its mask
    problems: List[Problem] = field(default_factory=list)

    def summary(self) -> str:
        """'3 problems: 2 bad mask, 1 missing mask' (or 'no problems')."""
        if not self.problems:
            return "no problems"
        kinds = Counter(problem.kind for problem in self.problems)
        return (f"{len(self.problems)} problem{'s' * (len(self.problems) > 1)}: "
                + ", ".join(f"{count} {kind}" for kind, count in kinds.most_common()))


def _check_pair(root: Path, image_id: str, image_file: str,
                n_classes: int) -> Tuple[List[int], List[Problem]]:
    """(classes in the mask, problems) of one image and its mask. The image is decoded in full
    (a truncated file is caught here; 16-bit and float images are refused) and its size taken
    as displayed, as the mask was drawn on it."""
    try:
        image = read_image(root / IMAGE_DIR / image_file, "", "replace it")
        size, problems = (image.height, image.width), []
    except ValueError as error:
        size, problems = (0, 0), [Problem("bad image", str(error))]
    mask = root / MASK_DIR / f"{image_id}{MASK_SUFFIX}"
    if not mask.is_file():
        return [], problems + [Problem("missing mask", f"{mask} does not exist (the mask of "
                                                       f"{root / IMAGE_DIR / image_file})")]
    try:
        labels = load_class_mask(mask, n_classes, MASK_ORIGIN)
    except ValueError as error:
        return [], problems + [Problem("bad mask", str(error))]
    classes, mask_size = classes_present(labels, n_classes), labels.shape
    if problems or mask_size == size:
        return classes, problems
    return classes, [Problem("mask size", f"{mask} is {mask_size[0]} x {mask_size[1]} (H x W) "
                                          f"but its image {image_file} is {size[0]} x {size[1]}; "
                                          f"a mask must have its image's size")]


def _stray_files(root: Path, image_ids: List[str]) -> List[Problem]:
    """Files of images/ and masks/ that are not images / masks of an image, or whose names
    are not UTF-8 (shown escaped)."""
    problems = [Problem("file name", f"{shown_name(name)} in {root / folder} is not a UTF-8 "
                                     "name (the per-class lists are UTF-8 text): rename it")
                for folder in (IMAGE_DIR, MASK_DIR) for name in sorted(os.listdir(root / folder))
                if not is_utf8(name)]
    for name in sorted(filter(is_utf8, os.listdir(root / IMAGE_DIR))):
        if not name.startswith(".") and os.path.splitext(name)[1].lower() not in IMAGE_SUFFIXES:
            problems.append(Problem("stray file", f"{root / IMAGE_DIR / name} is not a "
                                                  f"{'/'.join(IMAGE_SUFFIXES)} image"))
    known = set(image_ids)
    for name in sorted(filter(is_utf8, os.listdir(root / MASK_DIR))):
        stem, suffix = os.path.splitext(name)
        if name.startswith("."):
            continue
        if suffix != MASK_SUFFIX:
            problems.append(Problem("stray file", f"{root / MASK_DIR / name} is not a "
                                                  f"{MASK_SUFFIX} mask"))
        elif stem not in known:
            problems.append(Problem("orphan mask", f"{root / MASK_DIR / name} has no image "
                                                   f"{IMAGE_DIR}/{stem}.jpg|.png"))
    return problems


def _read_splits(root: Path, image_ids: List[str]) -> Tuple[Dict[str, List[str]], List[Problem]]:
    splits = {ALL_SPLIT: sorted(image_ids)}
    known = set(image_ids)
    problems = []
    split_dir = root / SPLIT_DIR
    for path in sorted(split_dir.glob("*.txt")) if split_dir.is_dir() else []:
        if path.stem == ALL_SPLIT:
            problems.append(Problem("split", f"{path}: {ALL_SPLIT!r} is the reserved name of the "
                                             f"split of every image; rename the file"))
            continue
        ids = read_id_list(path)
        unknown = [i for i in ids if i not in known]
        if not ids:
            problems.append(Problem("split", f"{path} lists no image id"))
        elif unknown:
            more = f" and {len(unknown) - SHOWN_IDS} more" if len(unknown) > SHOWN_IDS else ""
            problems.append(Problem("split", f"{path} lists {len(unknown)} ids without an image "
                                             f"in {root / IMAGE_DIR}: "
                                             f"{', '.join(unknown[:SHOWN_IDS])}{more}"))
        else:
            splits[path.stem] = ids
    return splits, problems


def check_folder(root: PathLike, workers: int = 2) -> FolderCheck:
    """Every problem of the folder dataset at ``root`` (see the module docstring); images and
    masks are read in ``workers`` threads."""
    check = FolderCheck(Path(root))
    root = check.root
    missing = [root / name for name in (IMAGE_DIR, MASK_DIR) if not (root / name).is_dir()]
    missing += [root / CLASSES_FILE] if not (root / CLASSES_FILE).is_file() else []
    if missing:
        check.problems += [Problem("layout", f"{path} does not exist") for path in missing]
        return check
    check.class_names, class_problems = parse_classes(root / CLASSES_FILE)
    check.problems += [Problem(CLASSES_FILE, message) for message in class_problems]
    files, duplicates = image_files(root / IMAGE_DIR)
    check.problems += [Problem("duplicate id", message) for message in duplicates]
    if not files:
        check.problems.append(Problem("layout", f"{root / IMAGE_DIR} holds no "
                                                f"{'/'.join(IMAGE_SUFFIXES)} image"))
    check.problems += _stray_files(root, list(files))
    n_classes = len(check.class_names) if not class_problems else MAX_CLASSES
    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = list(pool.map(lambda item: _check_pair(root, *item, n_classes), files.items()))
    for image_id, (classes, problems) in zip(files, results):
        check.classes_of[image_id] = classes
        check.problems += problems
    check.splits, split_problems = _read_splits(root, list(files))
    check.problems += split_problems
    return check


def write_folder_lists(check: FolderCheck) -> Dict[str, Dict[int, List[str]]]:
    """Write ``lists/<split>/class<k>.txt``, ``lists/<split>/counts.txt`` (class id, name,
    images; tab-separated) and ``lists/<split>/sources.sha256`` (``list_sources``) for a check
    without problems; returns split -> class -> ids."""
    if check.problems:
        raise ValueError(f"{check.root} has {check.summary()}; nothing written")
    lists = group_by_class(check.splits, check.classes_of, len(check.class_names))
    save_class_lists(check.root / LIST_DIR, lists)
    for split, per_class in lists.items():
        split_dir = check.root / LIST_DIR / split
        (split_dir / "counts.txt").write_text("".join(
            f"{k}\t{check.class_names[k]}\t{len(ids)}\n" for k, ids in per_class.items()))
        write_list_sources(split_dir / SOURCES_FILE,
                           list_sources(check.root, split, check.splits[split]))
    return lists
