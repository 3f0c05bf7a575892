"""Your own dataset in a plain folder layout (``data.name=folder``, named config ``folder``).

Layout (``root``)::

    images/<id>.jpg | .jpeg | .png     the images (8-bit; grayscale, RGBA, CMYK converted to RGB)
    masks/<id>.png                     single-channel class-index PNG of the image's size: 0
                                       background, k the class of line k of classes.txt, 255 ignore
    classes.txt                        one class name per line; line k (from 1) is class k
    splits/<split>.txt                 optional: the image ids of a split, one per line
    lists/<split>/class<k>.txt         written by scripts/prepare_folder.py: the ids of the split
                                       whose mask holds class k
    lists/<split>/sources.sha256       ... and the SHA-256 of every file they were written from
                                       (classes.txt, the split list, each mask of the split)

Split ``all`` is every image of ``images/``; any other name reads ``splits/<split>.txt``. As in
PASCAL-5i, training and testing may draw from the same images, never sharing a class.

Prepared lists are checked by content, not time (a mask replaced by an older file, ``cp -p``,
would pass a time check): opening a split hashes its files and refuses lists whose files
changed, appeared or went away since ``sources.sha256`` (``sha256sum`` format) was written.

Weak supports: with no instance masks, a box support's instances are the 8-connected parts of
the class's mask (our reading; PROTOCOL §10's largest instance becomes the largest part).
Scribbles are generated from the dense masks.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from panet.base.constants import IGNORE_INDEX
from panet.base.files import PathLike, file_sha256
from panet.data.sources import ListedSource, read_id_list, require_files

IMAGE_DIR = "images"
MASK_DIR = "masks"
CLASSES_FILE = "classes.txt"
SPLIT_DIR = "splits"
LIST_DIR = "lists"
SOURCES_FILE = "sources.sha256"  # in lists/<split>/: the files its lists were written from
ALL_SPLIT = "all"  # every image of images/
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")  # compared case-insensitively
MASK_SUFFIX = ".png"
MAX_CLASSES = IGNORE_INDEX - 1  # label maps are uint8 and 255 means ignore
MASK_ORIGIN = "the tool that made it (export a single-channel PNG of class indices)"
PREPARE_HINT = "run `python scripts/prepare_folder.py {root}`"
LAYOUT_HINT = ("expected ROOT/images/<id>.jpg|.png, ROOT/masks/<id>.png, ROOT/classes.txt "
               "(see panet/data/folder.py)")


def parse_classes(path: Path) -> Tuple[Dict[int, str], List[str]]:
    """(class id -> name, problems) of a ``classes.txt``: one non-empty, unique name per line,
    at most ``MAX_CLASSES``."""
    try:
        lines = path.read_text(encoding="utf-8").rstrip().split("\n")
    except UnicodeDecodeError as error:
        return {}, [f"{path} is not UTF-8 text ({error}); write one class name per line"]
    names = {k: line.strip() for k, line in enumerate(lines, start=1)}
    if names == {1: ""}:
        return names, [f"{path} is empty: write one class name per line"]
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
    return names, problems


def is_utf8(name: str) -> bool:
    """Whether a file name (as os.listdir gives it) is UTF-8: ids are written to UTF-8 lists."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes, kept by os.listdir as surrogates
        return False
    return True


def shown_name(name: str) -> str:
    """A file name as it can be printed: undecodable bytes escaped (b'caf\\xe9.jpg')."""
    return name if is_utf8(name) else str(os.fsencode(name))


def image_files(folder: Path) -> Tuple[Dict[str, str], List[str]]:
    """(id -> file name, problems: two files of one stem) of the images in ``folder``. Other
    files and non-UTF-8 names are left out (``panet.data.folder_prepare`` reports them)."""
    files: Dict[str, str] = {}
    problems = []
    for name in sorted(os.listdir(folder)):
        stem, suffix = os.path.splitext(name)
        if suffix.lower() not in IMAGE_SUFFIXES or not is_utf8(name):
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


def list_sources(root: Path, split: str, ids: Sequence[str]) -> Dict[str, str]:
    """Path (relative to ``root``) -> SHA-256 of every file a split's lists are written from:
    classes.txt, the split list and each id's mask."""
    names = [CLASSES_FILE] + ([] if split == ALL_SPLIT else [f"{SPLIT_DIR}/{split}.txt"])
    names += [f"{MASK_DIR}/{image_id}{MASK_SUFFIX}" for image_id in sorted(ids)]
    return {name: file_sha256(root / name) for name in names}


def write_list_sources(path: Path, sources: Dict[str, str]) -> None:
    """``list_sources`` at ``path``, one ``<sha256>  <path>`` line per file."""
    path.write_text("".join(f"{digest}  {name}\n" for name, digest in sources.items()))


class FolderSource(ListedSource):
    """One split of a dataset in the folder layout (module docstring); classes 1..K. The lists
    must have been written from the current files (``sources.sha256``)."""

    mask_origin = MASK_ORIGIN

    def __init__(self, root: PathLike, split: str = ALL_SPLIT):
        self.root, self.split = Path(root), split
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
        self.prepare_hint = PREPARE_HINT.format(root=self.root)
        self.image_fix = (self.prepare_hint + " to check every file",) * 2
        self._check_files_present()
        self.read_lists(self.root / LIST_DIR / split, f"split {split!r}", self.prepare_hint)
        self._check_list_sources()

    def _check_files_present(self) -> None:
        fix = ("" if self.split == ALL_SPLIT else
               f" or remove the ids from {self.root / SPLIT_DIR / (self.split + '.txt')}")
        masks = {name[:-len(MASK_SUFFIX)] for name in os.listdir(self.root / MASK_DIR)
                 if name.endswith(MASK_SUFFIX)}
        for present, what in ((self._files, f"{IMAGE_DIR}/<id>.jpg|.png"),
                              (masks, f"{MASK_DIR}/<id>{MASK_SUFFIX}")):
            require_files(self.ids, present, f"ids of split {self.split!r} have no {what} under "
                          f"{self.root}", f"add the files{fix} ({self.prepare_hint} lists every "
                          "problem)")

    def _check_list_sources(self) -> None:
        lists = self.root / LIST_DIR / self.split
        record = lists / SOURCES_FILE
        if not record.is_file():
            raise FileNotFoundError(f"{record} does not exist (lists written by an older "
                                    f"version?); {self.prepare_hint} again")
        lines = (line.partition("  ") for line in record.read_text().splitlines())
        written = {name: digest for digest, _, name in lines}  # what write_list_sources wrote
        now = list_sources(self.root, self.split, self.ids)
        changed = sorted(name for name in written.keys() | now.keys()
                         if written.get(name) != now.get(name))
        if changed:
            others = f" and {len(changed) - 1} other files" if len(changed) > 1 else ""
            raise ValueError(f"the per-class lists in {lists} were written from other files than "
                             f"{self.root / changed[0]}{others} (changed, added or removed since); "
                             f"{self.prepare_hint} again")

    def image_path(self, image_id: str) -> Path:
        return self.root / IMAGE_DIR / self._files[image_id]

    def mask_path(self, image_id: str) -> Path:
        return self.root / MASK_DIR / f"{image_id}{MASK_SUFFIX}"
