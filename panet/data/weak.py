"""Support masks of one support image: dense, bounding box or scribble (PROTOCOL §2, §10).

All maps are H x W at the episode's input size (after resize and flip); masks are bool.

Dense: fg = pixels of the way's class; bg = pixels labelled with none of the episode's W classes
(void 255 counts as background).

Box: the class's instance map restricted to the dense fg; fg = the box of the largest instance
(released rule) or of a random one (the paper's wording); bg = everything outside the boxes of all
its instances. If no instance overlaps the fg (instance and class PNGs disagree), the whole fg
counts as one instance.

Scribble: from precomputed scribbles (``ScribbleAugAuto``: 0 bg scribble, 255 unlabelled, k fg
scribble of instance k) when the source has them: fg = one fg scribble chosen at random among
those that touch the dense fg, kept inside it; bg = the bg scribble inside the dense bg. Otherwise,
and for either side that comes out empty, the scribble is generated: the skeleton of the dense
region (a one-pixel-wide curve along the middle of every connected part). Optional dilation by a
disk of radius r, clipped to the region, so a scribble never marks pixels of the other side.

Empty masks: the dense fg of a support is never empty (the dataset resamples such supports), so
neither is its box or scribble (a skeleton keeps a pixel of every part). A bg can be empty (an
object filling the image, boxes covering it): it stays empty, and the model's masked pooling
(eps in the denominator) then gives a zero prototype, not a NaN.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage
from skimage.morphology import skeletonize

from panet.constants import IGNORE_INDEX

Masks = Tuple[np.ndarray, np.ndarray]  # (fg, bg), H x W bool
BOX_CHOICES = ("largest", "random")


def dense_masks(labels: np.ndarray, class_id: int, episode_class_ids: Sequence[int]) -> Masks:
    """fg = ``labels == class_id``; bg = label is none of ``episode_class_ids``."""
    return labels == class_id, ~np.isin(labels, episode_class_ids)


def _box(mask: np.ndarray) -> Tuple[slice, slice]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def box_masks(fg: np.ndarray, instances: np.ndarray, choice: str = "largest",
              rng: Optional[np.random.Generator] = None) -> Masks:
    """Box supports from a non-empty dense ``fg`` and the class's H x W instance ids."""
    if choice not in BOX_CHOICES:
        raise ValueError(f"bbox_instance must be one of {BOX_CHOICES}, got {choice!r}")
    inside = np.where(fg, instances, 0)
    ids, areas = np.unique(inside[inside > 0], return_counts=True)
    if ids.size == 0:
        inside, ids, areas = fg.astype(np.int32), np.array([1]), np.array([fg.sum()])
    if choice == "largest":
        chosen = ids[np.argmax(areas)]  # ties: the smallest id
    else:
        chosen = ids[rng.integers(ids.size)]
    fg_box = np.zeros_like(fg, dtype=bool)
    fg_box[_box(inside == chosen)] = True
    bg_box = np.ones_like(fg, dtype=bool)
    for instance in ids:
        bg_box[_box(inside == instance)] = False
    return fg_box, bg_box


def skeleton_scribble(region: np.ndarray) -> np.ndarray:
    """A generated scribble: the one-pixel skeleton of every connected part of ``region``."""
    return skeletonize(region) if region.any() else np.zeros_like(region, dtype=bool)


def dilate(scribble: np.ndarray, region: np.ndarray, radius: int) -> np.ndarray:
    """``scribble`` dilated by a disk of ``radius`` pixels, clipped to ``region``."""
    if radius <= 0:
        return scribble
    offsets = np.arange(-radius, radius + 1)
    disk = offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius ** 2
    return ndimage.binary_dilation(scribble, structure=disk) & region


def scribble_masks(fg: np.ndarray, bg: np.ndarray, rng: np.random.Generator,
                   precomputed: Optional[np.ndarray] = None, dilation: int = 0) -> Masks:
    """Scribble supports from the dense (fg, bg) and optional precomputed scribbles (H x W)."""
    fg_scribble = bg_scribble = None
    if precomputed is not None:
        candidates = np.setdiff1d(np.unique(precomputed[fg]), [0, IGNORE_INDEX])
        if candidates.size:
            fg_scribble = (precomputed == candidates[rng.integers(candidates.size)]) & fg
        bg_scribble = (precomputed == 0) & bg
    if fg_scribble is None:
        fg_scribble = skeleton_scribble(fg)
    if bg_scribble is None or not bg_scribble.any():
        bg_scribble = skeleton_scribble(bg)
    return dilate(fg_scribble, fg, dilation), dilate(bg_scribble, bg, dilation)
