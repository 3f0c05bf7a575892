"""A generated few-shot segmentation dataset in the real PASCAL VOC (and COCO) on-disk layout.

Class = shape family x fill texture. 5 shapes (ellipse, rectangle, triangle, cross, ring) and 4
two-colour textures (horizontal stripes, vertical stripes, checkerboard, dots) make 20 classes,
numbered so that the PASCAL-5i folds are 4 Latin-square diagonals: class k = 5i + s + 1 (fold i,
shape s = 0..4) has texture (s + i) mod 4. A fold's 5 test classes hold every shape once, in new
shape/texture pairings: only the combination is new to its training classes.

Colours are random per object and drawn like the background clutter (solid or striped blobs and
thick lines on a noisy gradient), so only shape and texture give a class away. Each image holds
2-4 objects of distinct classes, 20-45% of the short side, overlapping each other by at most
``MAX_OVERLAP`` of either area; a VOC-style void band (255) of ~0.6% of the short side runs along
every object boundary. Texture periods (10-14% of the short side) survive resizing to ~128 px.

Layout written under ``root``::

    VOC2012/JPEGImages/{id}.jpg, SegmentationClassAug/{id}.png (class ids, palette),
    VOC2012/SegmentationObjectAug/{id}.png (instance ids 1..n per image, 255 void),
    VOC2012/ImageSets/Segmentation/{trainaug,val}.txt and {split}/class{k}.txt
    coco/annotations/instances_{train,val}{year}.json, coco/{train,val}{year}/{file}.jpg
      (with ``coco=True``: the same images and visible instance masks as compressed RLE;
       image i has COCO image id i + 1 and file name f"{i + 1:012d}.jpg"; class k has
       category id k + (k - 1) // 5, i.e. ascending with gaps as in COCO)

``generate_folder`` writes the same images in the folder layout of ``panet.data.folder``
(``images/``, ``masks/``, ``classes.txt``, ``splits/{train,test}.txt`` = trainaug / val) and
``examples/`` to try ``scripts/predict.py`` on (``write_predict_example``).

Image i is drawn from its own generator seeded with (seed, i), so files are byte-identical across
runs and a larger ``n_images`` only adds images.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from panet.base.constants import IGNORE_INDEX
from panet.data import folder
from panet.data.label_png import load_label_png, save_label_png
from panet.data.voc import CLASS_DIR, IMAGE_DIR, INSTANCE_DIR, LIST_DIR
from panet.data.voc_prepare import write_class_lists
from panet.data.weak import bounding_box
from panet.base.files import PathLike


SHAPES = ("ellipse", "rectangle", "triangle", "cross", "ring")
TEXTURES = ("hstripes", "vstripes", "checker", "dots")
N_CLASSES = 20
CLASS_SHAPE_TEXTURE = {
    5 * fold + shape + 1: (shape, (shape + fold) % len(TEXTURES))
    for fold in range(4) for shape in range(len(SHAPES))
}
CLASS_NAMES = {k: f"{SHAPES[s]}-{TEXTURES[t]}" for k, (s, t) in CLASS_SHAPE_TEXTURE.items()}

DEFAULT_N_IMAGES = 400  # make demo, make_synthetic.py and reproduce.py --synthetic
VOC_DIR = "VOC2012"
COCO_DIR = "coco"
COCO_SPLITS = {"trainaug": "train", "val": "val"}  # VOC split -> COCO split name (before year)
OBJECTS_PER_IMAGE = (2, 4)  # inclusive
OBJECT_SIDE = (0.20, 0.45)  # object extent, fraction of the short side
TEXTURE_PERIOD = (0.10, 0.14)  # fraction of the short side
MAX_OVERLAP = 0.15  # of either object's area
PLACEMENT_TRIES = 30
CLUTTER_ITEMS = (4, 8)  # inclusive
MIN_COLOUR_CONTRAST = 110.0  # Euclidean RGB distance between a texture's two colours
VOID_BAND = 0.006  # void band half-width, fraction of the short side
NOISE_STD = 6.0
JPEG_QUALITY = 90
FOLDER_SPLITS = {"trainaug": "train", "val": "test"}  # VOC split -> split name of the folder layout
EXAMPLE_CLASS = 1  # class of the predict example: held out in fold 0
EXAMPLE_MIN_AREA = 0.02  # least share of the image the example's class covers in its images


def coco_category_id(class_id: int) -> int:
    """COCO category id of class k in the COCO-json variant (ascending, with gaps)."""
    return class_id + (class_id - 1) // 5


def _colour_pair(rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    while True:
        first, second = rng.uniform(0, 255, size=(2, 3)).astype(np.float32)
        if np.linalg.norm(first - second) >= MIN_COLOUR_CONTRAST:
            return first, second


def _object_mask(shape: int, size: Tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """H x W bool mask of one object of ``SHAPES[shape]``, its place, size and turn random."""
    height, width = size
    half = rng.uniform(*OBJECT_SIDE) * min(height, width) / 2
    centre = np.array([rng.uniform(half, width - half), rng.uniform(half, height - half)])
    aspect = rng.uniform(0.6, 1.0)
    angle = rng.uniform(0, np.pi)
    if shape in (0, 4):  # ellipse, ring
        t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        outline = np.stack([np.cos(t), aspect * np.sin(t)], axis=1) * half
    elif shape == 1:  # rectangle
        outline = np.array([[-1, -aspect], [1, -aspect], [1, aspect], [-1, aspect]]) * half
    elif shape == 2:  # triangle
        t = np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        outline = np.stack([np.cos(t), np.sin(t)], axis=1) * half * 1.1
    else:  # cross: a plus of two bars of width 0.36
        a, b = 1.0, 0.36
        outline = np.array([[-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b], [b, a],
                            [-b, a], [-b, b], [-a, b], [-a, -b], [-b, -b]]) * half
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    draw.polygon([tuple(p) for p in outline @ rotation.T + centre], fill=1)
    if shape == 4:  # the ring's hole
        draw.polygon([tuple(p) for p in outline * 0.55 @ rotation.T + centre], fill=0)
    return np.asarray(canvas, dtype=bool)


def texture_pattern(texture: str, window: Tuple[slice, slice], period: float,
             rng: np.random.Generator) -> np.ndarray:
    """Bool pattern (True = first colour) of a texture over ``window`` of the image, in image
    coordinates (so stripes stay horizontal/vertical however the object is rotated)."""
    y, x = np.mgrid[window].astype(np.float32)
    y += rng.uniform(0, period)
    x += rng.uniform(0, period)
    half = period / 2
    if texture == "hstripes":
        return (y // half) % 2 == 0
    if texture == "vstripes":
        return (x // half) % 2 == 0
    if texture == "checker":
        return ((y // half) + (x // half)) % 2 == 0
    if texture == "dots":
        dy, dx = (y % period) - half, (x % period) - half
        return dy ** 2 + dx ** 2 < (0.32 * period) ** 2
    if texture == "diagonal":  # clutter only: no class uses it
        return ((x + y) // half) % 2 == 0
    raise ValueError(f"unknown texture {texture!r}")


def _paint(image: np.ndarray, mask: np.ndarray, texture: str, rng: np.random.Generator) -> None:
    """Fill ``mask`` of the H x W x 3 float image with a two-colour ``texture`` ("solid": one)."""
    if not mask.any():
        return
    first, second = _colour_pair(rng)
    window = bounding_box(mask)
    inside = mask[window]
    if texture == "solid":
        image[window][inside] = first
        return
    period = rng.uniform(*TEXTURE_PERIOD) * min(mask.shape)
    pattern = texture_pattern(texture, window, period, rng)[inside]
    image[window][inside] = np.where(pattern[:, None], first, second)


def _background(size: Tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """H x W x 3 float image: a colour gradient overlaid with solid/striped blobs and lines."""
    height, width = size
    start, end = rng.uniform(0, 255, size=(2, 3)).astype(np.float32)
    ramp = np.linspace(0, 1, width if rng.random() < 0.5 else height, dtype=np.float32)
    ramp = ramp[None, :, None] if ramp.size == width else ramp[:, None, None]
    image = np.broadcast_to(start + (end - start) * ramp, (height, width, 3)).copy()
    short = min(height, width)
    for _ in range(rng.integers(CLUTTER_ITEMS[0], CLUTTER_ITEMS[1] + 1)):
        canvas = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(canvas)
        centre = rng.uniform(0, 1, size=2) * (width, height)
        if rng.random() < 0.4:  # a thick line
            end_point = centre + rng.normal(0, 0.3 * short, size=2)
            draw.line([tuple(centre), tuple(end_point)], fill=1,
                      width=int(rng.uniform(0.01, 0.04) * short) + 1)
        else:  # an irregular blob
            n = int(rng.integers(5, 12))
            angles = np.sort(rng.uniform(0, 2 * np.pi, size=n))
            radii = rng.uniform(0.04, 0.18, size=n) * short
            points = centre + np.stack([np.cos(angles), np.sin(angles)], 1) * radii[:, None]
            draw.polygon([tuple(p) for p in points], fill=1)
        texture = "diagonal" if rng.random() < 0.3 else "solid"
        _paint(image, np.asarray(canvas, dtype=bool), texture, rng)
    return image


def render_image(index: int, seed: int = 0, size: Tuple[int, int] = (375, 500)):
    """Image ``index`` of the dataset: (H x W x 3 uint8 RGB, H x W uint8 class map with void,
    H x W uint8 instance map with void, list of (class id, visible H x W bool mask))."""
    rng = np.random.default_rng([seed, index])
    image = _background(size, rng)
    n_objects = int(rng.integers(OBJECTS_PER_IMAGE[0], OBJECTS_PER_IMAGE[1] + 1))
    class_ids = rng.choice(np.arange(1, N_CLASSES + 1), size=n_objects, replace=False)
    instances = np.zeros(size, dtype=np.int32)
    placed: List[int] = []
    for class_id in class_ids:
        shape, texture = CLASS_SHAPE_TEXTURE[int(class_id)]
        for _ in range(PLACEMENT_TRIES):
            mask = _object_mask(shape, size, rng)
            if _overlap_ok(mask, instances, len(placed)):
                break
        else:
            continue
        _paint(image, mask, TEXTURES[texture], rng)
        placed.append(int(class_id))
        instances[mask] = len(placed)
    image += NOISE_STD * rng.standard_normal(size=image.shape, dtype=np.float32)
    pixels = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    objects = [(class_id, instances == k) for k, class_id in enumerate(placed, start=1)]
    class_lookup = np.array([0] + placed, dtype=np.uint8)
    void = _boundary_band(instances, max(1, round(VOID_BAND * min(size))))
    class_map = np.where(void, IGNORE_INDEX, class_lookup[instances]).astype(np.uint8)
    instance_map = np.where(void, IGNORE_INDEX, instances).astype(np.uint8)
    return pixels, class_map, instance_map, objects


def _overlap_ok(mask: np.ndarray, instances: np.ndarray, n_placed: int) -> bool:
    """True if ``mask`` covers at most MAX_OVERLAP of itself and of each visible object."""
    covered = instances[mask]
    if covered.any() and (covered > 0).mean() > MAX_OVERLAP:
        return False
    areas = np.bincount(instances.ravel(), minlength=n_placed + 1)
    hidden = np.bincount(covered, minlength=n_placed + 1)
    return bool(np.all(hidden[1:] <= MAX_OVERLAP * areas[1:]))


def _boundary_band(instances: np.ndarray, half_width: int) -> np.ndarray:
    """Pixels within ``half_width`` of a change of instance id (both sides of every edge)."""
    window = 2 * half_width + 1
    return (ndimage.maximum_filter(instances, size=window)
            != ndimage.minimum_filter(instances, size=window))


def _rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as rle_ops  # only the COCO variant needs pycocotools

    encoded = rle_ops.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(encoded["size"]), "counts": encoded["counts"].decode("ascii")}


def generate(root: PathLike, n_images: int = DEFAULT_N_IMAGES, size: Tuple[int, int] = (375, 500),
             seed: int = 0, val_fraction: float = 0.2, coco: bool = False,
             coco_year: int = 2014) -> Path:
    """Write the dataset under ``root`` (module docstring), overwriting; returns ``root``. The
    last ``round(n_images * val_fraction)`` images form ``val`` (COCO: ``val{year}``), the
    others ``trainaug`` (``train{year}``)."""
    root = Path(root)
    voc = root / VOC_DIR
    for name in (IMAGE_DIR, CLASS_DIR, INSTANCE_DIR, str(LIST_DIR)):
        (voc / name).mkdir(parents=True, exist_ok=True)
    n_val = int(round(n_images * val_fraction))
    splits = {"trainaug": range(n_images - n_val), "val": range(n_images - n_val, n_images)}
    coco_records = {f"{name}{coco_year}": {"images": [], "annotations": []}
                    for name in COCO_SPLITS.values()}
    for split, indices in splits.items():
        ids = [f"synth_{i:05d}" for i in indices]
        (voc / LIST_DIR / f"{split}.txt").write_text("".join(i + "\n" for i in ids))
        coco_split = f"{COCO_SPLITS[split]}{coco_year}"
        for index, image_id in zip(indices, ids):
            pixels, class_map, instance_map, objects = render_image(index, seed, size)
            image_path = voc / IMAGE_DIR / f"{image_id}.jpg"
            Image.fromarray(pixels).save(image_path, quality=JPEG_QUALITY)
            save_label_png(voc / CLASS_DIR / f"{image_id}.png", class_map)
            save_label_png(voc / INSTANCE_DIR / f"{image_id}.png", instance_map)
            if coco:
                _add_coco_image(root, coco_split, index, image_path, objects,
                                coco_records[coco_split])
    write_class_lists(voc, n_classes=N_CLASSES)
    if coco:
        _write_coco_annotations(root, coco_records)
    return root


def generate_folder(root: PathLike, n_images: int = DEFAULT_N_IMAGES,
                    size: Tuple[int, int] = (375, 500), seed: int = 0,
                    val_fraction: float = 0.2, n_example_queries: int = 3) -> Path:
    """Write the dataset under ``root`` in the folder layout (see the module docstring): the
    images and class masks of ``generate``, ``classes.txt``, the splits and ``examples/``.
    Per-class lists are left to ``scripts/prepare_folder.py``. Returns ``root``."""
    root = Path(root)
    with tempfile.TemporaryDirectory() as scratch:
        voc = generate(scratch, n_images, size, seed, val_fraction) / VOC_DIR
        for source, target in ((IMAGE_DIR, folder.IMAGE_DIR), (CLASS_DIR, folder.MASK_DIR)):
            shutil.copytree(voc / source, root / target, dirs_exist_ok=True)
        (root / folder.SPLIT_DIR).mkdir(exist_ok=True)
        for voc_split, split in FOLDER_SPLITS.items():
            shutil.copyfile(voc / LIST_DIR / f"{voc_split}.txt",
                            root / folder.SPLIT_DIR / f"{split}.txt")
    (root / folder.CLASSES_FILE).write_text(
        "".join(CLASS_NAMES[k] + "\n" for k in range(1, N_CLASSES + 1)))
    ids = sorted(path.stem for path in (root / folder.MASK_DIR).glob("*.png"))
    write_predict_example(root / folder.IMAGE_DIR, root / folder.MASK_DIR, ids, EXAMPLE_CLASS,
                          root / "examples", n_example_queries)
    return root


def write_predict_example(image_dir: Path, mask_dir: Path, ids: Sequence[str], class_id: int,
                          out: Path, n_queries: int = 1) -> Tuple[Path, Path, List[Path]]:
    """Inputs for ``scripts/predict.py``: of the ``ids`` whose class-index mask covers at least
    ``EXAMPLE_MIN_AREA`` with ``class_id``, the first becomes ``out/support.jpg`` with
    ``out/support_mask.png`` (0 / 255), the next ``n_queries`` ``out/queries/query_<q>.jpg``.
    Returns (support image, support mask, query images)."""
    chosen = []
    for image_id in ids:
        labels = load_label_png(mask_dir / f"{image_id}.png")
        if (labels == class_id).mean() >= EXAMPLE_MIN_AREA:
            chosen.append((image_id, labels))
        if len(chosen) == 1 + n_queries:
            break
    else:
        raise ValueError(f"only {len(chosen)} of the {len(ids)} images show class {class_id} "
                         f"on {EXAMPLE_MIN_AREA:.0%} of their pixels; {1 + n_queries} are needed")
    (out / "queries").mkdir(parents=True, exist_ok=True)
    (support_id, labels), queries = chosen[0], chosen[1:]
    support, mask = out / "support.jpg", out / "support_mask.png"
    shutil.copyfile(image_dir / f"{support_id}.jpg", support)
    Image.fromarray(((labels == class_id) * 255).astype(np.uint8)).save(mask)  # mode L
    query_paths = [out / "queries" / f"query_{q}.jpg" for q in range(1, len(queries) + 1)]
    for (image_id, _), path in zip(queries, query_paths):
        shutil.copyfile(image_dir / f"{image_id}.jpg", path)
    return support, mask, query_paths


def _add_coco_image(root: Path, coco_split: str, index: int, image_path: Path,
                    objects: List[Tuple[int, np.ndarray]], records: dict) -> None:
    image_dir = root / COCO_DIR / coco_split
    image_dir.mkdir(parents=True, exist_ok=True)
    file_name = f"{index + 1:012d}.jpg"
    shutil.copyfile(image_path, image_dir / file_name)
    height, width = objects[0][1].shape
    records["images"].append({"id": index + 1, "file_name": file_name, "height": height,
                              "width": width})
    for class_id, mask in objects:
        rows, cols = bounding_box(mask)
        records["annotations"].append({
            "id": len(records["annotations"]) + 1,
            "image_id": index + 1, "category_id": coco_category_id(class_id),
            "segmentation": _rle(mask), "area": int(mask.sum()), "iscrowd": 0,
            "bbox": [int(cols.start), int(rows.start), int(cols.stop - cols.start),
                     int(rows.stop - rows.start)]})


def _write_coco_annotations(root: Path, coco_records: Dict[str, dict]) -> None:
    categories = [{"id": coco_category_id(k), "name": CLASS_NAMES[k],
                   "supercategory": SHAPES[CLASS_SHAPE_TEXTURE[k][0]]}
                  for k in range(1, N_CLASSES + 1)]
    annotation_dir = root / COCO_DIR / "annotations"
    annotation_dir.mkdir(parents=True, exist_ok=True)
    for coco_split, records in coco_records.items():
        content = {"info": {"description": "panet synthetic shapes x textures"},
                   "images": records["images"], "annotations": records["annotations"],
                   "categories": categories}
        path = annotation_dir / f"instances_{coco_split}.json"
        path.write_text(json.dumps(content, separators=(",", ":")))
