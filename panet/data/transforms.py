"""Per-image transforms (PROTOCOL §5): resize, horizontal flip, ImageNet normalisation.

Images are resized bilinearly (PIL), every label-like map (class labels, instance ids,
scribbles) by nearest neighbour: output pixel (y, x) takes input pixel
(floor((y + 0.5) * H_in / H_out), floor((x + 0.5) * W_in / W_out)), so no new label value appears.
"""

from __future__ import annotations

from typing import Tuple, Union

import numpy as np
import torch
from PIL import Image

from panet.constants import IMAGENET_MEAN, IMAGENET_STD

Size = Tuple[int, int]  # (H, W)

_MEAN = np.asarray(IMAGENET_MEAN, dtype=np.float32) * 255.0
_INV_STD = 1.0 / (np.asarray(IMAGENET_STD, dtype=np.float32) * 255.0)


def as_size(size: Union[int, Tuple[int, int]]) -> Size:
    """``417`` -> (417, 417); ``(H, W)`` stays. Rejects non-positive sizes."""
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive, got {size}")
    return int(height), int(width)


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
    index = ((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.int64)
    return np.minimum(index, n_in - 1)


def hflip(array: np.ndarray) -> np.ndarray:
    """Mirror an H x W (x ...) array left to right (a contiguous copy)."""
    return np.ascontiguousarray(array[:, ::-1])


def normalize(image: np.ndarray) -> torch.Tensor:
    """3 x H x W float32 tensor from an H x W x 3 uint8 RGB array: (x / 255 - mean) / std."""
    normalised = (image.astype(np.float32) - _MEAN) * _INV_STD
    return torch.from_numpy(np.ascontiguousarray(normalised.transpose(2, 0, 1)))
