"""COCO-20i source (PROTOCOL §7): one split of MS COCO instances, read through pycocotools.

Layout (the official zips unpacked into one ``root``)::

    root/annotations/instances_{split}{year}.json
    root/{split}{year}/<file_name>            e.g. root/train2014/COCO_train2014_000000000009.jpg

Class ids: the json's categories sorted by category id, numbered 1..n. A class's label map is the
union of its instance masks, crowd regions included. Shapes: H x W the json's height x width.

Cache: the annotations are turned once into compressed RLEs (per image and class the merged mask
and the instance masks in annotation order). It is JSON, never a pickle (reading one can run
code): a header line (format version, size and mtime of the annotation file), then the payload
(RLE counts as latin-1 strings). A stale, unreadable or malformed cache is rebuilt, written
atomically to ``cache_dir`` (data.cache_dir), else to ``user_cache_dir()/coco-<hash of root>/``
(``~/.cache/panet/...``), never into the root (it may be shared and read-only). A cache earlier
versions wrote into ``root/.panet_cache/`` is still read.

Polygons with fewer than 3 points are dropped (pycocotools would read a 2-point one as a box). An
image whose merged mask of a class is empty is not listed for that class.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from PIL import Image
from pycocotools import mask as rle_ops

from panet.base.files import PathLike, atomic_write, user_cache_dir
from panet.data.sources import Source
from panet.data.transforms import displayed_size, to_rgb, too_large

SPLITS = ("train", "val")
ANNOTATION_ZIP = "http://images.cocodataset.org/annotations/annotations_trainval{year}.zip"
IMAGE_ZIP = "http://images.cocodataset.org/zips/{split}{year}.zip"
CACHE_FORMAT = 2  # bump whenever the payload layout or the conversion rules change
OLD_CACHE_DIR = ".panet_cache"  # where earlier versions cached, inside the root: read only
MIN_POLYGON_COORDS = 6  # x, y of 3 points: anything shorter has no area
MAX_CLASSES = 254  # label maps are uint8 and 255 is IGNORE_INDEX


class CocoImage(NamedTuple):
    """One cached image: per class id with a non-empty union, the RLE counts (bytes) of the
    union (``masks``) and of each instance in annotation order (``instances``)."""

    file_name: str
    height: int
    width: int
    masks: Dict[int, bytes]
    instances: Dict[int, Tuple[bytes, ...]]


class CocoIndex(NamedTuple):
    """Cache payload: ``categories`` as (COCO category id, name) in class-id order."""

    categories: List[Tuple[int, str]]
    images: Dict[str, CocoImage]


def _decode(record: CocoImage, counts: Iterable[bytes]) -> np.ndarray:
    """H x W x n uint8 0/1 masks of an image from n RLE counts."""
    size = [record.height, record.width]
    return rle_ops.decode([{"size": size, "counts": c} for c in counts])


def annotation_file(root: PathLike, split: str, year: int) -> Path:
    return Path(root) / "annotations" / f"instances_{split}{year}.json"


def image_dir(root: PathLike, split: str, year: int) -> Path:
    return Path(root) / f"{split}{year}"


def layout_problems(root: PathLike, split: str, year: int) -> List[str]:
    """What is missing from ``root`` for one split, with where each official file comes from."""
    problems, unzip = [], f"and unzip it into {Path(root)}"
    if not annotation_file(root, split, year).is_file():
        problems.append(f"missing {annotation_file(root, split, year)}: download "
                        f"{ANNOTATION_ZIP.format(year=year)} {unzip} (it holds "
                        f"annotations/instances_{split}{year}.json)")
    if not image_dir(root, split, year).is_dir():
        problems.append(f"missing image folder {image_dir(root, split, year)}: download "
                        f"{IMAGE_ZIP.format(split=split, year=year)} {unzip}")
    return problems


def _read_json(path: Path, year: int) -> dict:
    try:
        with open(path) as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid json ({err}); re-download "
                         f"{ANNOTATION_ZIP.format(year=year)} and unzip it again") from err
    missing = [key for key in ("images", "annotations", "categories") if key not in data]
    if missing:
        raise ValueError(f"{path} lacks the keys {missing} of a COCO instances file; expected "
                         f"the official instances_*.json from {ANNOTATION_ZIP.format(year=year)}")
    return data


def _instance_rle(segmentation, height: int, width: int, where: str) -> dict:
    """Compressed RLE (``size``, ``counts``) of one annotation's polygons or (un)compressed RLE."""
    if isinstance(segmentation, list):
        polygons = [p for p in segmentation if len(p) >= MIN_POLYGON_COORDS]
        if not polygons:
            return rle_ops.encode(np.zeros((height, width, 1), np.uint8, order="F"))[0]
        return rle_ops.merge(rle_ops.frPyObjects(polygons, height, width))
    if list(segmentation["size"]) != [height, width]:
        raise ValueError(f"{where}: RLE size {segmentation['size']} differs from the image's "
                         f"height x width [{height}, {width}]; the annotation file is damaged, "
                         "re-download it")
    if isinstance(segmentation["counts"], list):
        return rle_ops.frPyObjects(segmentation, height, width)
    counts = segmentation["counts"]
    counts = counts.encode() if isinstance(counts, str) else counts
    return {"size": [height, width], "counts": counts}


