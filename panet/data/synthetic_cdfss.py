"""Generated stand-ins for the four cross-domain few-shot test sets of PATNet (ECCV 2022):
Deepglobe, ISIC2018, Chest X-ray and FSS-1000, each small, in its real on-disk layout, so the
loaders run on it (``data.root`` is the dataset's own folder)::

    Deepglobe/<k>/test/origin/<stem>.jpg, <k>/test/groundtruth/<stem>.png        k = 1..6
    ISIC/ISIC2018_Task1-2_Training_Input/<k>/ISIC_<7 digits>.jpg                 k = 1..3
    ISIC/ISIC2018_Task1_Training_GroundTruth/ISIC_<7 digits>_segmentation.png
    ISIC/class_id.csv                  "ID,Class", then "<id>,<class>" per image, by id
    LungSegmentation/CXR_png/<name>.png, LungSegmentation/masks/<name>_mask.png
    FSS-1000/<class>/<n>.jpg, <class>/<n>.png (n = 1..10), FSS-1000/splits/{trn,val,test}.txt

Every mask is an 8-bit grayscale PNG of the image's size, 0 background and 255 the class. The
ISIC classes nevus, seborrheic_keratosis, melanoma are folders 1, 2, 3. Deepglobe and ISIC hold
``images_per_class`` images per class, Lung ``lung_images``, FSS-1000 ``len(FSS_CLASSES)``
classes (``FSS_SPLITS``: 6 trn, 3 val, 3 test) of 10 images each; every mask has its image.

Each class has a colour pair and a fill pattern (``class_style``) that fills its object (1-3
blobs for Deepglobe, one lesion for ISIC and FSS-1000, two lung fields for the grayscale X-rays)
on a noisy background of the dataset's own colour, so a model can find a class from its support.

Names carry the edge cases of the real data, for the loaders' exact sorting:

* Lung names come in pairs like "CHNCXR_0001" and "CHNCXR_0001_1": sorted images put
  "CHNCXR_0001.png" first ("." < "_") but sorted masks put "CHNCXR_0001_1_mask.png" first
  ("1" < "m"), so the two sorted lists differ in order.
* ISIC ids have 7 digits, with gaps, cross ISIC_0009999 -> ISIC_0010000, and the classes
  interleave in id order.
* FSS-1000 images are 1..10, so "10.jpg" sorts before "2.jpg".

Image k of a class is drawn from its own generator seeded with (seed, dataset, class, k), so the
files are byte-identical across runs. Existing files are overwritten.
"""

from __future__ import annotations

import colorsys
from pathlib import Path
from typing import Tuple

import numpy as np
from PIL import Image, ImageDraw

from panet.base.files import PathLike
from panet.data import synthetic

DEEPGLOBE_DIR, ISIC_DIR, LUNG_DIR, FSS_DIR = "Deepglobe", "ISIC", "LungSegmentation", "FSS-1000"
DEEPGLOBE_CLASSES = 6
DEEPGLOBE_FIRST_ID = 100_000
ISIC_CLASSES = ("nevus", "seborrheic_keratosis", "melanoma")  # folder k = position + 1
ISIC_IMAGE_DIR = "ISIC2018_Task1-2_Training_Input"
ISIC_MASK_DIR = "ISIC2018_Task1_Training_GroundTruth"
ISIC_CSV = "class_id.csv"
ISIC_FIRST_ID, ISIC_ID_STEP = 9_980, 2  # ids 0009980, 0009982, ... cross 0010000
LUNG_IMAGE_DIR, LUNG_MASK_DIR, LUNG_MASK_SUFFIX = "CXR_png", "masks", "_mask.png"
PATTERNS = ("hstripes", "vstripes", "checker", "dots", "solid")
FSS_CLASSES = tuple(f"{PATTERNS[k % len(PATTERNS)]}_{k + 1:02d}" for k in range(12))
FSS_SPLITS = {"trn": 6, "val": 3, "test": 3}  # classes per split, in FSS_CLASSES order
FSS_IMAGES = 10  # per class, named 1..10 as in FSS-1000
DEFAULT_IMAGES_PER_CLASS = 12
DEFAULT_LUNG_IMAGES = 20
DATASET_CODES = {DEEPGLOBE_DIR: 0, ISIC_DIR: 1, LUNG_DIR: 2, FSS_DIR: 3}  # seed the generators
BACKGROUNDS = {DEEPGLOBE_DIR: (110, 100, 70), ISIC_DIR: (215, 170, 150), LUNG_DIR: (190, 190, 190),
               FSS_DIR: (128, 128, 128)}
