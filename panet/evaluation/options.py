"""How a test is evaluated (`panet.evaluation.images.evaluate_runs`): one small options object.

Kept apart from the evaluation code so that the settings can name its choices without importing
the evaluation machinery.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

ENCODINGS = ("image", "episode")  # each distinct image encoded once | per episode, as released
RESOLUTIONS = ("label", "original")  # where the metric compares (panet.training.evaluate)


@dataclass(frozen=True)
class EvalOptions:
    """encode: "image" (each distinct image encoded once, twice when the feature cache is full)
    or "episode" (every episode runs the model's forward, the released reference); batch_size:
    episodes per forward pass (per-episode path), or as many episodes' images per encoder call
    (image path); resolution: "label" (the input size, PANet) or "original" (each query's own
    size); cache_gb: GiB of features kept between the support and query steps (per process in
    memory; of the folder with cache_dir); cache_dir: keep them as files there, under
    cache_key (what identifies the model: `panet.run.identity`); workers: DataLoader processes.
    The settings check the values (`panet.settings.TestSettings`)."""

    encode: str = "image"
    batch_size: int = 1
    resolution: str = "label"
    cache_gb: float = 1.0
    cache_dir: Optional[Union[str, Path]] = None
    cache_key: Optional[str] = None
    workers: int = 0
