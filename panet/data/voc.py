"""PASCAL VOC 2012 + SBD (PROTOCOL §6) read from the standard ``VOC2012/`` folder.

Layout (``root`` is the ``VOC2012`` folder)::

    JPEGImages/{id}.jpg                            the images (VOC2012 tar)
    SegmentationClassAug/{id}.png                  class ids 0..20, 255 void (trainaug release)
    SegmentationObjectAug/{id}.png                 optional: instance ids, for box supports
    ScribbleAugAuto/{id}.png                       optional: released scribbles or those of
                                                   scripts/make_scribbles.py (else made on the fly)
    ImageSets/Segmentation/{split}.txt             the image ids of a split
    ImageSets/Segmentation/{split}/class{k}.txt    the ids holding class k (scripts/prepare_voc.py)

Splits: ``trainaug`` (10,582 ids; or ``train_aug.txt``), ``val`` (1,449), or any other
``{split}.txt``. The optional folders are opened only when a feature needs them (boxes,
scribbles). A file problem raises an error naming the file and where the official one comes from.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from panet.base.constants import IGNORE_INDEX
from panet.base.files import PathLike
from panet.data.folds import PASCAL_CLASS_NAMES, PASCAL_N_CLASSES
from panet.data.label_png import load_label_png
from panet.data.sources import ListedSource, read_id_list, require_files
from panet.data.weak import build_scribble_map

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


def require_dir(path: Path, origin: str) -> None:
    """FileNotFoundError naming the folder of the layout that is missing and its ``origin``."""
    if not path.is_dir():
        raise FileNotFoundError(f"expected folder {path} (PASCAL VOC layout, see "
                                f"panet/data/voc.py); it comes from {origin}")


def instance_mask(root: Path, image_id: str, shape: tuple) -> np.ndarray:
    """H x W uint8 ``SegmentationObjectAug/{id}.png``, checked to be of ``shape``."""
    path = root / INSTANCE_DIR / f"{image_id}.png"
    instances = load_label_png(path, ORIGIN[INSTANCE_DIR])
    if instances.shape != shape:
        raise ValueError(f"{path} is {instances.shape} but the class mask of {image_id!r} is "
                         f"{shape}; the instance mask belongs to another image")
    return instances


def generate_scribbles(root: PathLike, image_id: str) -> np.ndarray:
    """H x W uint8 scribbles (``ScribbleAugAuto`` format) drawn by the DAVIS robot
    (``panet.data.weak.build_scribble_map``) on ``SegmentationClassAug/{id}.png``, instances
    from ``SegmentationObjectAug`` when it exists (as released), else each 8-connected part of a
    class. Behind both on-the-fly scribbles and ``scripts/make_scribbles.py``."""
    root = Path(root)
    labels = load_label_png(root / CLASS_DIR / f"{image_id}.png")
    instances = (instance_mask(root, image_id, labels.shape)
                 if (root / INSTANCE_DIR).is_dir() else None)
    return build_scribble_map(labels, instances)


class VocSource(ListedSource):
    """One split of PASCAL VOC 2012 + SBD, class ids 1..20 in PROTOCOL §6 order.

    ``n_classes``, ``class_names``: another class table on the same layout (synthetic).
    ``lists_dir`` (data.lists_dir): the split and per-class lists, when not in
    ``ImageSets/Segmentation`` (``scripts/prepare_voc.py --out DIR``, for a read-only tree).
    ``images=False`` accepts a masks-only tree (no ``JPEGImages``); only images cannot be read.
    """

    mask_origin = ORIGIN[CLASS_DIR]
    image_fix = (f"it comes from {ORIGIN[IMAGE_DIR]}",
                 f"extract it again from {ORIGIN[IMAGE_DIR]}")

    def __init__(self, root: PathLike, split: str, n_classes: int = PASCAL_N_CLASSES,
                 class_names: Optional[Dict[int, str]] = None,
                 lists_dir: Optional[PathLike] = None, images: bool = True):
        self.root, self.split = Path(root), split
        self.lists_dir = Path(lists_dir) if lists_dir is not None else self.root / LIST_DIR
        self.class_ids = list(range(1, n_classes + 1))
        if class_names is None and n_classes == PASCAL_N_CLASSES:
            class_names = dict(enumerate(PASCAL_CLASS_NAMES, start=1))
        self.class_names = class_names or {}
        require_dir(self.root, "the VOC2012 folder")
        folders = {IMAGE_DIR: ".jpg", CLASS_DIR: ".png"} if images else {CLASS_DIR: ".png"}
        for folder in folders:
            require_dir(self.root / folder, ORIGIN[folder])
        require_dir(self.lists_dir, ORIGIN[str(LIST_DIR)])
        found = [self.lists_dir / f"{name}.txt" for name in SPLIT_ALIASES.get(split, (split,))
                 if (self.lists_dir / f"{name}.txt").is_file()]
        if not found:
            raise FileNotFoundError(f"split list {self.lists_dir / (split + '.txt')} does not "
                                    f"exist; it comes from {ORIGIN[str(LIST_DIR)]}")
        list_path = found[0]
        self.ids = read_id_list(list_path)
        for folder, suffix in folders.items():
            present = {name[:-len(suffix)] for name in os.listdir(self.root / folder)
                       if name.endswith(suffix)}
            require_files(self.ids, present, f"ids of {list_path} have no {folder}/<id>{suffix} "
                          f"under {self.root}", f"get the files from {ORIGIN[folder]} or remove "
                          "those ids from the list")
        self.read_lists(list_path.with_suffix(""), str(list_path),
                        PREPARE_HINT.format(root=self.root))

    def image_path(self, image_id: str) -> Path:
        return self.root / IMAGE_DIR / f"{image_id}.jpg"

    def mask_path(self, image_id: str) -> Path:
        return self.root / CLASS_DIR / f"{image_id}.png"

    def instance_map(self, image_id: str, class_id: int) -> np.ndarray:
        """Instances of ``class_id`` from ``SegmentationObjectAug``, renumbered 1..n by id, kept
        to the class's mask (class pixels without an instance id stay 0)."""
        require_dir(self.root / INSTANCE_DIR,
                    ORIGIN[INSTANCE_DIR] + " (needed for bounding-box supports)")
        in_class = self.label_map(image_id) == class_id
        objects = instance_mask(self.root, image_id, in_class.shape)
        ids = np.setdiff1d(np.unique(objects[in_class]), [0, IGNORE_INDEX])
        renumber = np.zeros(256, dtype=np.int32)
        renumber[ids] = np.arange(1, len(ids) + 1, dtype=np.int32)
        return np.where(in_class, renumber[objects], 0).astype(np.int32)

    def scribble_map(self, image_id: str) -> np.ndarray:
        """``ScribbleAugAuto/{id}.png`` when that folder exists, else ``generate_scribbles``."""
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
