"""Episodes as model input: the episode dataset and its collate function.

Shorthand: B episodes, W ways, S shots, Q queries, H x W the input size.

An item (one episode; CPU tensors)::

    support_images  W x S x 3 x H x W  float32, ImageNet-normalised
    support_fg      W x S x H x W      float32 0/1 (dense, box or scribble; see panet.data.weak)
    support_bg      W x S x H x W      float32 0/1
    query_images    Q x 3 x H x W      float32
    query_labels    Q x H x W          int64: 0 background, c for way c's class (1..W), 255 void,
                                       any other class 0 (PROTOCOL §3)
    class_ids       W                  int64 global class ids
    support_ids     W x S nested list of image ids
    query_ids       list of Q image ids
    query_labels_full  (keep_original_labels) list of Q int64 tensors H_q x W_q, episode-local
                       labels at the query's original size

Label classes (``coco_labels``). A source that paints only the classes it is asked for (COCO)
loads each image of way c with that way's class alone by default ("class", the released COCO
loader and PROTOCOL §7): a support's background and a query's labels ignore the other ways'
classes. "episode" paints all the episode's classes into every image. Sources with full label
maps (PASCAL, whose released loader paints every episode class) are the same under both.

``ds[i]`` is a pure function of i: the flips (training only, per image) and random box / scribble
choices come from a generator seeded with (seed, i), never from worker or global state.

A support whose class vanishes from its resized mask (a tiny object) is replaced, to keep every
support mask non-empty: the dataset draws, with that item's generator, other images of the class
not yet in the way (not its supports, not its queries) until one keeps a non-empty mask
(``MAX_RESAMPLES`` tries, then a ``ValueError`` naming the class). ``support_ids`` reports the
images actually used. A query keeps its label even if its class vanished: the metric counts a
class only where the ground truth holds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from panet.constants import IGNORE_INDEX
from panet.data.sampling import Episode
from panet.data.sources import Source
from panet.data.transforms import Size, hflip, image_tensor, resize_nearest
from panet.data.weak import BOX_CHOICES, Masks, box_masks, dense_masks, scribble_masks

WEAK_KINDS = ("dense", "scribble", "bbox")
COCO_LABELS = ("class", "episode")
MAX_RESAMPLES = 20
STACKED_KEYS = ("support_images", "support_fg", "support_bg", "query_images", "query_labels",
                "class_ids")


@dataclass
class _View:
    """One image of an episode after resize and flip."""

    image: torch.Tensor  # 3 x H x W normalised
    labels: np.ndarray  # H x W uint8, global ids
    full_labels: np.ndarray  # original size, global ids (flipped like the image)
    flipped: bool


def episode_labels(labels: np.ndarray, class_ids: Sequence[int]) -> np.ndarray:
    """Global label map -> episode-local int64 map: way c's class -> c + 1, 255 stays, else 0."""
    lookup = np.zeros(256, dtype=np.int64)
    lookup[IGNORE_INDEX] = IGNORE_INDEX
    lookup[np.asarray(class_ids)] = np.arange(1, len(class_ids) + 1)
    return lookup[labels]


