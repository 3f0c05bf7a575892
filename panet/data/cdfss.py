"""The cross-domain few-shot benchmark's target datasets (PATNet, Lei et al., ECCV 2022), in the
layouts PATNet's loaders read (``data.root`` is the dataset's own folder)::

    deepglobe   <root>/<k>/test/origin/<stem>.jpg, <root>/<k>/test/groundtruth/<stem>.png,
                k = 1..6 (after PATNet's preprocessing: scripts/prepare_deepglobe.py)
    isic2018    <root>/ISIC2018_Task1-2_Training_Input/<k>/<id>.jpg, k = 1..3 (or the flat
                folder and <root>/class_id.csv, ``ID,Class``), masks in
                <root>/ISIC2018_Task1_Training_GroundTruth/<id>_segmentation.png
    chestxray   <root>/CXR_png/<name>.png, <root>/masks/<name>_mask.png
    fss1000     <root>/<class>/<n>.jpg and <n>.png, classes listed one per line in
                <lists>/<split>.txt, split = trn | val | test (HSNet's and PATNet's
                data/splits/fss/; <lists> is data.lists_dir, by default <root>/splits)

Every image shows one class. A mask is read as 8-bit grayscale and binarised at 128 (PATNet's
data/deepglobe.py:73-77, isic.py:72-76, lung.py:73-77; HSNet's data/fss.py:75-79): the label map
holds the image's class id where the mask is >= 128, else 0 (uint16 beyond 254 classes:
FSS-1000's 520 training classes).

An image id is its path relative to ``root``. Each class's list is in PATNet's loader's order,
``sorted(glob(folder/*))`` kept to the names whose first dot-separated suffix is the extension
(deepglobe.py:103-113, isic.py:101-111, lung.py:102-112): chest X-rays are listed by their mask
names. FSS-1000 lists every ``.jpg`` of each class folder, in sorted class order (HSNet
data/fss.py:107-114): its protocol's queries, in turn.
"""

from __future__ import annotations

import csv
import glob
import os
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from panet.base.constants import IGNORE_INDEX
from panet.data.label_png import decode
from panet.data.sources import ListedSource, read_id_list

MASK_THRESHOLD = 128
ISIC_CLASSES = ("nevus", "seborrheic_keratosis", "melanoma")  # folders 1, 2, 3
DEEPGLOBE_CLASSES = ("agriculture", "urban", "rangeland", "forest", "water", "barren")
FSS_SPLITS = ("trn", "val", "test")
DOWNLOADS = {
    "deepglobe": "https://www.kaggle.com/datasets/balraj98/deepglobe-land-cover-classification-"
                 "dataset, then scripts/prepare_deepglobe.py (or PATNet's preprocessed archive, "
                 "github.com/slei109/PATNet)",
    "isic2018": "https://challenge.isic-archive.com/data#2018 (Task 1-2 training input and Task 1 "
                "ground truth) and class_id.csv from github.com/slei109/PATNet (data/isic/)",
    "chestxray": "https://www.kaggle.com/datasets/nikhilpandey360/chest-xray-masks-and-labels "
                 "(its Lung Segmentation folder)",
    "fss1000": "https://github.com/HKUSTCV/FSS-1000 (images), with data/splits/fss/{trn,val,"
               "test}.txt from github.com/juhongm999/hsnet",
}


def listed(folder: Path, extension: str) -> List[Path]:
    """The files of ``folder`` as PATNet lists them: ``sorted(glob(folder/*))`` (no hidden
    files) kept to ``name.split('.')[1] == extension``."""
    names = sorted(glob.glob(os.path.join(glob.escape(str(folder)), "*")))
    return [Path(p) for p in names if Path(p).name.split(".")[1:2] == [extension]]


