"""Analyses beyond the tables (PROTOCOL §11): prototype distances (Sec. 4.3), training curves
(Fig. 5), and loading a trained model with its test episodes.

Shape letters: B episodes, W ways, S shots, Q queries, C channels, H x W image size, h x w
feature size.

Prototype distance (Sec. 4.3: "prototypes from the support set and from the query set (using
the query's ground-truth mask)"): per query and episode label j we compare the model's support
prototype p_j (eq. 1-2) with the prototype pooled *the same way* from the query's features over
j's ground-truth mask (background: every pixel of no way, void included). The foreground
distance ||p_c - q_c||_2 goes beside the paper's, the background one next to it; a query
without a pixel of j has no distance for it (NaN, left out of the mean).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple, Union

import torch
from torch.utils.data import Dataset

from panet.data import make_episode_dataset
from panet.weights.model_files import build_trained, read_model_file
from panet.data.episodes import episode_loader, to_device
from panet.evaluation.episodes import EvalShard
from panet.models.factory import MODEL_INPUTS
from panet.models import PANet
from panet.models.prototypes import masked_average_pool
from panet.settings import EpisodeSetting
from panet.report.render import MISSING, Number, Report
from panet.base.files import PathLike

Curve = Tuple[List[int], List[float]]  # steps, values


def load_trained(checkpoint: PathLike, device: Union[str, torch.device] = "cpu"
                 ) -> Tuple[PANet, EpisodeSetting]:
    """The PANet of a train.py checkpoint, in eval mode on `device`, and its episode setting."""
    model_file = read_model_file(checkpoint)
    if model_file.config is None:
        raise ValueError(f"{checkpoint}: a released snapshot holds no episode setting; convert "
                         "it with scripts/convert_checkpoint.py --to panet first")
    net = build_trained(model_file)
    return net.to(device).eval(), EpisodeSetting.from_config(model_file.config["data"])


def evaluation_episodes(data: EpisodeSetting, n_episodes: int, seed: int,
                        **overrides: Any) -> Dataset:
    """`n_episodes` test episodes (held-out classes, test split) of the episode setting `data`
    with fields replaced by `overrides` (e.g. shots=5, weak="bbox", root="data/VOC2012")."""
    known = set(data.as_config())
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown data setting(s) {unknown}; known: {sorted(known)}")
    return make_episode_dataset(data.replace(**overrides), n_episodes, seed, train=False)


def model_outputs(checkpoint: PathLike, n_episodes: int, seed: int,
                  device: Union[str, torch.device], workers: Optional[int] = None,
                  **overrides: Any) -> Iterator[Tuple[Dict[str, torch.Tensor], Any]]:
    """Each of `n_episodes` test episodes of a train.py checkpoint's setting (data.* keys
    replaced by `overrides`, seeded like test.py's first run), one per batch on `device`, with
    the model's output on it. Data loader processes: `workers`, or the setting's."""
    device = torch.device(device)
    net, data = load_trained(checkpoint, device)
    dataset = evaluation_episodes(data, n_episodes, seed, **overrides)
    shard = EvalShard(len(dataset), 1)
    for batch in episode_loader(dataset, shard, data.workers if workers is None else workers,
                                device):
        batch = to_device(batch, device)
        with torch.inference_mode():
            out = net(*(batch[key] for key in MODEL_INPUTS))
        yield batch, out


def query_masks(query_labels: torch.Tensor, ways: int) -> torch.Tensor:
    """Ground-truth masks of the 1 + W episode labels, built like the support masks:
    query_labels B x Q x H x W -> B x Q x (1 + W) x H x W float 0/1; mask 0: none of 1..W."""
    foreground = torch.stack([query_labels == c for c in range(1, ways + 1)], dim=2)
    background = ~foreground.any(dim=2, keepdim=True)
    return torch.cat([background, foreground], dim=2).to(torch.float32)


def prototype_distances(prototypes: torch.Tensor, query_features: torch.Tensor,
                        query_labels: torch.Tensor) -> torch.Tensor:
    """Euclidean distance between each support prototype and its query counterpart (PROTOCOL
    §2's pooling over `query_masks`).

    prototypes: B x (1 + W) x C; query_features: B x Q x C x h x w; query_labels:
    B x Q x H x W. Returns B x Q x (1 + W); NaN where the query has no pixel of j.
    """
    ways = prototypes.shape[1] - 1
    masks = query_masks(query_labels, ways).to(query_features.dtype)  # B x Q x (1+W) x H x W
    query_prototypes = masked_average_pool(query_features[:, :, None], masks)  # B x Q x (1+W) x C
    area = masks.sum(dim=(-2, -1))  # B x Q x (1+W)
    distances = (query_prototypes - prototypes[:, None]).norm(dim=-1)
    return distances.masked_fill(area == 0, float("nan"))


@dataclass
class PrototypeDistance:
    """Mean support-query prototype distances over the episodes that have both prototypes."""

    foreground: float
    background: float
    n_foreground: int  # (query, way) pairs averaged
    n_background: int
    n_episodes: int


@torch.inference_mode()
def measure_prototype_distance(checkpoint: PathLike, n_episodes: int, *, seed: int = 1234,
                               device: Union[str, torch.device] = "cpu",
                               **overrides: Any) -> PrototypeDistance:
    """Sec. 4.3 for one trained model over `n_episodes` test episodes (`model_outputs`)."""
    sums = torch.zeros(2, dtype=torch.float64)  # background, foreground
    counts = torch.zeros(2, dtype=torch.int64)
    episodes = 0
    for batch, out in model_outputs(checkpoint, n_episodes, seed, device, **overrides):
        distances = prototype_distances(out.prototypes, out.query_features,
                                        batch["query_labels"]).cpu().double()
        for index, part in enumerate((distances[..., 0], distances[..., 1:])):
            valid = ~torch.isnan(part)
            sums[index] += part[valid].sum()
            counts[index] += int(valid.sum())
        episodes += len(batch["query_labels"])
    means = torch.where(counts > 0, sums / counts.clamp(min=1), torch.nan)
    return PrototypeDistance(foreground=float(means[1]), background=float(means[0]),
                             n_foreground=int(counts[1]), n_background=int(counts[0]),
                             n_episodes=episodes)


def prototype_distance_report(measured: Mapping[str, PrototypeDistance],
                              paper: Mapping[str, float], *, setting: str, commit: str,
                              synthetic_scale: bool) -> Report:
    """prototype_distance.md / .tex: per model (keys of `paper`: with_PAR, without_PAR) our
    foreground distance beside the paper's, the difference, and our background distance."""
    warning = None
    if synthetic_scale:
        warning = ("Toy scale on the synthetic dataset", " (small encoder, few steps): distances "
                   "live in another feature space; the paper column is NOT comparable.")
    notes = [f"setting: {setting}",
             "compared: the model's support prototype of each episode label and the prototype "
             "pooled the same way (upsample, masked average) from the query with its "
             "ground-truth mask; Euclidean distance, mean over episodes (queries without the "
             "label are left out). Foreground = the way's class (reported beside the paper); "
             "background = every other pixel, as for supports.",
             f"commit: {commit}"]
    rows = []
    for name, paper_value in paper.items():
        result = measured.get(name)
        ours = None if result is None else result.foreground
        rows.append([name.replace("_", " "), Number(ours), Number(paper_value),
                     Number(None if ours is None else ours - paper_value, signed=True),
                     Number(None if result is None else result.background),
                     MISSING if result is None else f"{result.n_foreground} / {result.n_episodes}"])
    return Report("Sec. 4.3: distance between support and query prototypes",
                  ["model", "foreground (ours)", "paper", "difference", "background (ours)",
                   "queries used / episodes"], rows, notes, warning)


def read_training_curves(run_dir: PathLike) -> Dict[str, Curve]:
    """The per-step metrics (loss, seg_loss, align_loss, lr) a train.py run logged in its run
    folder's metrics.json (sacred's); a step logged twice (a resumed run) keeps the later value.
    """
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"no {path}: {run_dir} is not the run folder of a train.py run "
                                "(train.py records its losses there)")
    try:
        merged = {name: dict(zip(series["steps"], series["values"]))
                  for name, series in json.loads(path.read_text()).items()}
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"{path} is not a sacred metrics file ({error!r})") from None
    return {name: (sorted(values), [values[step] for step in sorted(values)])
            for name, values in merged.items()}