BLOB_RADIUS = (0.18, 0.32)  # fraction of the short side
PATTERN_PERIOD = 0.16  # fraction of the short side
NOISE_STD = 6.0
JPEG_QUALITY = 90

Size = Tuple[int, int]  # height, width


def class_style(dataset: str, class_index: int) -> Tuple[np.ndarray, np.ndarray, str]:
    """(first colour, second colour, pattern) of class ``class_index`` (0-based) of ``dataset``:
    hues spread by the golden ratio, patterns cycling through ``PATTERNS``."""
    k = class_index + 5 * DATASET_CODES[dataset]
    hue = (0.618034 * k) % 1.0
    first = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    second = colorsys.hsv_to_rgb((hue + 0.08) % 1.0, 0.6, 0.35)
    return (np.array(first, np.float32) * 255, np.array(second, np.float32) * 255,
            PATTERNS[class_index % len(PATTERNS)])


def _blob(size: Size, rng: np.random.Generator, centred: bool) -> np.ndarray:
    """H x W bool star-shaped blob of 12 radii 0.7-1.0 x r (r a ``BLOB_RADIUS`` share of the
    short side), near the image centre (``centred``) or anywhere it fits."""
    radius = rng.uniform(*BLOB_RADIUS) * min(size)
    height, width = size
    if centred:
        centre = (width / 2 + rng.uniform(-0.1, 0.1) * width,
                  height / 2 + rng.uniform(-0.1, 0.1) * height)
    else:
        centre = (rng.uniform(radius, width - radius), rng.uniform(radius, height - radius))
    angles = np.linspace(0, 2 * np.pi, 12, endpoint=False) + rng.uniform(0, np.pi / 6)
    radii = radius * rng.uniform(0.7, 1.0, size=angles.size)
    points = np.stack([np.cos(angles), np.sin(angles)], axis=1) * radii[:, None] + centre
    canvas = Image.new("L", (width, height), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in points], fill=1)
    return np.asarray(canvas, dtype=bool)


def _lung_fields(size: Size, rng: np.random.Generator) -> np.ndarray:
    """Two tall ellipses left and right of the middle, as lungs on a chest X-ray."""
    height, width = size
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for side in (0.28, 0.72):
        x, y = (side + rng.uniform(-0.03, 0.03)) * width, (0.5 + rng.uniform(-0.05, 0.05)) * height
        half_width, half_height = rng.uniform(0.12, 0.16) * width, rng.uniform(0.3, 0.36) * height
        draw.ellipse([x - half_width, y - half_height, x + half_width, y + half_height], fill=1)
    return np.asarray(canvas, dtype=bool)


def render(dataset: str, class_index: int, index: int, seed: int = 0,
           size: Size = (96, 96)) -> Tuple[np.ndarray, np.ndarray]:
    """Image ``index`` of class ``class_index`` of ``dataset``: (H x W x 3 uint8 RGB, H x W
    uint8 mask, 0 / 255)."""
    rng = np.random.default_rng([seed, DATASET_CODES[dataset], class_index, index])
    base = np.array(BACKGROUNDS[dataset], np.float32) + rng.uniform(-20, 20, size=3)
    image = np.broadcast_to(base, (*size, 3)).copy()
    if dataset == LUNG_DIR:
        mask = _lung_fields(size, rng)
    elif dataset == DEEPGLOBE_DIR:
        mask = np.logical_or.reduce([_blob(size, rng, centred=False)
                                     for _ in range(rng.integers(1, 4))])
    else:
        mask = _blob(size, rng, centred=True)
    first, second, kind = class_style(dataset, class_index)
    # the fill: a texture of the PASCAL-layout set (panet.data.synthetic), with a random phase
    pattern = np.ones(size, dtype=bool) if kind == "solid" else synthetic.texture_pattern(
        kind, (slice(0, size[0]), slice(0, size[1])), PATTERN_PERIOD * min(size), rng)
    image[mask] = np.where(pattern[mask][:, None], first, second)
    image += NOISE_STD * rng.standard_normal(size=image.shape, dtype=np.float32)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), mask.astype(np.uint8) * 255


