"""Your own dataset in a plain folder layout (``data.name=folder``, named config ``folder``).

Layout (``root``)::

    images/<id>.jpg | .jpeg | .png     the images (8-bit; grayscale, RGBA, CMYK converted to RGB)
    masks/<id>.png                     single-channel class-index PNG of the image's size:
                                       0 background, k the class on line k of classes.txt,
                                       255 ignore
    classes.txt                        one class name per line; line k (from 1) is class k
    splits/<split>.txt                 optional: the image ids of a split, one per line
    lists/<split>/class<k>.txt         written by scripts/prepare_folder.py: the ids of the split
                                       whose mask holds class k

Split ``all`` is every image of ``images/``; any other name reads ``splits/<split>.txt``. As in
PASCAL-5i as released, training and testing may draw from the same images: they never share a
class (``panet.data.folds.split_classes``).

Weak supports: the layout has no instance masks, so bounding-box supports take the connected
parts (8-connected) of a class's mask as its instances (our reading; PROTOCOL §10's largest
instance becomes the largest connected part). Scribbles are generated from the dense masks.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image
from scipy import ndimage

from panet.base.constants import IGNORE_INDEX
from panet.data.label_png import labels_outside, load_label_png
from panet.data.sources import Source
from panet.data.voc import read_class_lists, read_id_list
from panet.base.files import PathLike


IMAGE_DIR = "images"
MASK_DIR = "masks"
CLASSES_FILE = "classes.txt"
SPLIT_DIR = "splits"
LIST_DIR = "lists"
ALL_SPLIT = "all"  # every image of images/
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")  # compared case-insensitively
MASK_SUFFIX = ".png"
MAX_CLASSES = IGNORE_INDEX - 1  # label maps are uint8 and 255 means ignore
PREPARE_HINT = "run `python scripts/prepare_folder.py {root}`"
LAYOUT_HINT = ("expected ROOT/images/<id>.jpg|.png, ROOT/masks/<id>.png, ROOT/classes.txt "
               "(see panet/data/folder.py)")


def parse_classes(path: Path) -> Tuple[Dict[int, str], List[str]]:
    """(class id -> name, problems) of a ``classes.txt``: one non-empty, unique name per line
    (trailing blank lines allowed), at most ``MAX_CLASSES`` of them."""
    try:
        lines = path.read_text(encoding="utf-8").rstrip().split("\n")
    except UnicodeDecodeError as error:
        return {}, [f"{path} is not UTF-8 text ({error}); write one class name per line"]
    names = {k: line.strip() for k, line in enumerate(lines, start=1)}
    problems = [f"{path} line {k} is empty: every line names one class (line k = class k)"
                for k, name in names.items() if not name]
    first_line: Dict[str, int] = {}
    for k, name in names.items():
        if name and name in first_line:
            problems.append(f"{path} line {k} repeats {name!r} of line {first_line[name]}")
        first_line.setdefault(name, k)
    if len(names) > MAX_CLASSES:
        problems.append(f"{path} names {len(names)} classes; at most {MAX_CLASSES} fit the uint8 "
                        f"masks (255 means ignore)")
    if names == {1: ""}:
        problems = [f"{path} is empty: write one class name per line"]
    return names, problems


def image_files(folder: Path) -> Tuple[Dict[str, str], List[str]]:
    """(id -> file name, problems) of the images in ``folder``: files with a suffix of
    ``IMAGE_SUFFIXES``; two files with one stem (a.jpg, a.png) are a problem. Other files are
    left out (``panet.data.folder_prepare`` reports them)."""
    files: Dict[str, str] = {}
    problems = []
    for name in sorted(os.listdir(folder)):
        stem, suffix = os.path.splitext(name)
        if suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if stem in files:
            problems.append(f"{folder / files[stem]} and {folder / name} share the id {stem!r}; "
                            f"ids must be unique: rename one")
        else:
            files[stem] = name
    return files, problems


def split_ids(root: Path, split: str, image_ids: Sequence[str]) -> List[str]:
    """The ids of ``split``: every image for ``all``, else the lines of ``splits/<split>.txt``."""
    if split == ALL_SPLIT:
        return sorted(image_ids)
    path = root / SPLIT_DIR / f"{split}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"split list {path} does not exist; write it (one image id per "
                                f"line) or use split {ALL_SPLIT!r} (every image)")
    return read_id_list(path)


class FolderSource(Source):
    """One split of a dataset in the folder layout (module docstring); classes 1..K.

    Construction checks the layout, that every id of the split has its image and mask and that
    the per-class lists exist and agree with the split; images and masks are read on access
    (``scripts/prepare_folder.py`` checks every file up front).
    """

    def __init__(self, root: PathLike, split: str = ALL_SPLIT):
        self.root = Path(root)
        self.split = split
        for path in (self.root, self.root / IMAGE_DIR, self.root / MASK_DIR):
            if not path.is_dir():
                raise FileNotFoundError(f"folder {path} does not exist; {LAYOUT_HINT}")
        classes_path = self.root / CLASSES_FILE
        if not classes_path.is_file():
            raise FileNotFoundError(f"{classes_path} does not exist; {LAYOUT_HINT}")
        self.class_names, problems = parse_classes(classes_path)
        self._files, duplicates = image_files(self.root / IMAGE_DIR)
        if problems or duplicates:
            raise ValueError("; ".join(problems + duplicates))
        self.class_ids = sorted(self.class_names)
        self.ids = split_ids(self.root, split, list(self._files))
        self._check_files_present()
        self._class_images = read_class_lists(self.root / LIST_DIR / self.split, self.class_ids,
                                              self.ids, f"split {self.split!r}",
                                              PREPARE_HINT.format(root=self.root))
        self._check_lists_are_current()

    def _check_lists_are_current(self) -> None:
        """The per-class lists must be newer than every image, mask, classes.txt and split list
        (and than the folders, whose times change when a file is added or removed): images added
        or masks redrawn after `prepare_folder.py` would otherwise be left out, or sampled for
        classes they no longer hold, with no word."""
        lists = self.root / LIST_DIR / self.split
        written = min(path.stat().st_mtime_ns for path in lists.glob("class*.txt"))
        sources = [self.root / IMAGE_DIR, self.root / MASK_DIR, self.root / CLASSES_FILE]
        if self.split != ALL_SPLIT:
            sources.append(self.root / SPLIT_DIR / f"{self.split}.txt")
        files = [(entry.stat().st_mtime_ns, Path(entry.path))
                 for folder in sources[:2] for entry in os.scandir(folder)]
        newest, changed = max(files + [(path.stat().st_mtime_ns, path) for path in sources])
        if newest > written:
            raise ValueError(f"the per-class lists in {lists} are older than {changed}: images "
                             "or masks were added or changed since they were written; "
                             + PREPARE_HINT.format(root=self.root) + " again")

    def _check_files_present(self) -> None:
        masks = set(os.listdir(self.root / MASK_DIR))
        no_image = [i for i in self.ids if i not in self._files]
        no_mask = [i for i in self.ids if i + MASK_SUFFIX not in masks]
        fix = ("" if self.split == ALL_SPLIT else
               f" or remove the ids from {self.root / SPLIT_DIR / (self.split + '.txt')}")
        for missing, what in ((no_image, f"{IMAGE_DIR}/<id>.jpg|.png"),
                              (no_mask, f"{MASK_DIR}/<id>{MASK_SUFFIX}")):
            if missing:
                raise FileNotFoundError(
                    f"{len(missing)} ids of split {self.split!r} have no {what} under "
                    f"{self.root}, e.g. {missing[:3]}; add the files{fix} (`python "
                    f"scripts/prepare_folder.py {self.root}` lists every problem)")

    def class_images(self) -> Dict[int, List[str]]:
        return {class_id: list(ids) for class_id, ids in self._class_images.items()}

    def image_path(self, image_id: str) -> Path:
        return self.root / IMAGE_DIR / self._files[image_id]

    def mask_path(self, image_id: str) -> Path:
        return self.root / MASK_DIR / f"{image_id}{MASK_SUFFIX}"

    def location(self, image_id: str) -> str:
        return f"{self.image_path(image_id)} / {self.mask_path(image_id)}"

    def image(self, image_id: str) -> Image.Image:
        check = PREPARE_HINT.format(root=self.root) + " to check every file"
        return self.read_image_file(self.image_path(image_id), check, check)

    def label_map(self, image_id: str, class_ids: Sequence[int] = ()) -> np.ndarray:
        """The full H x W class map (every class, whatever ``class_ids`` asks for)."""
        path = self.mask_path(image_id)
        labels = load_label_png(path)
        bad = labels_outside(labels, len(self.class_ids))
        if bad:
            raise ValueError(f"{path} holds labels {bad} outside 0..{len(self.class_ids)} (the "
                             f"classes of {self.root / CLASSES_FILE}) and {IGNORE_INDEX}")
        return labels

    def instance_map(self, image_id: str, class_id: int) -> np.ndarray:
        """The 8-connected parts of the class's mask, numbered 1..n in scan order."""
        parts, _ = ndimage.label(self.label_map(image_id) == class_id,
                                 structure=np.ones((3, 3), dtype=bool))
        return parts.astype(np.int32)
