"""PANet's training objective: query segmentation loss plus prototype alignment (PROTOCOL §3-4).

Shape letters: B episodes, W ways, S shots, Q queries, C channels, H x W image size,
h x w feature size.
"""

from __future__ import annotations

from typing import Callable, Dict, NamedTuple, Tuple

import torch
import torch.nn.functional as F

from panet.base.constants import IGNORE_INDEX
from panet.models.panet import PANetOutput
from panet.models.prototypes import EPS, upsample


# a model's head: query features B x Q x C x h x w and prototypes B x P x C -> logits
# B x Q x P x h x w (`PANet.score`: alpha * cosine)
Score = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Loss(NamedTuple):
    """A training objective: `total`, the scalar minimised, and its named `terms` (logged as
    `<name>_loss`). `pixel_means`: the terms that are means over the batch's labelled query
    pixels, weighted by each process's pixels across processes (`panet.training.train_step`)."""

    total: torch.Tensor
    terms: Dict[str, torch.Tensor]
    pixel_means: Tuple[str, ...] = ()


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over every non-ignored query pixel of the batch (eq. 5).

    logits: B x Q x (1 + W) x H x W; labels: B x Q x H x W (0..W, 255 ignored).
    """
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten(0, 1), ignore_index=IGNORE_INDEX)


def support_labels(support_fg: torch.Tensor, support_bg: torch.Tensor) -> torch.Tensor:
    """PAR's target for each support: 1 on its foreground, 0 on its background, 255 elsewhere
    (background wins where both are set, as in the released code). ... x H x W -> long."""
    labels = torch.full(support_fg.shape, IGNORE_INDEX, dtype=torch.long, device=support_fg.device)
    labels[support_fg == 1] = 1
    labels[support_bg == 1] = 0
    return labels


def alignment_loss(out: PANetOutput, support_fg: torch.Tensor, support_bg: torch.Tensor,
                   score: Score) -> torch.Tensor:
    """Prototype alignment regularisation L_PAR (eq. 6-7), averaged over the B episodes.

    Per episode: the query's own prediction at feature resolution (argmax, no gradient through
    it) defines 1 + W query prototypes; ways predicted nowhere over all queries are skipped;
    every remaining (way c, shot k) support is segmented into {background, c} by those
    prototypes, with the model's own head `score` (PANet's: alpha * cosine), and scored by
    cross-entropy against its mask, each term divided by W * S.
    support_fg, support_bg: B x W x S x H x W. Returns a scalar.

    A support with no labelled pixel would make the released per-support mean 0/0 = NaN; here it
    contributes 0 (its terms cannot occur with masks built per PROTOCOL §2).
    """
    B, W, S = support_fg.shape[:3]
    n_labels = 1 + W
    query_features = out.query_features  # B x Q x C x h x w
    predicted = F.one_hot(out.logits_low.argmax(dim=2), n_labels)  # B x Q x h x w x (1 + W)
    predicted = predicted.to(query_features.dtype)
    counts = predicted.sum(dim=(1, 2, 3))  # B x (1 + W)
    query_prototypes = torch.einsum("bqchw,bqhwj->bjc", query_features, predicted)
    query_prototypes = query_prototypes / (counts[..., None] + EPS)  # B x (1 + W) x C

    # way c of episode b is aligned with [background, c]: B x W x 2 x C, repeated per shot
    pairs = torch.stack([query_prototypes[:, :1].expand(-1, W, -1), query_prototypes[:, 1:]], dim=2)
    pairs = pairs[:, :, None].expand(-1, -1, S, -1, -1).flatten(0, 2)  # (B*W*S) x 2 x C
    # each support a lone query of its own episode: (B*W*S) x 1 x C x h x w -> (B*W*S) x 2 x h x w
    logits = score(out.support_features.flatten(0, 2)[:, None], pairs)[:, 0]
    logits = upsample(logits, support_fg.shape[-2:])  # (B*W*S) x 2 x H x W

    labels = support_labels(support_fg, support_bg).flatten(0, 2)  # (B*W*S) x H x W
    pixel_losses = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="none")
    n_labelled = (labels != IGNORE_INDEX).sum(dim=(1, 2)).clamp(min=1)
    per_support = (pixel_losses.sum(dim=(1, 2)) / n_labelled).view(B, W, S)

    kept = (counts[:, 1:] > 0)[..., None]  # B x W x 1: skip ways predicted nowhere
    per_episode = torch.where(kept, per_support, torch.zeros_like(per_support)).sum(dim=(1, 2))
    return (per_episode / (W * S)).mean()


def panet_loss(out: PANetOutput, query_labels: torch.Tensor, support_fg: torch.Tensor,
               support_bg: torch.Tensor, score: Score, align_weight: float = 1.0) -> Loss:
    """L = L_seg + align_weight * L_PAR (PROTOCOL §4), PAR scoring with the model's head
    `score` (not computed for align_weight 0). query_labels: B x Q x H x W long, 0..W and 255;
    support_fg, support_bg: B x W x S x H x W float 0/1."""
    seg = segmentation_loss(out.logits, query_labels)
    if align_weight:
        align = alignment_loss(out, support_fg, support_bg, score)
    else:
        align = torch.zeros((), device=seg.device, dtype=seg.dtype)
    return Loss(seg + align_weight * align, {"seg": seg, "align": align}, pixel_means=("seg",))
