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
    support_ids     W x S nested list of image ids (the images actually used)
    query_ids       list of Q image ids
    episode         the item's index i
    query_labels_full  (keep_original_labels) list of Q int64 tensors H_q x W_q, episode-local
                       labels at the query's original size

Label classes (``coco_labels``). A source that paints only the classes it is asked for (COCO)
loads each image of way c with that way's class alone by default ("class", the released COCO
loader and PROTOCOL §7: a support's background and a query's labels ignore the other ways'
classes); "episode" paints all the episode's classes into every image. Sources with full label
maps (PASCAL, whose released loader paints every episode class) are the same under both.

``ds[i]`` is a pure function of i: the flips (training only) and random box / scribble choices
come from a generator seeded with (seed, i), never from worker or global state.

A support whose class vanishes from its resized mask (a tiny object) is replaced: the item's
generator draws other images of the class not yet in the way (as support or query) until one
keeps a non-empty mask (``MAX_RESAMPLES`` tries, then a ``ValueError`` naming the class). Under a
reference protocol (``panet.data.protocols``: PATNet's, HSNet's) supports are kept as drawn,
empty or not, and label maps resized as PyTorch's nearest mode does, as their code does. A query
keeps its label even if its class vanished: the metric counts a class only where it is.

Labels first, pixels second: ``layout(i)`` draws all of item i that needs only label maps,
recording each image's generator state; ``__getitem__`` then decodes the pixels.
``panet.evaluation.images`` plans test runs from layouts and draws a support or query again from
its state (``redraw_support``, ``redraw_query``): the same images, masks and labels as the item.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Set

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from panet.base.constants import IGNORE_INDEX
from panet.data.protocols import REFERENCE
from panet.data.sampling import Episode
from panet.data.sources import Source
from panet.data.transforms import (as_size, hflip, image_tensor, resize_nearest,
                                   resize_nearest_torch)
from panet.data.weak import Masks, box_masks, dense_masks, scribble_masks

WEAK_KINDS = ("dense", "scribble", "bbox")
COCO_LABELS = ("class", "episode")
MAX_RESAMPLES = 20
GeneratorState = Dict[str, Any]  # numpy's ``Generator.bit_generator.state``


@dataclass
class _View:
    """One image of an episode after resize and flip, labels only (pixels: ``pixels``)."""

    image_id: str
    labels: np.ndarray  # H x W uint8, global ids
    full_labels: np.ndarray  # original size, global ids (flipped like the image)
    flipped: bool


@dataclass
class DrawnSupport:
    """One support of a layout: its view, its masks, the generator state it was drawn from."""

    view: _View
    fg: np.ndarray  # H x W bool
    bg: np.ndarray  # H x W bool
    state: GeneratorState


@dataclass
class DrawnQuery:
    """One query of a layout: its way, its view and the generator state it was drawn from."""

    way: int
    view: _View
    state: GeneratorState


@dataclass
class EpisodeLayout:
    """An item without pixels (``EpisodeDataset.layout``)."""

    class_ids: List[int]  # W global ids
    supports: List[List[DrawnSupport]]  # W x S, replacements included
    queries: List[DrawnQuery]  # Q, in ``Episode.queries`` order


def episode_labels(labels: np.ndarray, class_ids: Sequence[int]) -> np.ndarray:
    """Global label map -> episode-local int64 map: way c's class -> c + 1, else 0, except 255
    (void) in a uint8 map. A uint16 map (a split of more than 254 classes: panet.data.cdfss)
    has no void: 255 is a class there."""
    lookup = np.zeros(max(256, int(labels.max(initial=0)) + 1, max(class_ids) + 1),
                      dtype=np.int64)
    if labels.dtype == np.uint8:
        lookup[IGNORE_INDEX] = IGNORE_INDEX
    lookup[np.asarray(class_ids)] = np.arange(1, len(class_ids) + 1)
    return lookup[labels]


def generator_at(state: GeneratorState) -> np.random.Generator:
    """A generator that continues from ``state`` (a copy: ``state`` is left as it is)."""
    rng = np.random.default_rng(0)
    rng.bit_generator.state = state
    return rng


