"""Test-time evaluation that encodes each distinct image once, with the per-episode path's numbers.

Shape letters: W ways, S shots, Q queries, C channels, H x W input size, h x w feature size,
U support slots (one support image of one episode) over all episodes of all runs.

The per-episode path (`encode="episode"`, as released) encodes all W*S + Q images of every
episode: 30,000 encodes of about 3,000 distinct PASCAL images for 5 x 1,000 1-way 5-shot
episodes. Once per image is enough: a test view is a fixed resize, the encoder has no batch
statistics, a prototype needs only each support's pooled foreground and background C-vectors,
and the counts are sums over queries. The image path (`encode="image"`) treats all runs at once:

1. plan (`plan_runs`): each episode's layout (`EpisodeDataset.layout`: label maps only) gives
   its supports and queries with the generator state each was drawn from, grouped by image.
   `schedule` splits the distinct images between processes and picks what the cache keeps.
2. supports: each distinct support image is encoded once; each of its slots redraws its masks
   (`EpisodeDataset.redraw_support`) and pools: U x C foreground and U x C background pools.
3. queries: each distinct query image is encoded once (or read from the cache); for each
   episode it is a query of, the model's `prototypes_from_pools` and `score` give the logits
   and `score_query` adds the counts.

Only a model that declares the "pools" fast path (`panet.models.factory.fast_path_problem`:
PANet does) takes this path; any other is evaluated per episode (`panet.evaluation.encode_path`).
An image both support and query is encoded once when the cache (`cache_gb` GiB in host memory
per process, or files under `cache_dir`) keeps its features from step 2 to 3, twice otherwise;
a cache directory also serves later tests of the same model (`options.cache_key`) at the same
size, device type and precision (e.g. the dense, scribble and box tests, Tables 1, 6).

Exactness: each step computes the same function of the same inputs as the per-episode path in
other batches; kernels may round by batch shape, so the paths agree within the exactness
contract's tolerance (docs/performance.md; tests/test_evaluation.py).

Memory per process grows with the episodes: the plan (about 1 KB per slot) and the pools
(2 x C x 4 bytes per support slot: 200 MB for 5 x 1,000 2-way 5-shot episodes at C = 512).
DDP: every process plans all runs and takes every R-th distinct image (sorted ids); the pools
(each row written by one process) are summed between the steps, the counts at the end.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Dict, FrozenSet, Iterable, Iterator, List, NamedTuple, Optional, Tuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from panet.base.distributed import Context, all_reduce_sum
from panet.base.monitor import Progress
from panet.data.episodes import EpisodeDataset, GeneratorState
from panet.data.transforms import Size
from panet.evaluation.episodes import QueryKey, score_query
from panet.evaluation.feature_cache import DiskCache, MemoryCache
from panet.evaluation.metrics import IoUMeter
from panet.evaluation.options import EvalOptions
from panet.models.panet import PANet
from panet.models.prototypes import masked_average_pool

GIB = 2 ** 30


class SupportSlot(NamedTuple):
    """One support of one episode: its pool row, way, episode classes and generator state."""

    row: int
    way: int
    class_ids: Tuple[int, ...]
    state: GeneratorState


class QuerySlot(NamedTuple):
    """One query of one episode: its key, way, the first of the episode's W*S pool rows
    (way-major), the episode's classes and its generator state."""

    key: QueryKey
    way: int
    first_row: int
    class_ids: Tuple[int, ...]
    state: GeneratorState