def _save_pair(dataset: str, class_index: int, index: int, seed: int, size: Size,
               image_path: Path, mask_path: Path, grayscale: bool = False) -> None:
    pixels, mask = render(dataset, class_index, index, seed, size)
    image = Image.fromarray(pixels)
    if grayscale:
        image = image.convert("L")
    image_path.parent.mkdir(parents=True, exist_ok=True)
    mask_path.parent.mkdir(parents=True, exist_ok=True)
    image.save(image_path, **({"quality": JPEG_QUALITY} if image_path.suffix == ".jpg" else {}))
    Image.fromarray(mask).save(mask_path)


def write_deepglobe(root: Path, seed: int, size: Size, images_per_class: int) -> None:
    for class_index in range(DEEPGLOBE_CLASSES):
        folder = root / str(class_index + 1) / "test"
        for index in range(images_per_class):
            # tile names as scripts/prepare_deepglobe.py writes them: <id>_sat_<row><column>
            n = class_index * images_per_class + index
            stem = f"{DEEPGLOBE_FIRST_ID + 7 * (n // 36)}_sat_{n // 6 % 6}{n % 6}"
            _save_pair(DEEPGLOBE_DIR, class_index, index, seed, size,
                       folder / "origin" / f"{stem}.jpg", folder / "groundtruth" / f"{stem}.png")


def write_isic(root: Path, seed: int, size: Size, images_per_class: int) -> None:
    rows = ["ID,Class"]
    for n in range(images_per_class * len(ISIC_CLASSES)):  # in id order, classes take turns
        image_id = f"ISIC_{ISIC_FIRST_ID + ISIC_ID_STEP * n:07d}"
        class_index = n % len(ISIC_CLASSES)
        _save_pair(ISIC_DIR, class_index, n // len(ISIC_CLASSES), seed, size,
                   root / ISIC_IMAGE_DIR / str(class_index + 1) / f"{image_id}.jpg",
                   root / ISIC_MASK_DIR / f"{image_id}_segmentation.png")
        rows.append(f"{image_id},{ISIC_CLASSES[class_index]}")
    (root / ISIC_CSV).write_text("".join(row + "\n" for row in rows))


def write_lung(root: Path, seed: int, size: Size, n_images: int) -> None:
    for index in range(n_images):  # pairs "CHNCXR_<j>", "CHNCXR_<j>_1" (module docstring)
        name = f"CHNCXR_{index // 2 + 1:04d}" + ("_1" if index % 2 else "")
        _save_pair(LUNG_DIR, 0, index, seed, size, root / LUNG_IMAGE_DIR / f"{name}.png",
                   root / LUNG_MASK_DIR / f"{name}{LUNG_MASK_SUFFIX}", grayscale=True)


def write_fss(root: Path, seed: int, size: Size) -> None:
    for class_index, name in enumerate(FSS_CLASSES):
        for n in range(1, FSS_IMAGES + 1):
            _save_pair(FSS_DIR, class_index, n, seed, size, root / name / f"{n}.jpg",
                       root / name / f"{n}.png")
    (root / "splits").mkdir(exist_ok=True)
    start = 0
    for split, count in FSS_SPLITS.items():  # consecutive runs of FSS_CLASSES
        (root / "splits" / f"{split}.txt").write_text(
            "".join(name + "\n" for name in FSS_CLASSES[start:start + count]))
        start += count


def generate_cdfss(root: PathLike, seed: int = 0, size: Size = (96, 96),
                   images_per_class: int = DEFAULT_IMAGES_PER_CLASS,
                   lung_images: int = DEFAULT_LUNG_IMAGES) -> Path:
    """Write the four datasets under ``root`` (see the module docstring); returns ``root``."""
    if images_per_class < 2 or lung_images < 2:
        raise ValueError(f"images_per_class={images_per_class} and lung_images={lung_images} "
                         f"must be at least 2 (a support and a query)")
    root = Path(root)
    size = (int(size[0]), int(size[1]))
    write_deepglobe(root / DEEPGLOBE_DIR, seed, size, images_per_class)
    write_isic(root / ISIC_DIR, seed, size, images_per_class)
    write_lung(root / LUNG_DIR, seed, size, lung_images)
    write_fss(root / FSS_DIR, seed, size)
    return root