class EpisodeDataset(Dataset):
    """Items built from a fixed episode list over a ``Source`` (see the module docstring)."""

    def __init__(self, source: Source, episodes: Sequence[Episode], size: Size, seed: int,
                 train: bool, weak: str = "dense", bbox_instance: str = "largest",
                 scribble_dilation: int = 0, keep_original_labels: bool = False,
                 coco_labels: str = "class"):
        if weak not in WEAK_KINDS:
            raise ValueError(f"weak must be one of {WEAK_KINDS}, got {weak!r}")
        if bbox_instance not in BOX_CHOICES:
            raise ValueError(f"bbox_instance must be one of {BOX_CHOICES}, got {bbox_instance!r}")
        if coco_labels not in COCO_LABELS:
            raise ValueError(f"coco_labels must be one of {COCO_LABELS}, got {coco_labels!r}")
        if scribble_dilation < 0:
            raise ValueError(f"scribble_dilation must be >= 0, got {scribble_dilation}")
        self.source = source
        self.episodes = list(episodes)
        self.size = size
        self.seed = seed
        self.train = train
        self.weak = weak
        self.bbox_instance = bbox_instance
        self.scribble_dilation = scribble_dilation
        self.keep_original_labels = keep_original_labels
        self.coco_labels = coco_labels
        self._class_images = source.class_images()

    def __len__(self) -> int:
        return len(self.episodes)

    def __getitem__(self, index: int) -> Dict[str, object]:
        episode = self.episodes[index]
        rng = np.random.default_rng([self.seed, index])
        class_ids = list(episode.class_ids)
        images, fgs, bgs, support_ids = [], [], [], []
        for way, class_id in enumerate(class_ids):
            used = set(episode.support_ids[way]) | set(episode.query_ids[way])
            way_ids = []
            for image_id in episode.support_ids[way]:
                image_id, view = self._support_view(image_id, class_id,
                                                    self._label_classes(class_ids, way), used, rng)
                fg, bg = self._support_masks(image_id, view, class_id, class_ids, rng)
                images.append(view.image)
                fgs.append(fg)
                bgs.append(bg)
                way_ids.append(image_id)
            support_ids.append(way_ids)
        queries = [self._view(image_id, self._label_classes(class_ids, way), rng)
                   for way, image_id in episode.queries()]
        ways, shots = len(class_ids), len(episode.support_ids[0])
        height, width = self.size
        item = {
            "support_images": torch.stack(images).view(ways, shots, 3, height, width),
            "support_fg": torch.from_numpy(np.stack(fgs)).float().view(ways, shots, height, width),
            "support_bg": torch.from_numpy(np.stack(bgs)).float().view(ways, shots, height, width),
            "query_images": torch.stack([q.image for q in queries]),
            "query_labels": torch.from_numpy(
                np.stack([episode_labels(q.labels, class_ids) for q in queries])),
            "class_ids": torch.tensor(class_ids, dtype=torch.int64),
            "support_ids": support_ids,
            "query_ids": [image_id for _, image_id in episode.queries()],
        }
        if self.keep_original_labels:
            item["query_labels_full"] = [torch.from_numpy(episode_labels(q.full_labels, class_ids))
                                         for q in queries]
        return item

    def _label_classes(self, class_ids: Sequence[int], way: int) -> List[int]:
        """The classes painted into an image of ``way`` (see ``coco_labels`` in the module
        docstring)."""
        return [class_ids[way]] if self.coco_labels == "class" else list(class_ids)

    def _view(self, image_id: str, class_ids: Sequence[int], rng: np.random.Generator) -> _View:
        """The image resized (and flipped) with its label map painted for ``class_ids``."""
        image, labels = self.source.load(image_id, class_ids)
        flipped = self.train and bool(rng.random() < 0.5)
        resized = resize_nearest(labels, self.size)
        if flipped:
            resized, labels = hflip(resized), hflip(labels)
        return _View(image_tensor(image, self.size, flipped), resized, labels, flipped)

    def _support_view(self, image_id: str, class_id: int, class_ids: Sequence[int],
                      used: Set[str], rng: np.random.Generator) -> Tuple[str, _View]:
        """(image id, view) of a support whose resized mask holds ``class_id``; labels painted
        for ``class_ids``."""
        view = self._view(image_id, class_ids, rng)
        if (view.labels == class_id).any():
            return image_id, view
        spare = [i for i in self._class_images[class_id] if i not in used]
        for pick in rng.permutation(len(spare))[:MAX_RESAMPLES]:
            candidate = spare[pick]
            used.add(candidate)
            view = self._view(candidate, class_ids, rng)
            if (view.labels == class_id).any():
                return candidate, view
        raise ValueError(
            f"class {self.source.class_name(class_id)}: support {image_id!r} and "
            f"{min(MAX_RESAMPLES, len(spare))} other images lose the class when resized to "
            f"{self.size}; use a larger input size or drop the class")

    def _aligned(self, array: Optional[np.ndarray], view: _View, image_id: str,
                 what: str) -> Optional[np.ndarray]:
        """An original-size map of the image resized and flipped like ``view``."""
        if array is None:
            return None
        if array.shape != view.full_labels.shape:
            raise ValueError(f"{self.source.location(image_id)}: its {what} is {array.shape} but "
                             f"its label map is {view.full_labels.shape}; they must match")
        array = resize_nearest(array, self.size)
        return hflip(array) if view.flipped else array

    def _support_masks(self, image_id: str, view: _View, class_id: int,
                       class_ids: Sequence[int], rng: np.random.Generator) -> Masks:
        fg, bg = dense_masks(view.labels, class_id, class_ids)
        if self.weak == "bbox":
            instances = self._aligned(self.source.instance_map(image_id, class_id), view,
                                      image_id, "instance map")
            return box_masks(fg, instances, self.bbox_instance, rng)
        if self.weak == "scribble":
            scribbles = self._aligned(self.source.scribble_map(image_id), view, image_id,
                                      "scribble map")
            return scribble_masks(fg, bg, rng, scribbles, self.scribble_dilation)
        return fg, bg


def collate_episodes(items: List[Dict[str, object]]) -> Dict[str, object]:
    """Stack B items: tensors gain a leading B (``support_images`` B x W x S x 3 x H x W, ...);
    id lists and ``query_labels_full`` become lists of length B."""
    batch = {}
    for key in items[0]:
        values = [item[key] for item in items]
        batch[key] = torch.stack(values) if key in STACKED_KEYS else values
    return batch