def build_index(path: Path, year: int) -> CocoIndex:
    """Read an instances json and convert every annotation into cached RLEs (slow, done once);
    a ValueError names the first bad annotation."""
    data = _read_json(path, year)
    categories = sorted((c["id"], c["name"]) for c in data["categories"])
    if not 0 < len(categories) <= MAX_CLASSES:
        raise ValueError(f"{path} has {len(categories)} categories; expected 1..{MAX_CLASSES}")
    class_of_category = {cat_id: k for k, (cat_id, _) in enumerate(categories, start=1)}
    image_meta = {im["id"]: im for im in data["images"]}
    if len(image_meta) != len(data["images"]):
        raise ValueError(f"{path} lists some image id twice; re-download the annotation file")
    rles_of: Dict[Tuple[int, int], List[dict]] = {}  # per (image id, class id), annotation order
    for ann in data["annotations"]:
        where = f"{path}, annotation id {ann.get('id')}"
        try:
            meta = image_meta.get(ann["image_id"])
            if meta is None:
                raise ValueError(f"{where}: refers to image id {ann['image_id']}, absent from "
                                 "'images'")
            if ann["category_id"] not in class_of_category:
                raise ValueError(f"{where}: unknown category id {ann['category_id']}")
            rle = _instance_rle(ann["segmentation"], meta["height"], meta["width"], where)
        except KeyError as err:
            raise ValueError(f"{where}: field {err} missing; re-download the annotation "
                             "file") from err
        key = (ann["image_id"], class_of_category[ann["category_id"]])
        rles_of.setdefault(key, []).append(rle)
    masks: Dict[int, Dict[int, bytes]] = {i: {} for i in image_meta}
    instances: Dict[int, Dict[int, Tuple[bytes, ...]]] = {i: {} for i in image_meta}
    n_empty = 0
    for (image_id, class_id), rles in rles_of.items():
        union = rles[0] if len(rles) == 1 else rle_ops.merge(rles)
        if rle_ops.area(union) == 0:
            n_empty += 1
            continue
        masks[image_id][class_id] = union["counts"]
        instances[image_id][class_id] = tuple(rle["counts"] for rle in rles)
    if n_empty:
        warnings.warn(f"{path}: {n_empty} (image, class) pairs have only empty masks; those "
                      "images are not listed for those classes")
    return CocoIndex(categories, {
        str(image_id): CocoImage(meta["file_name"], meta["height"], meta["width"],
                                 masks[image_id], instances[image_id])
        for image_id, meta in image_meta.items()})


