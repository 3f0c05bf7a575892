"""Where the encode-once evaluation keeps C x h x w encoder features between its support and
query steps: in host memory (`MemoryCache`) or as files that later evaluations reuse (`DiskCache`).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Dict, FrozenSet, Iterable, Union

import torch

from panet.base.errors import OneLineError, one_line
from panet.data.episodes import EpisodeDataset
from panet.base.files import atomic_write
from panet.base.safe_load import load_data


class CacheError(OneLineError):
    """A feature cache that cannot be written or read back: one line saying what to do."""


class MemoryCache:
    """Features in host memory, each read once (step 3) and then dropped."""

    persistent = False

    def __init__(self, device: torch.device):
        self.device = device
        self._features: Dict[str, torch.Tensor] = {}

    def stored(self, image_ids: Iterable[str]) -> FrozenSet[str]:
        return frozenset()

    def free_bytes(self, budget: int, world_size: int) -> int:
        return budget  # each process has its own

    def put(self, image_id: str, features: torch.Tensor) -> None:
        self._features[image_id] = features.to("cpu", copy=True)

    def get(self, image_id: str) -> torch.Tensor:
        return self._features.pop(image_id).to(self.device)


class DiskCache:
    """Features as files `<directory>/<model key>-<H>x<W>-<device type>[-<precision>]/
    <image key>.pt` (no precision part for fp32), kept for later evaluations of the same model.
    The model key (`panet.run.identity.model_identity`: weights, factory, method source) keeps
    methods apart; the image key hashes `Source.image_identity` (path, size, modification
    time), so a rewritten image is encoded again; bf16 features are kept apart from fp32 ones."""

    persistent = True

    def __init__(self, directory: Union[str, Path], model_key: str, dataset: EpisodeDataset,
                 device: torch.device, precision: str = "fp32"):
        self.root = Path(directory).expanduser()
        height, width = dataset.size
        computed = device.type if precision == "fp32" else f"{device.type}-{precision}"
        self.folder = self.root / f"{model_key[:16]}-{height}x{width}-{computed}"
        self.source = dataset.source
        self.device = device
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise CacheError(f"test.cache_dir: cannot create {self.folder} ({error}); point "
                             "test.cache_dir at a writable folder, or set it to None") from None

    def path(self, image_id: str) -> Path:
        key = hashlib.sha1(self.source.image_identity(image_id).encode()).hexdigest()[:24]
        return self.folder / f"{key}.pt"

    def stored(self, image_ids: Iterable[str]) -> FrozenSet[str]:
        present = set(os.listdir(self.folder))
        return frozenset(image for image in image_ids if self.path(image).name in present)

    def free_bytes(self, budget: int, world_size: int) -> int:
        """This process's share of what the budget leaves beside the files already there."""
        used = sum(path.stat().st_size for path in self.root.rglob("*.pt"))
        return (budget - used) // world_size

    def put(self, image_id: str, features: torch.Tensor) -> None:
        try:
            with atomic_write(self.path(image_id)) as file:  # readers: no file or a whole one
                torch.save(features.to("cpu", copy=True), file)
        except OSError as error:
            raise CacheError(f"could not write {self.path(image_id)} ({error.strerror or error})"
                             "; free some space or point test.cache_dir elsewhere, or set it to "
                             "None") from None

    def get(self, image_id: str) -> torch.Tensor:
        path = self.path(image_id)
        try:
            features = load_data(path, f"feature cache file (image {image_id!r})")
        except (OSError, ValueError) as error:
            raise CacheError(f"{one_line(error)}; delete {self.folder} and run again") from None
        if not torch.is_tensor(features) or not bool(torch.isfinite(features).all()):
            what = "no tensor" if not torch.is_tensor(features) else "NaN or infinite values"
            raise CacheError(f"feature cache file {path} holds {what}; delete {self.folder} "
                             "and run again")
        return features.to(self.device)
