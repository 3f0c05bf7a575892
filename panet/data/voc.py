"""PASCAL VOC 2012 + SBD (PROTOCOL §6) read from the standard ``VOC2012/`` folder.

Layout (``root`` is the ``VOC2012`` folder)::

    JPEGImages/{id}.jpg                            the images (VOC2012 tar)
    SegmentationClassAug/{id}.png                  class ids 0..20, 255 void (trainaug release)
    SegmentationObjectAug/{id}.png                 optional: instance ids, for box supports
    ScribbleAugAuto/{id}.png                       optional: released scribbles, or written by
                                                   scripts/make_scribbles.py (without the folder
                                                   the loader generates the same ones on the fly)
    ImageSets/Segmentation/{split}.txt             the image ids of a split
    ImageSets/Segmentation/{split}/class{k}.txt    the ids whose mask holds class k
                                                   (written by scripts/prepare_voc.py)

Splits: ``trainaug`` (10,582 ids; the list may also be named ``train_aug.txt``), ``val`` (1,449),
``train``, ``trainval``, or any other ``{split}.txt`` present. The optional folders are opened only
when a feature needs them (boxes, scribbles). Every file problem raises an error that names the
file and says where the official files come from.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
from PIL import Image

from panet.base.constants import IGNORE_INDEX
from panet.data.folds import PASCAL_N_CLASSES, pascal_class_names
from panet.data.label_png import labels_outside, load_label_png
from panet.data.sources import Source
from panet.data.weak import build_scribble_map
from panet.base.files import PathLike


IMAGE_DIR = "JPEGImages"
CLASS_DIR = "SegmentationClassAug"
INSTANCE_DIR = "SegmentationObjectAug"
SCRIBBLE_DIR = "ScribbleAugAuto"
LIST_DIR = Path("ImageSets", "Segmentation")
SPLIT_ALIASES = {"trainaug": ("trainaug", "train_aug")}  # names the trainaug list ships under

ORIGIN = {
    IMAGE_DIR: "the VOC2012 trainval tar (host.robots.ox.ac.uk/pascal/VOC/voc2012/, "
               "VOCtrainval_11-May-2012.tar)",
    CLASS_DIR: "the SBD-augmented masks: the usual trainaug release (SegmentationClassAug.zip, "
               "12,031 PNGs) or built from SBD (home.bharathh.info/pubs/codes/SBD/) plus the VOC "
               "masks",
    INSTANCE_DIR: "SBD's inst/*.mat, converted by `python scripts/prepare_voc.py VOC2012_DIR "
                  "--sbd SBD_DIR/dataset`",
    SCRIBBLE_DIR: "the released ScribbleAugAuto PNGs or `python scripts/make_scribbles.py "
                  "VOC2012_DIR` (without the folder the same scribbles are generated on the fly)",
    str(LIST_DIR): "the VOC2012 tar (train.txt, val.txt, trainval.txt) and the trainaug release "
                   "(trainaug.txt / train_aug.txt)",
}
PREPARE_HINT = "run `python scripts/prepare_voc.py {root}` to write the per-class lists"


def split_list_path(lists_dir: Path, split: str) -> Optional[Path]:
    """The ``{split}.txt`` file under ``lists_dir`` (trying the split's aliases), or None."""
    for name in SPLIT_ALIASES.get(split, (split,)):
        path = lists_dir / f"{name}.txt"
        if path.is_file():
            return path
    return None


def read_id_list(path: Path) -> List[str]:
    """Image ids listed one per line (blank lines and surrounding spaces ignored)."""
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def generate_scribbles(root: PathLike, image_id: str) -> np.ndarray:
    """H x W uint8 scribble map of one image, ``ScribbleAugAuto`` format, drawn by the DAVIS robot
    (``panet.data.weak.build_scribble_map``) on ``root/SegmentationClassAug/{id}.png``.

    Instances: ``SegmentationObjectAug/{id}.png`` when that folder exists (as the released
    scribbles were made), otherwise every 8-connected part of a class region. The one function
    behind both the loader's on-the-fly scribbles and ``scripts/make_scribbles.py``.
    """
    root = Path(root)
    labels = load_label_png(root / CLASS_DIR / f"{image_id}.png")
    instances = None
    if (root / INSTANCE_DIR).is_dir():
        path = root / INSTANCE_DIR / f"{image_id}.png"
        if not path.is_file():
            raise FileNotFoundError(f"instance mask {path} does not exist but its folder does; "
                                    f"it comes from {ORIGIN[INSTANCE_DIR]}")
        instances = load_label_png(path)
        if instances.shape != labels.shape:
            raise ValueError(f"{path} is {instances.shape} but the class mask of {image_id!r} "
                             f"is {labels.shape}; the instance mask belongs to another image")
    return build_scribble_map(labels, instances)


def read_class_lists(class_dir: Path, class_ids: Sequence[int], split_ids: Sequence[str],
                     split: str, prepare_hint: str) -> Dict[int, List[str]]:
    """class id -> sorted ids listed in ``class_dir/class{k}.txt``, checked to exist and to
    name only ids of the split (``split`` and ``prepare_hint`` go into the error messages)."""
    known = set(split_ids)
    lists = {}
    for class_id in class_ids:
        path = class_dir / f"class{class_id}.txt"
        if not path.is_file():
            raise FileNotFoundError(f"per-class list {path} does not exist; {prepare_hint}")
        ids = read_id_list(path)
        stray = [i for i in ids if i not in known]
        if stray:
            raise ValueError(f"{path} lists ids that are not in {split}, e.g. {stray[:3]}; the "
                             f"lists are stale: {prepare_hint}")
        lists[class_id] = sorted(ids)
    return lists


def _file_stems(folder: Path, suffix: str) -> set:
    return {name[: -len(suffix)] for name in os.listdir(folder) if name.endswith(suffix)}


class VocSource(Source):
    """One split of PASCAL VOC 2012 + SBD. Class ids 1..20 in PROTOCOL §6 order.

    ``n_classes`` and ``class_names`` let the same layout carry another class table (the
    synthetic set uses its own names).

    ``lists_dir`` holds the split lists and per-class lists when they are not in the tree's
    ``ImageSets/Segmentation`` (``scripts/prepare_voc.py --out DIR`` writes such a folder for a
    read-only tree; config key ``data.lists_dir``).

    Construction checks the layout, that every listed id has its image and mask, and that the
    per-class lists exist and agree with the split; images and masks are read on access.
    ``images=False`` accepts a masks-only tree (no ``JPEGImages``): everything but decoding an
    image works (class lists, label maps, episode layouts).
    """

    def __init__(self, root: PathLike, split: str, n_classes: int = PASCAL_N_CLASSES,
                 class_names: Optional[Dict[int, str]] = None,
                 lists_dir: Optional[PathLike] = None, images: bool = True):
        self.root = Path(root)
        self.lists_dir = Path(lists_dir) if lists_dir is not None else self.root / LIST_DIR
        self.split = split
        self.n_classes = n_classes
        self.class_ids = list(range(1, n_classes + 1))
        if class_names is None and n_classes == PASCAL_N_CLASSES:
            class_names = pascal_class_names()
        self.class_names = class_names or {}
        self._require_dir(self.root, "the VOC2012 folder")
        self._folders = (IMAGE_DIR, CLASS_DIR) if images else (CLASS_DIR,)
        for name in self._folders:
            self._require_dir(self.root / name, ORIGIN[name])
        self._require_dir(self.lists_dir, ORIGIN[str(LIST_DIR)])
        list_path = split_list_path(self.lists_dir, split)
        if list_path is None:
            raise FileNotFoundError(
                f"split list {self.lists_dir / (split + '.txt')} does not exist; it comes "
                f"from {ORIGIN[str(LIST_DIR)]}")
        self.ids = read_id_list(list_path)
        self._check_files_present(list_path)
        self._class_images = read_class_lists(list_path.with_suffix(""), self.class_ids,
                                              self.ids, str(list_path),
                                              PREPARE_HINT.format(root=self.root))

    def _require_dir(self, path: Path, origin: str) -> None:
        if not path.is_dir():
            raise FileNotFoundError(f"expected folder {path} (PASCAL VOC layout, see "
                                    f"panet/data/voc.py); it comes from {origin}")

    def _check_files_present(self, list_path: Path) -> None:
        for folder in self._folders:
            suffix = ".jpg" if folder == IMAGE_DIR else ".png"
            present = _file_stems(self.root / folder, suffix)
            missing = [i for i in self.ids if i not in present]
            if missing:
                raise FileNotFoundError(
                    f"{len(missing)} ids of {list_path} have no {folder}/<id>{suffix} under "
                    f"{self.root}, e.g. {missing[:3]}; get the files from {ORIGIN[folder]} or "
                    f"remove those ids from the list")

    def class_images(self) -> Dict[int, List[str]]:
        return {class_id: list(ids) for class_id, ids in self._class_images.items()}

    def location(self, image_id: str) -> str:
        return (f"{self.root / IMAGE_DIR / (image_id + '.jpg')} / "
                f"{self.root / CLASS_DIR / (image_id + '.png')}")

    def image_path(self, image_id: str) -> Path:
        return self.root / IMAGE_DIR / f"{image_id}.jpg"

    def image(self, image_id: str) -> Image.Image:
        return self.read_image_file(self.image_path(image_id), f"it comes from {ORIGIN[IMAGE_DIR]}",
                                    f"extract it again from {ORIGIN[IMAGE_DIR]}")

    def label_map(self, image_id: str, class_ids: Sequence[int] = ()) -> np.ndarray:
        """The full H x W class map (every class, whatever ``class_ids`` asks for)."""
        path = self.root / CLASS_DIR / f"{image_id}.png"
        labels = load_label_png(path)
        bad = labels_outside(labels, self.n_classes)
        if bad:
            raise ValueError(f"{path} holds labels {bad} outside 0..{self.n_classes} and "
                             f"{IGNORE_INDEX}; it is not a class-id mask of {ORIGIN[CLASS_DIR]}")
        return labels

    def instance_map(self, image_id: str, class_id: int) -> np.ndarray:
        """Instances of ``class_id`` from ``SegmentationObjectAug``, renumbered 1..n by id.

        Instance pixels outside the class's mask are dropped; class pixels without an instance
        id stay 0.
        """
        folder = self.root / INSTANCE_DIR
        self._require_dir(folder, ORIGIN[INSTANCE_DIR] + " (needed for bounding-box supports)")
        path = folder / f"{image_id}.png"
        objects = load_label_png(path)
        in_class = self.label_map(image_id) == class_id
        if objects.shape != in_class.shape:
            raise ValueError(f"{path} is {objects.shape} but the class mask of {image_id!r} is "
                             f"{in_class.shape}; the instance mask belongs to another image")
        ids = np.setdiff1d(np.unique(objects[in_class]), [0, IGNORE_INDEX])
        renumber = np.zeros(256, dtype=np.int32)
        renumber[ids] = np.arange(1, len(ids) + 1, dtype=np.int32)
        return np.where(in_class, renumber[objects], 0).astype(np.int32)

    def scribble_map(self, image_id: str) -> np.ndarray:
        """``ScribbleAugAuto/{id}.png`` when that folder exists, else the same scribbles
        generated on the fly (``generate_scribbles``, kept per image)."""
        folder = self.root / SCRIBBLE_DIR
        if not folder.is_dir():
            return super().scribble_map(image_id)
        path = folder / f"{image_id}.png"
        if not path.is_file():
            raise FileNotFoundError(f"scribble file {path} does not exist; complete the folder "
                                    f"with `python scripts/make_scribbles.py {self.root}` (it "
                                    f"keeps existing files) or remove it to generate scribbles "
                                    f"on the fly")
        return load_label_png(path)

    def generate_scribble_map(self, image_id: str) -> np.ndarray:
        return generate_scribbles(self.root, image_id)
