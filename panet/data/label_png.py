"""Label maps as VOC-style palette PNGs: one palette index per pixel (class or instance id, 255
void), the palette only colouring them. Reading keeps the indices, never converting to RGB.
``decode`` is the one reader of picture files (images too) and of their one-line errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Callable, List, Optional, Sequence, TypeVar, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from panet.base.constants import IGNORE_INDEX
from panet.base.files import PathLike
from panet.data.transforms import too_large, upright

T = TypeVar("T")


def voc_palette() -> List[int]:
    """The 256-entry VOC colour map, flat [r0, g0, b0, r1, ...]: bit 3j of i goes to bit 7-j of
    red, bit 3j+1 to green, bit 3j+2 to blue."""
    index, rgb = np.arange(256)[:, None], np.zeros((256, 3), dtype=np.int64)
    for j in range(8):
        rgb |= (index >> (3 * j + np.arange(3)) & 1) << (7 - j)
    return rgb.ravel().tolist()


_PALETTE = voc_palette()


def save_label_png(path: Union[PathLike, BinaryIO], labels: np.ndarray,
                   palette: Optional[Sequence[int]] = None) -> None:
    """Write an H x W map of values 0..255 as a palette PNG, coloured by ``palette`` (flat
    [r0, g0, b0, r1, ...], by default the VOC colour map)."""
    if labels.ndim != 2 or labels.min(initial=0) < 0 or labels.max(initial=0) > 255:
        raise ValueError(f"{path}: expected an H x W map of values 0..255")
    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    image.putpalette(_PALETTE if palette is None else list(palette))
    image.save(path, format="PNG", optimize=False)  # `path` may be an open file


def decode(path: Path, read: Callable[[Image.Image], T], missing: str, corrupt: str,
           kind: str = "image") -> T:
    """`read` applied to the picture file at `path` (an image, a mask: `kind`): a missing file
    raises FileNotFoundError saying `missing`, an undecodable one ValueError saying `corrupt`
    (where the file comes from, how to replace it)."""
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


def load_label_png(path: PathLike, origin: str = "the original archive") -> np.ndarray:
    """H x W uint8 palette indices (or gray levels) of a label PNG, as displayed (EXIF-turned);
    errors name the file when it is missing, undecodable (get it from ``origin``) or not
    single-channel (an RGB-coloured mask would give wrong ids)."""
    def indices(image: Image.Image) -> np.ndarray:
        if image.mode not in ("P", "L"):
            raise ValueError(f"{path}: mode {image.mode}, but label PNGs must be palette (P) "
                             "or grayscale (L) images holding class ids; an RGB-coloured "
                             "mask must first be mapped back to ids")
        return np.array(upright(image), dtype=np.uint8)

    fix = f"get it again from {origin}"
    return decode(Path(path), indices, fix, fix, kind="label file")


def load_class_mask(path: PathLike, n_classes: int, origin: str) -> np.ndarray:
    """H x W uint8 class ids of a mask PNG (``load_label_png``), checked to be 0..n_classes or
    255 (else a ValueError names the values and ``origin``, where a right mask comes from)."""
    labels = load_label_png(path, origin)
    present = np.flatnonzero(np.bincount(labels.ravel(), minlength=256))
    bad = [int(v) for v in present if v > n_classes and v != IGNORE_INDEX]
    if bad:
        raise ValueError(f"{path} holds labels {bad} outside 0..{n_classes} and {IGNORE_INDEX}; "
                         f"a mask of class ids comes from {origin}")
    return labels


def classes_present(labels: np.ndarray, n_classes: int) -> List[int]:
    """The class ids 1..n_classes an H x W uint8 label map holds, ascending."""
    counts = np.bincount(labels.ravel(), minlength=256)[1:n_classes + 1]
    return [int(k) + 1 for k in np.flatnonzero(counts)]
