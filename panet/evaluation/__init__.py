"""Test-time evaluation: the metric (`metrics`), the per-episode path as released (`episodes`),
the encode-once path (`images`) with its feature cache, and `evaluate_runs`, which picks one.

Shape letters: R runs, W ways, S shots, Q queries.
"""

from __future__ import annotations

from typing import Iterable, Optional, Tuple

from torch import nn

from panet.base.distributed import Context
from panet.data.episodes import EpisodeDataset, episode_loader
from panet.evaluation.episodes import EvalShard, evaluate
from panet.evaluation.images import evaluate_images, plan_runs
from panet.evaluation.metrics import IoUMeter
from panet.evaluation.options import EvalOptions
from panet.models.factory import fast_path_problem


def encode_path(model: nn.Module, encode: str) -> Tuple[str, Optional[str]]:
    """The path that evaluates `model` when `encode` ("image" | "episode") is asked, and why it
    is not the one asked (None when it is): a model that does not declare the "pools" fast path
    is evaluated through its own forward, per episode."""
    why = fast_path_problem(model, "pools") if encode == "image" else None
    return ("episode", why) if why is not None else (encode, None)


def evaluate_runs(model: nn.Module, datasets: Iterable[EpisodeDataset], meter: IoUMeter,
                  options: EvalOptions = EvalOptions(), context: Context = Context(),
                  progress: bool = True) -> IoUMeter:
    """Evaluate R test runs into `meter` (datasets[r]: run r, taken one at a time) and return
    it, merged over processes (`IoUMeter.merge`). options.encode "image": each distinct image
    encoded once (`panet.evaluation.images`); "episode": every episode runs the model's
    forward, as released; both give the same numbers within the exactness contract. A model
    the image path cannot evaluate exactly is evaluated per episode (`encode_path`)."""
    if encode_path(model, options.encode)[0] == "episode":
        for run, dataset in enumerate(datasets):
            loader = episode_loader(dataset, EvalShard(len(dataset), options.batch_size, context),
                                    options.workers, context.device)
            evaluate(model, loader, meter, run, device=context.device,
                     resolution=options.resolution, progress=progress)
    else:
        plan = plan_runs(datasets, options.workers, progress)
        evaluate_images(model, plan, meter, options, context, progress)
    return meter.merge(context)
