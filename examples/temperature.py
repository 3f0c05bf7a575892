"""PANet with a learnable temperature: the cosine head's scale alpha becomes a parameter.

PANet scores a query position against prototype p_j with alpha * cos(F_q, p_j), alpha fixed at
20 (PROTOCOL §3). Here alpha = exp(log_alpha), one parameter initialised at log(model.alpha) and
trained with the encoder; the segmentation head and PAR (`PANetOutput.alpha`) both use it. The
prototypes are PANet's and forward's logits are this `score` of them, so the model declares
PANet's fast paths again (`fast_paths`): the Segmenter makes the prototypes once, and test.py's
encode-once path pools each support once and calls this model's `score`.

    python train.py with model.factory=examples.temperature:TemperaturePANet ...

Shape letters: B episodes, Q queries, W ways, C channels, h x w features.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from panet.models import PANet, PANetOutput
from panet.models.panet import ALPHA


class TemperaturePANet(PANet):
    """PANet whose cosine scale is learned: one parameter beyond the encoder's."""

    fast_paths = ("parts", "pools")  # forward is PANet's: its logits are score(prototypes)

    def __init__(self, encoder: nn.Module, alpha: float = ALPHA):
        super().__init__(encoder, alpha)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(alpha)))

    def temperature(self) -> torch.Tensor:
        """The learned scale exp(log_alpha), a scalar tensor."""
        return self.log_alpha.exp()

    def forward(self, support_images: torch.Tensor, support_fg: torch.Tensor,
                support_bg: torch.Tensor, query_images: torch.Tensor) -> PANetOutput:
        """PANet's forward; PAR then scores the supports at the learned scale too."""
        out = super().forward(support_images, support_fg, support_bg, query_images)
        return dataclasses.replace(out, alpha=self.temperature())

    def score(self, query_features: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
        """exp(log_alpha) * cos(F_q, p_j): query_features B x Q x C x h x w, prototypes
        B x (1 + W) x C -> B x Q x (1 + W) x h x w."""
        cosines = super().score(query_features, prototypes) / self.alpha
        return self.temperature() * cosines