def _cache_key(path: Path) -> dict:
    stat = path.stat()
    return {"format": CACHE_FORMAT, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _payload(index: CocoIndex) -> dict:
    """The index as JSON values: class ids as strings, RLE counts (bytes) as latin-1 strings."""
    return {
        "categories": [[cat_id, name] for cat_id, name in index.categories],
        "images": {
            image_id: [record.file_name, record.height, record.width,
                       {str(k): c.decode("latin-1") for k, c in record.masks.items()},
                       {str(k): [c.decode("latin-1") for c in cs]
                        for k, cs in record.instances.items()}]
            for image_id, record in index.images.items()
        },
    }


def _index(payload: dict) -> CocoIndex:
    """`_payload` read back; raises (KeyError, TypeError, ValueError, ...) on a malformed one."""
    images = {}
    for image_id, (file_name, height, width, masks, instances) in payload["images"].items():
        images[image_id] = CocoImage(
            str(file_name), int(height), int(width),
            {int(k): c.encode("latin-1") for k, c in masks.items()},
            {int(k): tuple(c.encode("latin-1") for c in cs) for k, cs in instances.items()})
    categories = [(int(cat_id), str(name)) for cat_id, name in payload["categories"]]
    return CocoIndex(categories, images)


def _read_cache(cache_file: Path, key: dict) -> Optional[CocoIndex]:
    """The cached index if ``cache_file`` is readable and matches ``key``, else None."""
    try:
        with open(cache_file, encoding="utf-8") as f:
            if json.loads(f.readline()) == key:
                return _index(json.loads(f.readline()))
    except Exception:  # absent, truncated, malformed or foreign: rebuilt
        pass
    return None


def load_index(ann_file: Path, year: int, root: PathLike, cache_dir: Optional[PathLike]
               ) -> Tuple[CocoIndex, Path]:
    """The index of ``ann_file`` and its cache file: the first valid cache among ``cache_dir``,
    else the user's cache folder of ``root`` then the old ``root/.panet_cache`` (module
    docstring); else built and written atomically (readable by other users of a shared cache)
    to ``cache_dir`` or the user's folder (an OSError of one line when it cannot be)."""
    if cache_dir is None:
        root_hash = hashlib.sha1(str(Path(root).resolve()).encode()).hexdigest()[:12]
        write = user_cache_dir() / f"coco-{root_hash}"
        reads = [write, Path(root) / OLD_CACHE_DIR]
    else:
        write = Path(cache_dir)
        reads = [write]
    key, name = _cache_key(ann_file), f"{ann_file.stem}.index.json"
    for folder in reads:
        index = _read_cache(folder / name, key)
        if index is not None:
            return index, folder / name
    index = build_index(ann_file, year)
    try:
        with atomic_write(write / name, "w") as f:
            for part in (key, _payload(index)):
                json.dump(part, f, separators=(",", ":"))
                f.write("\n")
    except OSError as err:
        raise OSError(f"cannot write the COCO cache {write / name} ({err.strerror or err}); set "
                      "data.cache_dir (prepare_coco.py --cache-dir) to a writable folder") from None
    return index, write / name


class CocoSource(Source):
    """One split of COCO (``train`` or ``val``) of a given year, with classes 1..80; also
    ``class_names``, ``category_ids`` (class id -> COCO name, category id), ``image_ids``."""

    def __init__(self, root: PathLike, split: str, year: int = 2014,
                 cache_dir: Optional[PathLike] = None) -> None:
        if split not in SPLITS:
            raise ValueError(f"COCO split must be one of {SPLITS}, got {split!r}")
        problems = layout_problems(root, split, year)
        if problems:
            raise FileNotFoundError("COCO layout incomplete:\n  " + "\n  ".join(problems))
        self.root, self.split, self.year = Path(root), split, year
        self.annotation_file = annotation_file(root, split, year)
        self.image_dir = image_dir(root, split, year)
        index, self.cache_file = load_index(self.annotation_file, year, root, cache_dir)
        self._images = index.images
        self.class_ids = list(range(1, len(index.categories) + 1))
        self.category_ids = {k: cat_id for k, (cat_id, _) in zip(self.class_ids, index.categories)}
        self.class_names = {k: name for k, (_, name) in zip(self.class_ids, index.categories)}
        self.image_ids = sorted(self._images)
        self.fix = (f"re-download {IMAGE_ZIP.format(split=split, year=year)} and unzip it into "
                    f"{self.root}")
        self._check_images_present()

    def _check_images_present(self) -> None:
        present = set(os.listdir(self.image_dir))
        missing = [i for i in self.image_ids if self._images[i].file_name not in present]
        if missing:
            examples = ", ".join(self._images[i].file_name for i in missing[:5])
            raise FileNotFoundError(f"{len(missing)} of the {len(self.image_ids)} images listed "
                                    f"in {self.annotation_file} are missing from {self.image_dir} "
                                    f"(e.g. {examples}); {self.fix}")

    def _record(self, image_id: str) -> CocoImage:
        try:
            return self._images[image_id]
        except KeyError:
            raise KeyError(f"image id {image_id!r} is not in {self.annotation_file}") from None

    def _check_class(self, class_id: int) -> None:
        if class_id not in self.category_ids:
            raise ValueError(f"class id {class_id} outside 1..{len(self.class_ids)}")

    def location(self, image_id: str) -> str:
        return f"{self.image_path(image_id)} / {self.annotation_file} (image id {image_id})"

    def class_images(self) -> Dict[int, List[str]]:
        """Per class id, the sorted ids of the images holding a non-empty mask of that class."""
        lists: Dict[int, List[str]] = {k: [] for k in self.class_ids}
        for image_id in self.image_ids:
            for class_id in self._images[image_id].masks:
                lists[class_id].append(image_id)
        return lists

    def image_path(self, image_id: str) -> Path:
        return self.image_dir / self._record(image_id).file_name

    def image(self, image_id: str) -> Image.Image:
        """The RGB image; checks that its size is the annotation's width x height."""
        record, path = self._record(image_id), self.image_path(image_id)
        annotated = (record.width, record.height)
        try:
            with Image.open(path) as img:
                if img.size == annotated:  # annotated on the stored pixels, as COCO's files are
                    return to_rgb(img, str(path), upright_by_exif=False)
                if displayed_size(img) == annotated:  # annotated as displayed (EXIF-turned)
                    return to_rgb(img, str(path))
                raise ValueError(f"{path} is {img.width} x {img.height} (W x H) but "
                                 f"{self.annotation_file} says {record.width} x {record.height}; "
                                 "the image and annotation files come from different releases: "
                                 f"{self.fix}")
        except FileNotFoundError as err:
            raise FileNotFoundError(f"{path} (listed in {self.annotation_file}) is missing: "
                                    f"{self.fix}") from err
        except Image.DecompressionBombError as error:
            raise ValueError(too_large(path, error)) from None
        except OSError as err:  # PIL's UnidentifiedImageError and truncated-file errors
            raise ValueError(f"{path} is not a readable image ({err}): {self.fix}") from err

    def label_map(self, image_id: str, class_ids: Sequence[int]) -> np.ndarray:
        """H x W uint8: each requested class's id on its mask, else 0 (later classes win)."""
        record = self._record(image_id)
        label = np.zeros((record.height, record.width), np.uint8)
        for class_id in class_ids:
            self._check_class(class_id)
            counts = record.masks.get(class_id)
            if counts is not None:
                label[_decode(record, [counts])[:, :, 0] > 0] = class_id
        return label

    def instance_map(self, image_id: str, class_id: int) -> np.ndarray:
        """H x W int32: instance k = 1..n of the class (annotation order, crowds; later wins)."""
        self._check_class(class_id)
        record = self._record(image_id)
        instance = np.zeros((record.height, record.width), np.int32)
        counts = record.instances.get(class_id, ())
        if counts:
            masks = _decode(record, counts)
            for k in range(masks.shape[2]):
                instance[masks[:, :, k] > 0] = k + 1
        return instance