@dataclass
class Plan:
    """Every support and query slot of the planned runs, grouped by image id."""

    dataset: EpisodeDataset  # draws slots again: any run's (runs differ in episodes and seed only)
    ways: int  # W
    shots: int  # S
    n_queries: int  # Q
    supports: Dict[str, List[SupportSlot]] = field(default_factory=dict)
    queries: Dict[str, List[QuerySlot]] = field(default_factory=dict)
    n_rows: int = 0  # U
    episode_calls: int = 0  # encoder calls of the per-episode path: W*S + Q per episode

    def add(self, run: int, episode: int, class_ids: Tuple[int, ...],
            supports: List[Tuple[str, GeneratorState]],
            queries: List[Tuple[int, str, GeneratorState]]) -> None:
        """Add episode `episode` of run `run`: (image id, state) of its W*S supports (way-major)
        and (way, image id, state) of its Q queries (one setting: `plan_runs` checks it)."""
        assert (len(supports), len(queries)) == (self.ways * self.shots, self.n_queries)
        first_row = self.n_rows
        for slot, (image_id, state) in enumerate(supports):
            self.supports.setdefault(image_id, []).append(
                SupportSlot(first_row + slot, slot // self.shots, class_ids, state))
        for q, (way, image_id, state) in enumerate(queries):
            self.queries.setdefault(image_id, []).append(
                QuerySlot(QueryKey(run, episode, q), way, first_row, class_ids, state))
        self.n_rows += len(supports)
        self.episode_calls += len(supports) + len(queries)

    def images(self) -> List[str]:
        """The distinct images of the plan, sorted."""
        return sorted(self.supports.keys() | self.queries.keys())


class _Layouts(Dataset):
    """Item i: what a plan keeps of episode i's layout (class ids, (image id, state) of its
    supports, (way, image id, state) of its queries)."""

    def __init__(self, dataset: EpisodeDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        layout = self.dataset.layout(index)
        supports = [(s.view.image_id, s.state) for way in layout.supports for s in way]
        queries = [(q.way, q.view.image_id, q.state) for q in layout.queries]
        return tuple(layout.class_ids), supports, queries


def plan_runs(datasets: Iterable[EpisodeDataset], workers: int = 0,
              progress: bool = False) -> Plan:
    """The plan of test runs (datasets[r]: run r; same setting, their own episodes and seed),
    taken one at a time (the plan keeps the last to redraw slots); `workers` DataLoader
    processes build the layouts."""
    plan: Optional[Plan] = None
    for run, dataset in enumerate(datasets):
        if dataset.train:
            raise ValueError("image encoding evaluates test datasets (train=False): a training "
                             "dataset flips each image at random per episode")
        if plan is not None and _setting(dataset) != _setting(plan.dataset):
            raise ValueError(f"run {run}'s dataset has setting {_setting(dataset)}, run 0's "
                             f"{_setting(plan.dataset)}: the runs of a test share one setting")
        loader = DataLoader(_Layouts(dataset), batch_size=None, num_workers=workers,
                            collate_fn=tuple)  # the item as is
        with Progress(len(loader), desc=f"plan run {run}", every=max(1, len(loader) // 10),
                      enabled=progress) as bar:
            for index, (class_ids, supports, queries) in enumerate(loader):
                if plan is None:
                    plan = Plan(dataset, len(class_ids), len(supports) // len(class_ids),
                                len(queries))
                plan.add(run, index, class_ids, supports, queries)
                bar.update()
        if plan is not None:
            plan.dataset = dataset
    if plan is None:
        raise ValueError("nothing to evaluate: no run has an episode")
    return plan


def _setting(dataset: EpisodeDataset) -> tuple:
    """What must agree between the runs of one plan (slots of any run are drawn by one)."""
    return (type(dataset.source).__name__, getattr(dataset.source, "root", None),
            getattr(dataset.source, "split", None), dataset.setting, dataset.keep_original_labels)


@dataclass(frozen=True)
class Schedule:
    """One process's share of a plan and what its feature cache does."""

    supports: List[str]  # distinct support images, step 2 order
    queries: List[str]  # distinct query images, step 3 order
    stored: FrozenSet[str]  # features in the cache before the evaluation (files of earlier runs)
    keep: FrozenSet[str]  # features added to the cache once computed
    reused: FrozenSet[str]  # kept from step 2 for step 3 (supports and queries)

    def from_cache(self, image_id: str, step: str) -> bool:
        """Whether step "supports" or "queries" reads `image_id`'s features from the cache."""
        return image_id in self.stored or (step == "queries" and image_id in self.reused)

    def encoder_calls(self) -> int:
        """Images this process runs through the encoder."""
        return (sum(not self.from_cache(image, "supports") for image in self.supports)
                + sum(not self.from_cache(image, "queries") for image in self.queries))


def schedule(plan: Plan, capacity: int, stored: FrozenSet[str] = frozenset(),
             persistent: bool = False, rank: int = 0, world_size: int = 1) -> Schedule:
    """Process `rank`'s share of `plan`: every `world_size`-th distinct image (sorted ids).
    The cache takes at most `capacity` new features: first of images both support and query,
    then, when `persistent` (a directory), of the others (for later evaluations)."""
    images = plan.images()[rank::world_size]
    fresh = [image for image in images if image not in stored]
    both = [image for image in fresh if image in plan.supports and image in plan.queries]
    others = [image for image in fresh if not (image in plan.supports and image in plan.queries)]
    keep = frozenset((both + (others if persistent else []))[:max(capacity, 0)])
    return Schedule(supports=[image for image in images if image in plan.supports],
                    queries=[image for image in images if image in plan.queries],
                    stored=frozenset(stored), keep=keep, reused=keep.intersection(both))


def feature_shape(encoder: nn.Module, size: Size) -> Tuple[int, int, int]:
    """(C, h, w) of the encoder's output for H x W inputs, traced on the meta device (no
    arithmetic, no memory)."""
    tensors = {name: torch.empty_like(tensor, device="meta") for name, tensor in
               itertools.chain(encoder.named_parameters(), encoder.named_buffers())}
    out = torch.func.functional_call(encoder, tensors, (torch.empty(1, 3, *size, device="meta"),))
    return tuple(out.shape[1:])


class _StepImages(Dataset):
    """Items of step 2 ("supports") or 3 ("queries"): (image id, its pixels or None when the
    cache has its features, and per slot: a 2 x H x W bool (fg, bg) mask pair, or the query's
    int64 labels)."""

    def __init__(self, plan: Plan, plan_schedule: Schedule, step: str, full_labels: bool):
        self.plan, self.schedule, self.step = plan, plan_schedule, step
        self.full_labels = full_labels
        self.images = plan_schedule.supports if step == "supports" else plan_schedule.queries

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image_id = self.images[index]
        dataset = self.plan.dataset
        if self.step == "supports":
            drawn = [dataset.redraw_support(image_id, slot.way, slot.class_ids, slot.state)
                     for slot in self.plan.supports[image_id]]
            per_slot = [torch.from_numpy(np.stack([s.fg, s.bg])) for s in drawn]
        else:
            slots = self.plan.queries[image_id]
            drawn = [dataset.redraw_query(image_id, slot.way, slot.class_ids, slot.state)
                     for slot in slots]
            per_slot = [dataset.query_labels(q.view, slot.class_ids, full=self.full_labels)
                        for q, slot in zip(drawn, slots)]
        cached = self.schedule.from_cache(image_id, self.step)
        return image_id, None if cached else dataset.pixels(drawn[0].view), per_slot


def _step_features(model: PANet, items: _StepImages, cache, images_per_call: int, workers: int,
                   device: torch.device, progress: bool
                   ) -> Iterator[Tuple[str, torch.Tensor, list]]:
    """(image id, C x h x w features, per-slot data) of every item: encoded in batches of up
    to `images_per_call`, or from the cache; fresh features the schedule keeps are cached."""
    loader = DataLoader(items, batch_size=images_per_call, num_workers=workers, collate_fn=list)
    with Progress(len(loader), desc=f"{items.step} (batches of images)",
                  every=max(1, len(loader) // 10), enabled=progress) as bar:
        for batch in loader:
            fresh = [pixels for _, pixels, _ in batch if pixels is not None]
            encoded = iter(model.encode(torch.stack(fresh).to(device)) if fresh else ())
            for image_id, pixels, per_slot in batch:
                if pixels is None:
                    yield image_id, cache.get(image_id), per_slot
                    continue
                features = next(encoded)
                if image_id in items.schedule.keep:
                    cache.put(image_id, features)
                yield image_id, features, per_slot
            bar.update()


@torch.inference_mode()
def evaluate_images(model: PANet, plan: Plan, meter: IoUMeter,
                    options: EvalOptions = EvalOptions(), context: Context = Context(),
                    progress: bool = True) -> Schedule:
    """Steps 2 and 3 of the module docstring: add every query of `plan` to `meter` (this
    process's share; the caller sums the counts over processes). The encoder takes up to
    options.batch_size * (W*S + Q) images per call, as many as the per-episode path. Returns the
    schedule followed (`encoder_calls()` is what it encoded)."""
    dataset, device = plan.dataset, context.device
    model.eval()
    channels, height, width = feature_shape(model.encoder, dataset.size)
    feature_bytes = channels * height * width * next(model.parameters()).element_size()
    cache = (MemoryCache(device) if options.cache_dir is None
             else DiskCache(options.cache_dir, options.cache_key, dataset, device,
                            model.numerics.precision))
    capacity = cache.free_bytes(int(options.cache_gb * GIB), context.world_size) // feature_bytes
    images = plan.images()
    plan_schedule = schedule(plan, capacity, cache.stored(images[context.rank::context.world_size]),
                             cache.persistent, context.rank, context.world_size)
    images_per_call = options.batch_size * (plan.ways * plan.shots + plan.n_queries)
    full_labels = options.resolution == "original"

    def step(name: str):
        return _step_features(model, _StepImages(plan, plan_schedule, name, full_labels), cache,
                              images_per_call, options.workers, device, progress)

    pools = torch.zeros(2, plan.n_rows, channels, device=device)  # (fg, bg) x U x C
    for image_id, features, masks in step("supports"):
        pair = features.expand(2, *features.shape)  # the fg and bg masks pool the same features
        for slot, masks_of_slot in zip(plan.supports[image_id], masks):
            pools[:, slot.row] = masked_average_pool(pair, masks_of_slot.to(device).float())
    all_reduce_sum(pools, context)

    ways, shots = plan.ways, plan.shots
    for image_id, features, targets in step("queries"):
        for slot, target in zip(plan.queries[image_id], targets):
            fg, bg = pools[:, slot.first_row:slot.first_row + ways * shots]
            prototypes = model.prototypes_from_pools(  # 1 x P x C
                fg.view(1, ways, shots, channels), bg.view(1, ways, shots, channels))
            logits = model.score(features[None, None], prototypes)[0, 0]  # (1 + W) x h x w
            score_query(meter, logits, target.to(device), slot.class_ids, slot.key)
    return plan_schedule
