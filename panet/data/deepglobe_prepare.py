"""PATNet's Deepglobe test set from the official land-cover release (prepare_deepglobe.py).

PATNet (Lei et al., ECCV 2022) tests on Deepglobe tiles split into six binary tasks. Its recipe is
the commented-out ``data/preprocess.py`` of github.com/slei109/PATNet (cited as
``preprocess.py:<line>``); the rules reproduced here:

1. Grid crop (preprocess.py:22-36): every image and its label map are cut into a 6 x 6 grid;
   tile (i, j) spans rows ``int(i * H / 6)`` to ``int((i + 1) * H / 6)`` and the same for
   columns (408 x 408 tiles for a 2448 x 2448 release image; the grid, not the size, is the rule).
2. Keep filter (preprocess.py:49-57): a label tile is kept only if it holds more than one colour
   and its rarest colour covers more than 0.048 of it. PATNet divides by the constant 166464
   (= 408 x 408, preprocess.py:54); here the divisor is the tile's own area, equal for release
   images. Colours are compared exactly, as PIL's ``getcolors`` does: a pixel off the seven
   palette colours is a colour of its own (and, being rare, drops its tile); "unknown" (black)
   is an ordinary colour for the filter.
3. Class masks (preprocess.py:65-94): for each kept tile and each class k = 1..6 whose colour
   occurs in it at all (no least area), a 0/255 mask of that colour goes to folder k. PATNet's
   ``labelset`` (preprocess.py:65) lists the colours as read by ``cv2.imread``
   (preprocess.py:90), i.e. BGR; reversing each triple gives the RGB colours below. This mapping
   is our derivation, confirmed by its fifth entry, [255, 0, 0]: no Deepglobe colour in RGB,
   but water (0, 0, 255) in BGR:

       folder 1 agriculture (255, 255, 0)   folder 4 forest  (0, 255, 0)
       folder 2 urban       (0, 255, 255)   folder 5 water   (0, 0, 255)
       folder 3 rangeland   (255, 0, 255)   folder 6 barren  (255, 255, 255)

   "unknown" (0, 0, 0) gets no folder.

Read (the Kaggle release): ``<release>/train/<id>_sat.jpg`` (2448 x 2448 RGB) with
``<id>_mask.png`` (its colour-coded labels). Written (what the Deepglobe loader reads)::

    <out>/<k>/test/origin/<id>_sat_<i><j>.jpg       tile (i, j) of <id>_sat.jpg
    <out>/<k>/test/groundtruth/<id>_sat_<i><j>.png  8-bit grayscale, 255 = class k

The tile name is PATNet's crop name (preprocess.py:32: source stem, "_", row, column); its mask
takes the same stem, as PATNet's loader derives the mask name from the image's
(data/deepglobe.py:62-64). A tile with several classes appears in several folders. Image tiles
are JPEG at quality 95, the ``cv2.imwrite`` default PATNet wrote them with (preprocess.py:33).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import numpy as np
from PIL import Image

from panet.base.files import PathLike

RELEASE_URL = "https://www.kaggle.com/datasets/balraj98/deepglobe-land-cover-classification-dataset"
RELEASE_LAYOUT = "train/<id>_sat.jpg with train/<id>_mask.png"
SAT_SUFFIX = "_sat.jpg"
MASK_SUFFIX = "_mask.png"
GRID = 6  # tiles per side (preprocess.py:22)
MIN_RAREST_SHARE = 0.048  # a kept tile's rarest colour covers more than this (preprocess.py:57)
PATNET_LABELSET_BGR = ((0, 255, 255), (255, 255, 0), (255, 0, 255), (0, 255, 0), (255, 0, 0),
                       (255, 255, 255))  # preprocess.py:65, index k - 1 -> folder k
CLASS_COLOURS = {k: tuple(reversed(bgr)) for k, bgr in enumerate(PATNET_LABELSET_BGR, start=1)}
CLASS_NAMES = {1: "agriculture", 2: "urban", 3: "rangeland", 4: "forest", 5: "water",
               6: "barren"}
PALETTE = set(CLASS_COLOURS.values()) | {(0, 0, 0)}  # the seven Deepglobe colours
JPEG_QUALITY = 95  # cv2.imwrite's default
ORIGIN_DIR = Path("test", "origin")
GROUNDTRUTH_DIR = Path("test", "groundtruth")

Box = Tuple[int, int, int, int]  # top, bottom, left, right


@dataclass
class PrepareSummary:
    """What ``prepare_deepglobe`` did."""

    images: int = 0
    tiles: int = 0
    kept: int = 0
    off_palette: int = 0  # tiles holding a colour outside ``PALETTE`` (all dropped)
    per_class: Dict[int, int] = field(default_factory=lambda: {k: 0 for k in CLASS_COLOURS})


def grid_boxes(height: int, width: int, grid: int = GRID) -> Iterator[Tuple[int, int, Box]]:
    """(row i, column j, box) of each tile of the ``grid`` x ``grid`` cut, row by row."""
    for i in range(grid):
        for j in range(grid):
            yield i, j, (int(i * height / grid), int((i + 1) * height / grid),
                         int(j * width / grid), int((j + 1) * width / grid))


def _colour_counts(label: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The distinct colours of an H x W x 3 uint8 label tile, packed as 0xRRGGBB, and counts."""
    packed = (label[..., 0].astype(np.int32) << 16) | (label[..., 1].astype(np.int32) << 8) \
        | label[..., 2]
    return np.unique(packed, return_counts=True)


