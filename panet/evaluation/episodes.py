"""The per-episode test path, as released: every episode encodes its supports and queries, and
every evaluated query of both test paths is scored here (`score_query`).

Shape letters: B episodes, W ways, S shots, Q queries, H x W input size, h x w feature size.
"""

from __future__ import annotations

from typing import Iterator, List, NamedTuple, Sequence

import torch
from torch.utils.data import DataLoader, Sampler

from panet.base.distributed import Context
from panet.base.monitor import Progress
from panet.data.episodes import to_device
from panet.evaluation.metrics import IoUMeter
from panet.models.factory import MODEL_INPUTS, query_logits
from panet.models.prototypes import upsampled_prediction


class EvalShard(Sampler):
    """Batches of the episodes [0, n) that rank r of R evaluates: those with i % R == r."""

    def __init__(self, n: int, batch_size: int, context: Context = Context()):
        self.indices = list(range(context.rank, n, context.world_size))
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[List[int]]:
        for first in range(0, len(self.indices), self.batch_size):
            yield self.indices[first:first + self.batch_size]

    def __len__(self) -> int:
        return -(-len(self.indices) // self.batch_size)


class QueryKey(NamedTuple):
    """Which query a prediction is for: test run, episode index within the run, query index."""

    run: int
    episode: int
    query: int


def score_query(meter: IoUMeter, logits_low: torch.Tensor, target: torch.Tensor,
                class_ids: Sequence[int], key: QueryKey) -> None:
    """Add one query's counts to `meter` (every evaluated query of both paths passes here).

    logits_low: (1 + W) x h x w at feature resolution; target: episode-local labels at the
    input size ("label" resolution) or the query's original size ("original"). The prediction
    is the argmax of the logits upsampled bilinearly to the target's size.
    """
    prediction = upsampled_prediction(logits_low, tuple(target.shape[-2:]))[1]
    meter.update(prediction, target, class_ids, run=key.run, episode=key.episode, query=key.query)


@torch.inference_mode()
def evaluate(model: torch.nn.Module, loader: DataLoader, meter: IoUMeter, run: int, *,
             device: torch.device, resolution: str = "label", progress: bool = True) -> None:
    """Add every query of `loader`'s episodes to `meter` under `run`: the per-episode path, as
    released. resolution "label" (PANet): predictions and labels at the input size;
    "original": each query's original size and label (needs keep_original_labels)."""
    model.eval()
    with Progress(len(loader), desc=f"test run {run}", every=max(1, len(loader) // 10),
                  enabled=progress) as bar:
        for batch in loader:
            batch = to_device(batch, device)
            logits = query_logits(model(*(batch[key] for key in MODEL_INPUTS)), model)
            targets = batch["query_labels" if resolution == "label" else "query_labels_full"]
            for b, (episode, class_ids) in enumerate(zip(batch["episode"],
                                                         batch["class_ids"].tolist())):
                for q in range(logits.shape[1]):
                    score_query(meter, logits[b, q], targets[b][q], class_ids,
                                QueryKey(run, episode, q))
            bar.update()
