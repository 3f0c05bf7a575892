"""PANet (Wang et al., ICCV 2019): a shared encoder, masked-average prototypes, a cosine head.

Shape letters: B episodes, W ways, S shots, Q queries, C channels, H x W image size,
h x w feature size. The losses (`panet.models.losses`) read `PANetOutput`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import nn

from panet.models.numerics import Numerics
from panet.models.prototypes import (cosine_logits, masked_average_pool, prototypes_from_pools,
                                     upsample)

ALPHA = 20.0  # PROTOCOL §3: scale of the cosine logits (the released code's `scaler`)


@dataclass
class PANetOutput:
    """What one forward pass over a batch of episodes produces."""

    logits: torch.Tensor  # B x Q x (1 + W) x H x W, upsampled; channel 0 = background
    logits_low: torch.Tensor  # B x Q x (1 + W) x h x w, at feature resolution
    query_features: torch.Tensor  # B x Q x C x h x w
    support_features: torch.Tensor  # B x W x S x C x h x w
    prototypes: torch.Tensor  # B x (1 + W) x C: [background, way 1, ..., way W]


class PANet(nn.Module):
    """Few-shot segmenter: any encoder mapping N x 3 x H x W to N x C x h x w, plus the
    non-parametric prototype head (PROTOCOL §2-3); no parameters of its own. The encoder runs
    in `numerics` (`use_numerics`). `fast_paths`: forward is `score(encode(queries),
    prototypes(encode(supports), ...))`, the prototypes a function of the pools
    (`panet.models.factory.fast_path_problem`).
    """

    fast_paths = ("parts", "pools")

    def __init__(self, encoder: nn.Module, alpha: float = ALPHA):
        super().__init__()
        self.encoder = encoder
        self.alpha = alpha
        self.numerics = Numerics()

    def use_numerics(self, numerics: Numerics) -> "PANet":
        """Run the encoder with `numerics` from now on (weights laid out in place); returns
        the model."""
        self.numerics = numerics
        numerics.apply_layout(self.encoder)
        return self

    def encode(self, images: torch.Tensor, levels: Optional[Sequence[str]] = None):
        """N x 3 x H x W images -> N x C x h x w float32 features in the model's numerics; with
        `levels` (names of `encoder.levels`), the dict of those levels' features."""
        return self.numerics.encode(self.encoder, images, levels)

    def forward(self, support_images: torch.Tensor, support_fg: torch.Tensor,
                support_bg: torch.Tensor, query_images: torch.Tensor) -> PANetOutput:
        """Segment the queries of B episodes.

        support_images: B x W x S x 3 x H x W; support_fg, support_bg: B x W x S x H x W
        (float 0/1); query_images: B x Q x 3 x H x W.
        """
        B, W, S = support_images.shape[:3]
        Q = query_images.shape[1]
        # one encoder pass over every image of the batch: (B*W*S + B*Q) x C x h x w
        features = self.encode(torch.cat([support_images.flatten(0, 2),
                                          query_images.flatten(0, 1)]))
        support_features = features[:B * W * S].unflatten(0, (B, W, S))
        query_features = features[B * W * S:].unflatten(0, (B, Q))

        prototypes = self.prototypes(support_features, support_fg, support_bg)
        logits_low = self.score(query_features, prototypes)
        return PANetOutput(
            logits=upsample(logits_low, query_images.shape[-2:]),
            logits_low=logits_low,
            query_features=query_features,
            support_features=support_features,
            prototypes=prototypes,
        )

    def prototypes(self, support_features: torch.Tensor, support_fg: torch.Tensor,
                   support_bg: torch.Tensor) -> torch.Tensor:
        """The prototypes [background, way 1, ..., way W] of B episodes (eq. 1-2) from each
        support's masked average pools. support_features: B x W x S x C x h x w; support_fg,
        support_bg: B x W x S x H x W -> B x (1 + W) x C."""
        return self.prototypes_from_pools(masked_average_pool(support_features, support_fg),
                                          masked_average_pool(support_features, support_bg))

    def prototypes_from_pools(self, fg_pools: torch.Tensor, bg_pools: torch.Tensor
                              ) -> torch.Tensor:
        """The prototypes from each support's pooled foreground and background, B x W x S x C
        each -> B x (1 + W) x C (`panet.models.prototypes.prototypes_from_pools`); test.py's
        encode-once path calls it."""
        return prototypes_from_pools(fg_pools, bg_pools)

    def score(self, query_features: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
        """Feature-resolution logits alpha * cos(F_q, p_j) of each episode's queries (eq. 3).

        query_features: B x Q x C x h x w; prototypes: B x (1 + W) x C
        -> B x Q x (1 + W) x h x w.
        """
        B, Q = query_features.shape[:2]
        logits = cosine_logits(query_features.flatten(0, 1),
                               prototypes.repeat_interleave(Q, dim=0), self.alpha)
        return logits.unflatten(0, (B, Q))