def keep_tile(label: np.ndarray) -> bool:
    """PATNet's filter: more than one colour, and the rarest covers more than 0.048 of the tile."""
    _, counts = _colour_counts(label)
    return len(counts) > 1 and counts.min() / counts.sum() > MIN_RAREST_SHARE


def class_masks(label: np.ndarray) -> Dict[int, np.ndarray]:
    """Folder k -> H x W bool mask of class k's colour, for the classes present in the tile."""
    masks = {k: np.all(label == colour, axis=-1) for k, colour in CLASS_COLOURS.items()}
    return {k: mask for k, mask in masks.items() if mask.any()}


def release_pairs(release: PathLike) -> List[Tuple[str, Path, Path]]:
    """(id, image, label map) of every ``train/<id>_sat.jpg``; ValueError (one line) for a
    folder without such pairs, an image or label map missing its partner, or a pair of two
    sizes (only the file headers are read)."""
    train = Path(release) / "train"
    images = {p.name[:-len(SAT_SUFFIX)]: p for p in train.glob(f"*{SAT_SUFFIX}")}
    labels = {p.name[:-len(MASK_SUFFIX)]: p for p in train.glob(f"*{MASK_SUFFIX}")}
    if not images or not labels:
        raise ValueError(f"no Deepglobe release here: expected {RELEASE_LAYOUT} (the land-cover "
                         f"dataset from {RELEASE_URL})")
    unpaired = sorted(set(images) ^ set(labels))
    if unpaired:
        raise ValueError(f"{len(unpaired)} ids lack their {SAT_SUFFIX} or {MASK_SUFFIX} in "
                         f"{train} (e.g. {', '.join(unpaired[:5])}); restore the full release")
    for image_id in sorted(images):
        (width, height), size = Image.open(images[image_id]).size, Image.open(labels[image_id]).size
        if size != (width, height):
            raise ValueError(f"{labels[image_id]} is {size[0]} x {size[1]} but its image is "
                             f"{width} x {height}; replace both from {RELEASE_URL}")
    return [(image_id, images[image_id], labels[image_id]) for image_id in sorted(images)]


def prepare_deepglobe(pairs: List[Tuple[str, Path, Path]], out: PathLike) -> PrepareSummary:
    """Write the tiles of ``pairs`` (from ``release_pairs``) under ``out`` (module docstring)."""
    out = Path(out)
    for class_id in CLASS_COLOURS:
        for sub in (ORIGIN_DIR, GROUNDTRUTH_DIR):
            (out / str(class_id) / sub).mkdir(parents=True, exist_ok=True)
    summary = PrepareSummary()
    for image_id, image_path, label_path in pairs:
        image = np.asarray(Image.open(image_path).convert("RGB"))
        label = np.asarray(Image.open(label_path).convert("RGB"))
        summary.images += 1
        for i, j, (top, bottom, left, right) in grid_boxes(*label.shape[:2]):
            label_tile = label[top:bottom, left:right]
            colours, _ = _colour_counts(label_tile)
            summary.tiles += 1
            summary.off_palette += any(((c >> 16) & 255, (c >> 8) & 255, c & 255) not in PALETTE
                                       for c in colours.tolist())
            if keep_tile(label_tile):
                summary.kept += 1
                _write_tile(out, f"{image_id}_sat_{i}{j}", image[top:bottom, left:right],
                            class_masks(label_tile), summary)
    return summary


def _write_tile(out: Path, stem: str, image_tile: np.ndarray, masks: Dict[int, np.ndarray],
                summary: PrepareSummary) -> None:
    buffer = BytesIO()  # encoded once, written to the folder of every class of the tile
    Image.fromarray(image_tile).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    for class_id, mask in masks.items():
        (out / str(class_id) / ORIGIN_DIR / f"{stem}.jpg").write_bytes(buffer.getvalue())
        Image.fromarray(mask.astype(np.uint8) * 255).save(
            out / str(class_id) / GROUNDTRUTH_DIR / f"{stem}.png")
        summary.per_class[class_id] += 1
