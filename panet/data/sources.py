"""Per-image access to one split of a dataset, in global class ids.

A *source* knows which images contain which class and how to load an image and its label
maps. Episode sampling, transforms and weak supports are built on top of this interface, so a
new dataset only needs a new source.

Label maps are H x W ``uint8`` arrays at the image's original resolution, in *global* class ids:
0 background, 1..n_classes the dataset's classes, 255 (``IGNORE_INDEX``) ignored.
"""

from __future__ import annotations

import abc
import hashlib
import json
from pathlib import Path
from typing import Callable, Collection, Dict, List, Optional, Sequence, Tuple, TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError

from panet.base.constants import IGNORE_INDEX
from panet.data.label_png import load_class_mask
from panet.data.transforms import to_rgb, too_large
from panet.data.weak import build_scribble_map

T = TypeVar("T")


class Source(abc.ABC):
    """One split of a segmentation dataset (e.g. PASCAL ``trainaug``, COCO ``train2014``)."""

    #: global class ids this source can sample, ascending (PASCAL 1..20, COCO 1..80)
    class_ids: List[int]

    @abc.abstractmethod
    def class_images(self) -> Dict[int, List[str]]:
        """Image ids per global class id: the images whose label map contains that class.

        Lists are sorted so that sampling from them is reproducible.
        """

    @abc.abstractmethod
    def image(self, image_id: str) -> Image.Image:
        """The RGB image (grayscale and palette images are converted to RGB)."""

    @abc.abstractmethod
    def label_map(self, image_id: str, class_ids: Sequence[int]) -> np.ndarray:
        """H x W uint8 label map in global ids.

        Pixels of every class in ``class_ids`` carry that class's id; other pixels are 0, another
        class's id or 255. (PASCAL returns its full map; COCO draws only the classes asked for.)
        """

    @abc.abstractmethod
    def instance_map(self, image_id: str, class_id: int) -> np.ndarray:
        """H x W int32 map of the instances of ``class_id``: 0 elsewhere, 1..n one per instance.

        Needed only for bounding-box supports; sources without instances raise a clear error.
        """

    def class_name(self, class_id: int) -> str:
        """Readable name of a class for messages (``class_names`` when the source has it)."""
        names = getattr(self, "class_names", None) or {}
        return f"{class_id} ({names[class_id]})" if class_id in names else str(class_id)

    def location(self, image_id: str) -> str:
        """Where an image's files live, for error messages."""
        return f"image {image_id!r}"

    def identity(self) -> str:
        """A fingerprint of what episodes draw from: the per-class image lists and class names
        (SHA-256). A run resumed on a regenerated or re-listed dataset can tell."""
        names = getattr(self, "class_names", None) or {}
        listed = {"lists": {str(k): list(v) for k, v in sorted(self.class_images().items())},
                  "names": {str(k): str(v) for k, v in sorted(names.items())}}
        return hashlib.sha256(json.dumps(listed, sort_keys=True).encode()).hexdigest()

    def image_path(self, image_id: str) -> Optional[Path]:
        """The file holding the image's pixels (None for a source without files)."""
        return None

    def image_identity(self, image_id: str) -> str:
        """What identifies the image's pixels: its file's path, size and modification time (an
        image rewritten in place gets another identity), else its location. Feature caches are
        keyed by it."""
        path = self.image_path(image_id)
        if path is None:
            return self.location(image_id)
        try:
            stat = path.stat()
        except OSError:
            return str(path)  # reading the image reports it
        return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"

    def load(self, image_id: str, class_ids: Sequence[int]) -> Tuple[Image.Image, np.ndarray]:
        """The RGB image and its H x W label map (see ``label_map``), checked to match in size."""
        image = self.image(image_id)
        labels = self.label_map(image_id, class_ids)
        self.check_sizes(image_id, image, labels.shape)
        return image, labels

    def check_sizes(self, image_id: str, image: Image.Image, label_shape: Tuple[int, ...]) -> None:
        """Raise a ValueError naming the files if the image and its label map differ in size."""
        if tuple(label_shape) != (image.height, image.width):
            raise ValueError(
                f"{self.location(image_id)}: the image is {image.height} x {image.width} (H x W) "
                f"but its label map is {label_shape[0]} x {label_shape[1]}; the mask does not "
                f"belong to this image: replace it with the official annotation or drop the id "
                f"from the split list")

    def scribble_map(self, image_id: str) -> np.ndarray:
        """H x W uint8 scribbles of an image in the released ``ScribbleAugAuto`` format: 0
        background scribble, 255 unlabelled, k a foreground scribble of instance k.

        Default (no released scribbles): generated by ``generate_scribble_map`` and kept per image
        in memory (compactly: only the scribble pixels), so an image is generated once per source.
        """
        cache = self.__dict__.setdefault("_scribble_cache", {})
        if image_id not in cache:
            scribbles = self.generate_scribble_map(image_id)
            where = np.flatnonzero(scribbles != IGNORE_INDEX).astype(np.int32)
            cache[image_id] = (scribbles.shape, where, scribbles.ravel()[where])
        shape, where, values = cache[image_id]
        scribbles = np.full(shape, IGNORE_INDEX, dtype=np.uint8)
        scribbles.ravel()[where] = values
        return scribbles

    def generate_scribble_map(self, image_id: str) -> np.ndarray:
        """The image's scribbles drawn by the DAVIS robot (``panet.data.weak.build_scribble_map``)
        on its label map of all the source's classes, each connected part of a class an
        instance (a source with instance files overrides this)."""
        return build_scribble_map(self.label_map(image_id, self.class_ids))


