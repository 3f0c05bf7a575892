"""Several prototypes per class: PANet's head over k-means parts of each way's support features
(PPNet, Liu et al. 2020; ASGNet, Li et al. 2021).

PANet pools a way's support foreground into one prototype. Here the foreground feature vectors
of a way's supports (positions where the mask, downsampled to h x w, is above 0.5) are split by
k-means into `PARTS` parts, each part's mean a prototype; the background keeps PANet's single
prototype. A query position scores alpha * cos against every prototype, and a way's logit is
the best of its parts'. Its prototypes come from support features, not from masked-average pools
of them, so it declares the "parts" fast path only: the Segmenter and predict.py make them once,
test.py's default path evaluates it per episode. PAR aligns one prototype per class, which a
part-based head has not: it trains on L_seg (its own loss).

    python train.py with synthetic small model.factory=examples.multi_prototype:MultiPrototype

Shape letters: B episodes, W ways, S shots, Q queries, K parts, C channels, h x w features,
H x W images, P = 1 + W * K prototypes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from panet.models import PANet
from panet.models.losses import segmentation_loss
from panet.models.prototypes import cosine_logits, masked_average_pool, upsample

PARTS = 3  # K: prototypes per way
ITERATIONS = 5  # k-means steps from a deterministic start


def kmeans(vectors: torch.Tensor, k: int) -> torch.Tensor:
    """k means of N x C `vectors` (N >= 1): started at the vectors of evenly spaced indices (as
    many distinct ones as there are), refined by `ITERATIONS` assignment and mean steps
    (assignments carry no gradient; the means do). Returns k x C (repeats when N < k)."""
    start = torch.linspace(0, len(vectors) - 1, k).round().long()
    centres = vectors[start]
    for _ in range(ITERATIONS):
        nearest = torch.cdist(vectors.detach(), centres.detach()).argmin(dim=1)  # N
        one_hot = F.one_hot(nearest, k).to(vectors.dtype)  # N x k
        counts = one_hot.sum(dim=0)[:, None]  # k x 1
        means = one_hot.t() @ vectors / counts.clamp(min=1)
        centres = torch.where(counts > 0, means, centres)  # an empty part keeps its centre
    return centres


class MultiPrototype(PANet):
    """PANet with K k-means parts per way (module docstring)."""

    fast_paths = ("parts",)  # forward is score(encode(queries), prototypes(supports))

    def prototypes(self, support_features: torch.Tensor, support_fg: torch.Tensor,
                   support_bg: torch.Tensor) -> torch.Tensor:
        """B x W x S x C x h x w features, B x W x S x H x W masks -> B x (1 + W * K) x C:
        [background, way 1's K parts, ..., way W's K parts]."""
        B, W, S, C = support_features.shape[:4]
        size = support_features.shape[-2:]
        background = masked_average_pool(support_features, support_bg).mean(dim=(1, 2))  # B x C
        fg_low = F.interpolate(support_fg.flatten(0, 2)[:, None], size=size, mode="bilinear",
                               align_corners=False).view(B, W, S, -1)  # B x W x S x hw
        features = support_features.flatten(-2).transpose(-1, -2)  # B x W x S x hw x C
        parts = []
        for b in range(B):
            for w in range(W):
                inside = fg_low[b, w] > 0.5  # S x hw
                vectors = features[b, w][inside] if inside.any() else \
                    masked_average_pool(support_features[b, w], support_fg[b, w])  # S x C
                parts.append(kmeans(vectors, PARTS))
        parts = torch.stack(parts).view(B, W * PARTS, C)
        return torch.cat([background[:, None], parts], dim=1)

    def score(self, query_features: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
        """B x Q x C x h x w, B x (1 + W * K) x C -> B x Q x (1 + W) x h x w: alpha * cos to
        each prototype, a way's the best of its K parts'."""
        B, Q = query_features.shape[:2]
        logits = cosine_logits(query_features.flatten(0, 1),
                               prototypes.repeat_interleave(Q, dim=0), self.alpha)
        parts = logits[:, 1:].unflatten(1, (-1, PARTS)).amax(dim=2)  # (B*Q) x W x h x w
        return torch.cat([logits[:, :1], parts], dim=1).unflatten(0, (B, Q))

    def loss(self, out, query_labels, support_fg, support_bg):
        """L_seg alone (PAR needs one prototype per class)."""
        return {"seg": segmentation_loss(upsample(out.logits_low, query_labels.shape[-2:]),
                                         query_labels)}