class OneClassSource(ListedSource):
    """A split whose every image shows one class, with a binary mask (module docstring)."""

    name: str  # the data.name, for messages
    LAYOUT: str  # the files data.root holds, for messages
    every_query = False  # the reference rule: every image is a query in turn (FSS-1000)

    def __init__(self, root: Path, split: str):
        self.root, self.split = Path(root), split
        if not self.root.is_dir():
            raise FileNotFoundError(self.layout_problem(f"{self.root} is not a folder"))
        self.image_fix = (f"it is listed in {self.root}",
                          f"download {self.name} again ({DOWNLOADS[self.name]})")

    def layout_problem(self, what: str) -> str:
        return (f"{what}; data.root must be the {self.name} folder: {self.LAYOUT} "
                f"(download: {DOWNLOADS[self.name]})")

    def _set_classes(self, per_class: Sequence[Tuple[str, Sequence[Path]]]) -> None:
        """Classes 1..K from (name, image paths in the reference loader's order) pairs."""
        empty = [name for name, paths in per_class if not paths]
        if empty:
            raise FileNotFoundError(self.layout_problem(f"no images for class(es) {empty}"))
        self.class_ids = list(range(1, len(per_class) + 1))
        self.class_names = {k: name for k, (name, _) in enumerate(per_class, start=1)}
        self._class_images = {k: [self.image_id(p) for p in paths]
                              for k, (_, paths) in enumerate(per_class, start=1)}
        self._class_of = {i: k for k, ids in self._class_images.items() for i in ids}
        self._dtype = np.uint8 if len(per_class) < IGNORE_INDEX else np.uint16

    def image_id(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def class_of(self, image_id: str) -> int:
        return self._class_of[image_id]

    def image_path(self, image_id: str) -> Path:
        return self.root / image_id

    def label_map(self, image_id: str, class_ids: Sequence[int] = ()) -> np.ndarray:
        """H x W: the image's class id where its mask (8-bit grayscale) is >= 128, else 0."""
        mask = decode(self.mask_path(image_id),
                      lambda mask: np.asarray(mask.convert("L")) >= MASK_THRESHOLD,
                      f"every image of {self.root} needs its mask", "download it again",
                      kind="mask")
        return (mask * self.class_of(image_id)).astype(self._dtype)


class DeepglobeSource(OneClassSource):
    name = "deepglobe"
    LAYOUT = ("<root>/<k>/test/origin/<stem>.jpg and <root>/<k>/test/groundtruth/<stem>.png, "
              "k = 1..6")

    def __init__(self, root: Path, split: str):
        super().__init__(root, split)
        self._set_classes([(name, listed(self.root / str(k) / split / "origin", "jpg"))
                           for k, name in enumerate(DEEPGLOBE_CLASSES, start=1)])

    def mask_path(self, image_id: str) -> Path:
        image = self.image_path(image_id)
        return image.parent.parent / "groundtruth" / (image.name.split(".")[0] + ".png")


class IsicSource(OneClassSource):
    name = "isic2018"
    INPUT, TRUTH, CLASS_FILE = ("ISIC2018_Task1-2_Training_Input",
                                "ISIC2018_Task1_Training_GroundTruth", "class_id.csv")
    LAYOUT = (f"<root>/{INPUT}/<k>/<id>.jpg, k = 1..3 (or <root>/{INPUT}/<id>.jpg with "
              f"<root>/{CLASS_FILE}), and <root>/{TRUTH}/<id>_segmentation.png")

    def __init__(self, root: Path, split: str):
        super().__init__(root, split)
        images = self.root / self.INPUT
        folders = [images / str(k) for k in range(1, len(ISIC_CLASSES) + 1)]
        if all(folder.is_dir() for folder in folders):
            per_class = [listed(folder, "jpg") for folder in folders]
        else:
            per_class = self._from_class_file(images)
        self._set_classes(list(zip(ISIC_CLASSES, per_class)))

    def _from_class_file(self, images: Path) -> List[List[Path]]:
        """Per class, the flat folder's images that class_id.csv gives that class."""
        table = self.root / self.CLASS_FILE
        if not table.is_file():
            raise FileNotFoundError(self.layout_problem(f"neither {images}/1..3/ nor {table}"))
        with open(table, newline="", encoding="utf-8") as lines:
            rows = list(csv.DictReader(lines))
        if not rows or set(rows[0]) != {"ID", "Class"}:
            raise ValueError(f"{table} must have the header ID,Class (PATNet's data/isic/"
                             "class_id.csv)")
        unknown = sorted({row["Class"] for row in rows} - set(ISIC_CLASSES))
        if unknown:
            raise ValueError(f"{table} names classes {unknown}; expected {list(ISIC_CLASSES)}")
        by_stem = {row["ID"]: ISIC_CLASSES.index(row["Class"]) for row in rows}
        per_class: List[List[Path]] = [[] for _ in ISIC_CLASSES]
        for path in listed(images, "jpg"):
            if path.name.split(".")[0] in by_stem:
                per_class[by_stem[path.name.split(".")[0]]].append(path)
        return per_class

    def mask_path(self, image_id: str) -> Path:
        stem = Path(image_id).name.split(".")[0]
        return self.root / self.TRUTH / f"{stem}_segmentation.png"


class ChestXraySource(OneClassSource):
    """Listed by mask (lung.py:102-112); the image of mask <name> is CXR_png/<name minus its
    last 9 characters>.png (lung.py:64-69), checked for every mask when opened."""

    name = "chestxray"
    LAYOUT = "<root>/CXR_png/<name>.png and <root>/masks/<name>_mask.png"

    def __init__(self, root: Path, split: str):
        super().__init__(root, split)
        pairs = [(self.root / "CXR_png" / (mask.name[:-9] + ".png"), mask)
                 for mask in listed(self.root / "masks", "png")]
        missing = [mask.name for image, mask in pairs if not image.is_file()]
        if missing:
            raise FileNotFoundError(self.layout_problem(
                f"{len(missing)} masks have no image CXR_png/<name>.png, e.g. {missing[:3]}"))
        self._masks = {self.image_id(image): mask for image, mask in pairs}
        self._set_classes([("lung", [image for image, _ in pairs])])

    def mask_path(self, image_id: str) -> Path:
        return self._masks[image_id]


class Fss1000Source(OneClassSource):
    """Split ``trn`` (520 classes), ``val`` or ``test`` (240 each) of FSS-1000; class k of the
    split is line k of the split's sorted list (HSNet data/fss.py:22-24)."""

    name = "fss1000"
    every_query = True
    LAYOUT = "<root>/<class>/<n>.jpg and <n>.png, n = 1..10"

    def __init__(self, root: Path, split: str, lists_dir: Optional[Path] = None):
        super().__init__(root, split)
        lists_dir = Path(lists_dir) if lists_dir is not None else self.root / "splits"
        if split not in FSS_SPLITS:
            raise ValueError(f"FSS-1000 has the splits {FSS_SPLITS}, not {split!r}")
        path = lists_dir / f"{split}.txt"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} does not exist: copy data/splits/fss/{{trn,val,test}}.txt of "
                f"github.com/juhongm999/hsnet into {lists_dir}, or set data.lists_dir to the "
                "folder holding them")
        classes = sorted(read_id_list(path))
        missing = [c for c in classes if not (self.root / c).is_dir()]
        if missing:
            raise FileNotFoundError(self.layout_problem(
                f"{len(missing)} classes of {path} have no folder, e.g. {missing[:3]}"))
        self._set_classes([(c, listed(self.root / c, "jpg")) for c in classes])

    def mask_path(self, image_id: str) -> Path:
        image = self.image_path(image_id)
        return image.parent / (image.name.split(".")[0] + ".png")
