"""Per-image transforms (PROTOCOL §5): RGB conversion, resize, horizontal flip, ImageNet
normalisation; the one path from a picture to the model's input (``image_tensor``,
``resize_nearest``), for the episode dataset and ``panet.inference.Segmenter`` alike.

Images are resized bilinearly (PIL), every label-like map (class labels, instance ids,
scribbles, masks) by nearest neighbour: output pixel (y, x) takes input pixel
(floor((y + 0.5) * H_in / H_out), floor((x + 0.5) * W_in / W_out)), so no new label value appears.
"""

from __future__ import annotations

from typing import Tuple, Union

import numpy as np
import torch
from PIL import Image, ImageOps

from panet.base.constants import IMAGENET_MEAN, IMAGENET_STD

Size = Tuple[int, int]  # (H, W)
EXIF_ORIENTATION = 0x0112  # the EXIF tag saying how a stored image is turned for display

_MEAN = np.asarray(IMAGENET_MEAN, dtype=np.float32) * 255.0
_INV_STD = 1.0 / (np.asarray(IMAGENET_STD, dtype=np.float32) * 255.0)


def as_size(size: Union[int, Tuple[int, int]]) -> Size:
    """``417`` -> (417, 417); ``(H, W)`` stays (positive: config key data.size is checked where
    settings are read)."""
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    return int(height), int(width)


def upright(image: Image.Image) -> Image.Image:
    """The image as it is displayed: turned by its EXIF Orientation tag (a photo taken sideways
    is stored sideways and displayed upright), unchanged without one."""
    return ImageOps.exif_transpose(image)


def too_large(path: object, error: Image.DecompressionBombError) -> str:
    """The one line refusing an image whose header claims more pixels than PIL opens (a
    decompression bomb, or an image to shrink first)."""
    return (f"{path} refused: {' '.join(str(error).split())} (PIL's Image.MAX_IMAGE_PIXELS): "
            "shrink the image first")


def displayed_size(image: Image.Image) -> Tuple[int, int]:
    """(W, H) of the image as displayed (``upright``), read from its header."""
    turned = image.getexif().get(EXIF_ORIENTATION) in (5, 6, 7, 8)  # quarter turns
    return (image.height, image.width) if turned else image.size


def to_rgb(image: Image.Image, where: str = "image", upright_by_exif: bool = True) -> Image.Image:
    """The image as 8-bit RGB (alpha dropped), upright as displayed (``upright``; not with
    ``upright_by_exif=False``, for annotations made on the stored pixels). 16-bit and float
    images are refused with a ``ValueError`` naming ``where``: PIL would clip them to 255."""
    image.load()  # decode now (a truncated file raises OSError here), so the file may close
    if upright_by_exif:
        image = upright(image)
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "F") or image.mode.startswith("I;"):
        raise ValueError(f"{where}: {image.mode} image (16-bit or float pixels); PANet reads "
                         f"8-bit images: convert it to 8 bits first (e.g. rescale or window its "
                         f"intensities)")
    return image.convert("RGB")


def image_tensor(image: Image.Image, size: Size, flip: bool = False) -> torch.Tensor:
    """The model input of one image, 3 x H x W float32 (H x W = ``size``): ``to_rgb``, bilinear
    resize, optional left-right flip, ``normalize``."""
    pixels = resize_image(to_rgb(image), size)
    return normalize(hflip(pixels) if flip else pixels)


def resize_image(image: Image.Image, size: Size) -> np.ndarray:
    """H x W x 3 uint8 array of the RGB image resized bilinearly to ``size``."""
    height, width = size
    if (image.height, image.width) != (height, width):
        image = image.resize((width, height), Image.BILINEAR)
    return np.asarray(image)


def resize_nearest(labels: np.ndarray, size: Size) -> np.ndarray:
    """An H_in x W_in map of any dtype resized to ``size`` by nearest neighbour."""
    rows = _nearest_index(labels.shape[0], size[0])
    cols = _nearest_index(labels.shape[1], size[1])
    return labels[rows[:, None], cols[None, :]]


def _nearest_index(n_in: int, n_out: int) -> np.ndarray:
    return np.minimum(((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.int64), n_in - 1)


def resize_nearest_torch(labels: np.ndarray, size: Size) -> np.ndarray:
    """``resize_nearest`` picking the pixels PyTorch's ``interpolate(mode="nearest")`` picks,
    which PATNet and HSNet apply to masks (PATNet data/deepglobe.py:36, 41-44): the reference
    protocols' labels, pixel for pixel (tests/test_data_transforms.py checks it against torch)."""
    rows = _torch_nearest_index(labels.shape[0], size[0])
    cols = _torch_nearest_index(labels.shape[1], size[1])
    return labels[rows[:, None], cols[None, :]]


def _torch_nearest_index(n_in: int, n_out: int) -> np.ndarray:
    """PyTorch's source index of each output pixel: i when the size stays, i // 2 when it
    doubles, else min(floor(i * (n_in / n_out)), n_in - 1) computed in float32."""
    index = np.arange(n_out)
    if n_out in (n_in, 2 * n_in):
        return index // (n_out // n_in)
    scale = np.float32(n_in) / np.float32(n_out)
    return np.minimum(np.floor(index.astype(np.float32) * scale).astype(np.int64), n_in - 1)


def hflip(array: np.ndarray) -> np.ndarray:
    """Mirror an H x W (x ...) array left to right (a contiguous copy)."""
    return np.ascontiguousarray(array[:, ::-1])


def normalize(image: np.ndarray) -> torch.Tensor:
    """3 x H x W float32 tensor from an H x W x 3 uint8 RGB array: (x / 255 - mean) / std."""
    normalised = (image.astype(np.float32) - _MEAN) * _INV_STD
    return torch.from_numpy(np.ascontiguousarray(normalised.transpose(2, 0, 1)))