class EpisodeDataset(Dataset):
    """Items built from a fixed episode list over a ``Source`` (see the module docstring)."""

    def __init__(self, source: Source, episodes: Sequence[Episode], setting, seed: int,
                 train: bool, keep_original_labels: bool = False):
        """Items of ``episodes`` over ``source`` with the views and supports of ``setting``
        (``panet.settings.EpisodeSetting``, checked there: size, weak, bbox_instance,
        scribble_dilation, coco_labels); ``seed`` seeds each item's generator with its index."""
        self.source = source
        self.episodes = list(episodes)
        self.setting = setting
        self.size = as_size(setting.size)
        self.seed = seed
        self.train = train
        self.keep_original_labels = keep_original_labels
        self._class_images = source.class_images()
        self.reference = setting.episode_rule in REFERENCE
        self._resize = resize_nearest_torch if self.reference else resize_nearest

    def __len__(self) -> int:
        return len(self.episodes)

    def __getitem__(self, index: int) -> Dict[str, object]:
        layout = self.layout(index)
        class_ids, supports, queries = layout.class_ids, layout.supports, layout.queries
        fg = np.array([[s.fg for s in way] for way in supports])  # W x S x H x W bool
        bg = np.array([[s.bg for s in way] for way in supports])
        item = {
            "support_images": torch.stack([torch.stack([self.pixels(s.view) for s in way])
                                           for way in supports]),
            "support_fg": torch.from_numpy(fg).float(),
            "support_bg": torch.from_numpy(bg).float(),
            "query_images": torch.stack([self.pixels(q.view) for q in queries]),
            "query_labels": torch.stack([self.query_labels(q.view, class_ids) for q in queries]),
            "class_ids": torch.tensor(class_ids, dtype=torch.int64),
            "support_ids": [[s.view.image_id for s in way] for way in supports],
            "query_ids": [q.view.image_id for q in queries],
            "episode": index,
        }
        if self.keep_original_labels:
            item["query_labels_full"] = [self.query_labels(q.view, class_ids, full=True)
                                         for q in queries]
        return item

    def layout(self, index: int) -> EpisodeLayout:
        """Item ``index`` without pixels: supports (replaced where their class vanishes) with
        their masks, and queries; no image is decoded."""
        episode = self.episodes[index]
        rng = np.random.default_rng([self.seed, index])
        class_ids = list(episode.class_ids)
        supports = []
        for way in range(len(class_ids)):
            used = set(episode.support_ids[way]) | set(episode.query_ids[way])
            supports.append([self._support(image_id, way, class_ids, used, rng)
                             for image_id in episode.support_ids[way]])
        queries = [self._draw_query(image_id, way, class_ids, rng)
                   for way, image_id in episode.queries()]
        return EpisodeLayout(class_ids, supports, queries)

    def redraw_support(self, image_id: str, way: int, class_ids: Sequence[int],
                       state: GeneratorState) -> DrawnSupport:
        """The support of ``way`` that ``layout`` drew from ``state`` (its
        ``DrawnSupport.state``), drawn again."""
        support = self._draw_support(image_id, way, class_ids, generator_at(state))
        if support is None:
            raise ValueError(f"support {image_id!r} loses class "
                             f"{self.source.class_name(class_ids[way])} at {self.size}: it is not "
                             "a support that layout() drew")
        return support

    def redraw_query(self, image_id: str, way: int, class_ids: Sequence[int],
                     state: GeneratorState) -> DrawnQuery:
        """The query of ``way`` that ``layout`` drew from ``state`` (its ``DrawnQuery.state``),
        drawn again."""
        return self._draw_query(image_id, way, class_ids, generator_at(state))

    def query_labels(self, view: _View, class_ids: Sequence[int],
                     full: bool = False) -> torch.Tensor:
        """Episode-local int64 labels of a query view (PROTOCOL §3), H x W (or its original size
        when ``full``)."""
        return torch.from_numpy(episode_labels(view.full_labels if full else view.labels,
                                               class_ids))

    def pixels(self, view: _View) -> torch.Tensor:
        """3 x H x W: the view's image decoded, checked against its label map, resized, flipped
        like the view and normalised."""
        image = self.source.image(view.image_id)
        self.source.check_sizes(view.image_id, image, view.full_labels.shape)
        return image_tensor(image, self.size, view.flipped)

    def _view(self, image_id: str, way: int, class_ids: Sequence[int],
              rng: np.random.Generator) -> _View:
        """The image's label map painted for ``way`` (``coco_labels``: the module docstring),
        resized (and flipped)."""
        painted = [class_ids[way]] if self.setting.coco_labels == "class" else list(class_ids)
        labels = self.source.label_map(image_id, painted)
        flipped = self.train and bool(rng.random() < 0.5)
        resized = self._resize(labels, self.size)
        if flipped:
            resized, labels = hflip(resized), hflip(labels)
        return _View(image_id, resized, labels, flipped)

    def _draw_query(self, image_id: str, way: int, class_ids: Sequence[int],
                    rng: np.random.Generator) -> DrawnQuery:
        state = rng.bit_generator.state
        return DrawnQuery(way, self._view(image_id, way, class_ids, rng), state)

    def _draw_support(self, image_id: str, way: int, class_ids: Sequence[int],
                      rng: np.random.Generator) -> Optional[DrawnSupport]:
        """View and masks of one support of ``way``, drawn from ``rng``; None, with nothing
        drawn after the view, when the way's class vanishes from its resized label map."""
        state = rng.bit_generator.state
        class_id = class_ids[way]
        view = self._view(image_id, way, class_ids, rng)
        if not (self.reference or (view.labels == class_id).any()):
            return None
        fg, bg = self._support_masks(view, class_id, class_ids, rng)
        return DrawnSupport(view, fg, bg, state)

    def _support(self, image_id: str, way: int, class_ids: Sequence[int], used: Set[str],
                 rng: np.random.Generator) -> DrawnSupport:
        """Support ``image_id`` of ``way``, or the first replacement whose resized mask holds
        the way's class."""
        support = self._draw_support(image_id, way, class_ids, rng)
        if support is not None:
            return support
        class_id = class_ids[way]
        spare = [i for i in self._class_images[class_id] if i not in used]
        for pick in rng.permutation(len(spare))[:MAX_RESAMPLES]:
            candidate = spare[pick]
            used.add(candidate)
            support = self._draw_support(candidate, way, class_ids, rng)
            if support is not None:
                return support
        raise ValueError(
            f"class {self.source.class_name(class_id)}: support {image_id!r} and "
            f"{min(MAX_RESAMPLES, len(spare))} other images lose the class when resized to "
            f"{self.size}; use a larger input size or drop the class")

    def _aligned(self, array: np.ndarray, view: _View, what: str) -> np.ndarray:
        """An original-size map of the image resized and flipped like ``view``."""
        if array.shape != view.full_labels.shape:
            raise ValueError(f"{self.source.location(view.image_id)}: its {what} is {array.shape} "
                             f"but its label map is {view.full_labels.shape}; they must match")
        array = self._resize(array, self.size)
        return hflip(array) if view.flipped else array

    def _support_masks(self, view: _View, class_id: int, class_ids: Sequence[int],
                       rng: np.random.Generator) -> Masks:
        fg, bg = dense_masks(view.labels, class_id, class_ids)
        if self.setting.weak == "bbox":
            instances = self._aligned(self.source.instance_map(view.image_id, class_id), view,
                                      "instance map")
            return box_masks(fg, instances, self.setting.bbox_instance, rng)
        if self.setting.weak == "scribble":
            scribbles = self._aligned(self.source.scribble_map(view.image_id), view,
                                      "scribble map")
            return scribble_masks(fg, bg, rng, scribbles, self.setting.scribble_dilation)
        return fg, bg


def collate_episodes(items: List[Dict[str, object]]) -> Dict[str, object]:
    """Stack B items: tensors gain a leading B (``support_images`` B x W x S x 3 x H x W, ...);
    id lists and ``query_labels_full`` become lists of length B."""
    batch = {}
    for key in items[0]:
        values = [item[key] for item in items]
        batch[key] = torch.stack(values) if torch.is_tensor(values[0]) else values
    return batch


def episode_loader(dataset: Dataset, batch_sampler, workers: int,
                   device: torch.device) -> DataLoader:
    return DataLoader(dataset, batch_sampler=batch_sampler, num_workers=workers,
                      collate_fn=collate_episodes, pin_memory=device.type == "cuda")


def to_device(batch: Dict, device: torch.device) -> Dict:
    """Move the batch's tensors to `device`; lists (ids, full-size labels) stay as they are."""
    return {key: value.to(device, non_blocking=True) if torch.is_tensor(value) else value
            for key, value in batch.items()}
