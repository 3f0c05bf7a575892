"""A PFENet-style method: a training-free prior, a small decoder and an auxiliary loss.

Not PANet: its forward alone makes its logits (it declares no fast path), it reads two encoder
levels, its encoder stays frozen, and its own loss has two named terms. Through `model.factory`
it trains, tests, predicts, reproduces and compares like PANet:

    python train.py with synthetic small model.factory=examples.prior_decoder:PriorDecoder ...

Shape letters: B episodes, W ways, S shots, Q queries, C channels (C_m mid level, C_h high
level), h x w features, H x W images.

1. Features: the encoder's "conv3" (mid) and "conv4" (high) levels (`feature_levels`; both
   exist in VGG-16 and the small encoder), encoded without gradient: the encoder is frozen.
2. Prior (PFENet, Tian et al. 2020): for each query position, its highest cosine similarity
   with any support foreground position of the way, at the high level, min-max normalised over
   the query: B x Q x W x h x w, training-free.
3. Decoder, per way: the query's mid features, the way's prototype (masked average of its
   supports' mid features, shots averaged) and its prior, concatenated, through two 3x3 convs:
   a first foreground/background score (`aux`), refined by one more conv into the final one.
   The background logit is the mean over ways of their background scores.
4. Loss: {"seg": cross-entropy of the final logits, "aux": 0.4 x that of the first}, logged by
   name; L_seg is computed on logits upsampled to the labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from panet.models.losses import segmentation_loss
from panet.models.prototypes import masked_average_pool, upsample

AUX_WEIGHT = 0.4  # PFENet's weight of its intermediate losses
HIDDEN = 64  # decoder channels


@dataclass
class PriorOutput:
    """What forward gives: the final and the first logits, B x Q x (1 + W) x h x w."""

    logits: torch.Tensor
    aux: torch.Tensor


class PriorDecoder(nn.Module):
    """Prior + decoder on a frozen encoder (module docstring)."""

    feature_levels = ("conv3", "conv4")

    def __init__(self, encoder: nn.Module, alpha: float = 20.0):
        super().__init__()
        self.encoder = encoder.requires_grad_(False)  # frozen: never updated, no gradient
        with torch.device("meta"):
            mid, high = encoder(torch.empty(1, 3, 33, 33), self.feature_levels).values()
        self.first = nn.Sequential(nn.Conv2d(2 * mid.shape[1] + 1, HIDDEN, 3, padding=1),
                                   nn.ReLU(), nn.Conv2d(HIDDEN, 2, 3, padding=1))
        self.refine = nn.Conv2d(HIDDEN + 2, 2, 3, padding=1)

    def encode(self, images: torch.Tensor):
        """N x 3 x H x W -> (mid N x C_m x h x w, high N x C_h x h x w), no gradient."""
        with torch.no_grad():
            levels = self.encoder(images, self.feature_levels)
        return tuple(levels[name] for name in self.feature_levels)

    def forward(self, support_images, support_fg, support_bg, query_images) -> PriorOutput:
        B, W, S = support_images.shape[:3]
        Q = query_images.shape[1]
        mid, high = self.encode(torch.cat([support_images.flatten(0, 2),
                                           query_images.flatten(0, 1)]))
        support_mid = mid[:B * W * S].unflatten(0, (B, W, S))  # B x W x S x C_m x h x w
        query_mid = mid[B * W * S:].unflatten(0, (B, Q))  # B x Q x C_m x h x w
        support_high = high[:B * W * S].unflatten(0, (B, W, S))
        query_high = high[B * W * S:].unflatten(0, (B, Q))
        size = query_mid.shape[-2:]
        fg_low = F.interpolate(support_fg.flatten(0, 2)[:, None], size=size, mode="bilinear",
                               align_corners=False).view(B, W, S, *size)  # B x W x S x h x w
        prior = self.prior(query_high, support_high, fg_low)  # B x Q x W x h x w
        prototypes = masked_average_pool(support_mid, support_fg).mean(dim=2)  # B x W x C_m
        first, final = [], []
        for w in range(W):
            proto = prototypes[:, w, None, :, None, None].expand(-1, Q, -1, *size)
            x = torch.cat([query_mid, proto, prior[:, :, w, None]], dim=2).flatten(0, 1)
            hidden = F.relu(self.first[0](x))
            scores = self.first[2](self.first[1](hidden))  # (B*Q) x 2 x h x w: bg, fg
            first.append(scores.unflatten(0, (B, Q)))
            final.append(self.refine(torch.cat([hidden, scores], dim=1)).unflatten(0, (B, Q)))
        return PriorOutput(self.logits(final), self.logits(first))

    @staticmethod
    def prior(query_high: torch.Tensor, support_high: torch.Tensor, fg_low: torch.Tensor
              ) -> torch.Tensor:
        """B x Q x W x h x w: each query position's best cosine with the way's support
        foreground positions, min-max normalised over the query's positions."""
        B, W, S, C = support_high.shape[:4]
        query = F.normalize(query_high.flatten(-2), dim=2)  # B x Q x C x hw
        support = F.normalize(support_high.flatten(-2), dim=3)  # B x W x S x C x hw
        cos = torch.einsum("bqcx,bwscy->bqwsxy", query, support)  # x: query, y: support
        cos = cos.masked_fill(fg_low.flatten(-2)[:, None, :, :, None, :] <= 0.5, -1.0)
        best = cos.amax(dim=(3, 5))  # B x Q x W x hw
        low, high = best.amin(dim=-1, keepdim=True), best.amax(dim=-1, keepdim=True)
        return ((best - low) / (high - low + 1e-7)).unflatten(-1, query_high.shape[-2:])

    @staticmethod
    def logits(per_way) -> torch.Tensor:
        """W x [B x Q x 2 x h x w] (bg, fg) -> B x Q x (1 + W) x h x w: the ways' foreground
        scores after the mean of their background scores."""
        stacked = torch.stack(per_way, dim=2)  # B x Q x W x 2 x h x w
        return torch.cat([stacked[:, :, :, 0].mean(dim=2, keepdim=True), stacked[:, :, :, 1]],
                         dim=2)

    def loss(self, out: PriorOutput, query_labels, support_fg, support_bg):
        """{"seg": L_seg of the final logits, "aux": AUX_WEIGHT x L_seg of the first}."""
        size = query_labels.shape[-2:]
        return {"seg": segmentation_loss(upsample(out.logits, size), query_labels),
                "aux": AUX_WEIGHT * segmentation_loss(upsample(out.aux, size), query_labels)}