def read_id_list(path: Path) -> List[str]:
    """Image ids listed one per line (blank lines and surrounding spaces ignored)."""
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def read_image(path: Path, missing: str, corrupt: str) -> Image.Image:
    """The RGB image at `path`, upright (`panet.data.transforms.to_rgb`). A missing file raises
    FileNotFoundError, an undecodable one ValueError, naming the file and saying `missing` /
    `corrupt` (where the file comes from, how to check or replace it)."""
    return decode(path, lambda image: to_rgb(image, str(path)), missing, corrupt)


def decode(path: Path, read: Callable[[Image.Image], T], missing: str, corrupt: str,
           kind: str = "image") -> T:
    """`read` applied to the picture file at `path` (an image, or a mask: `kind`), with
    `read_image`'s one-line errors."""
    try:
        with Image.open(path) as image:
            return read(image)
    except FileNotFoundError:
        raise FileNotFoundError(f"{kind} {path} does not exist; {missing}") from None
    except Image.DecompressionBombError as error:
        raise ValueError(too_large(path, error)) from None
    except (OSError, UnidentifiedImageError, SyntaxError) as error:
        raise ValueError(f"cannot decode {kind} {path} ({error}); the file is corrupt or "
                         f"truncated: {corrupt}") from error


def require_files(ids: Sequence[str], present: Collection[str], what: str, fix: str) -> None:
    """Raise FileNotFoundError when ids lack their file: `what` says which ids and file
    ("ids of <list> have no <folder>/<id>.png under <root>"), `fix` what to do."""
    missing = [image_id for image_id in ids if image_id not in present]
    if missing:
        raise FileNotFoundError(f"{len(missing)} {what}, e.g. {missing[:3]}; {fix}")


class ListedSource(Source):
    """A split of image files and class-index mask PNGs, sampled from per-class lists that a
    script wrote from the masks (PASCAL VOC: scripts/prepare_voc.py; folder datasets:
    scripts/prepare_folder.py). A subclass sets ``root``, ``split``, ``ids``, ``class_ids``,
    ``class_names``, ``mask_origin`` (where a right mask comes from) and ``image_fix`` (what to
    do about a missing, then an undecodable image), names the files (``image_path``,
    ``mask_path``) and reads the lists at construction (``read_lists``). Construction checks the
    layout, that every id of the split has its image and mask, and that the per-class lists
    exist and agree with the split; images and masks are read on access."""

    root: Path
    split: str
    ids: List[str]
    mask_origin: str
    image_fix: Tuple[str, str]

    @abc.abstractmethod
    def mask_path(self, image_id: str) -> Path:
        """The image's class-index mask PNG."""

    def read_lists(self, lists_dir: Path, where: str, prepare_hint: str) -> None:
        """Read ``lists_dir/class{k}.txt`` of every class: each must exist and list only ids of
        the split (``where`` names it; ``prepare_hint`` says how to write the lists again)."""
        known = set(self.ids)
        self._class_images = {}
        for class_id in self.class_ids:
            path = lists_dir / f"class{class_id}.txt"
            if not path.is_file():
                raise FileNotFoundError(f"per-class list {path} does not exist; {prepare_hint}")
            ids = read_id_list(path)
            stray = [i for i in ids if i not in known]
            if stray:
                raise ValueError(f"{path} lists ids that are not in {where}, e.g. {stray[:3]}; "
                                 f"the lists are stale: {prepare_hint}")
            self._class_images[class_id] = sorted(ids)

    def class_images(self) -> Dict[int, List[str]]:
        return {class_id: list(ids) for class_id, ids in self._class_images.items()}

    def location(self, image_id: str) -> str:
        return f"{self.image_path(image_id)} / {self.mask_path(image_id)}"

    def image(self, image_id: str) -> Image.Image:
        return read_image(self.image_path(image_id), *self.image_fix)

    def label_map(self, image_id: str, class_ids: Sequence[int] = ()) -> np.ndarray:
        """The full H x W class map (every class, whatever ``class_ids`` asks for), its values
        checked to be classes of the source."""
        return load_class_mask(self.mask_path(image_id), len(self.class_ids), self.mask_origin)
