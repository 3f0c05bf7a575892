"""How a test is evaluated (`panet.evaluation.evaluate_runs`): one small options object, apart
so that the settings name its choices without importing the evaluation machinery."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

ENCODINGS = ("image", "episode")  # each distinct image encoded once | per episode, as released
RESOLUTIONS = ("label", "original")  # where the metric compares (panet.training.evaluate)


@dataclass(frozen=True)
class EvalOptions:
    """encode: "image" or "episode" (`ENCODINGS`); batch_size: episodes per forward pass, or as
    many episodes' images per encoder call; resolution: `RESOLUTIONS`; cache_gb: GiB of
    features kept between the support and query steps (per process in memory; of the folder
    with cache_dir); cache_dir: keep them as files there, under cache_key (the model's
    identity); workers: DataLoader processes. Checked by `panet.settings.TestSettings`."""

    encode: str = "image"
    batch_size: int = 1
    resolution: str = "label"
    cache_gb: float = 1.0
    cache_dir: Optional[Union[str, Path]] = None
    cache_key: Optional[str] = None
    workers: int = 0
