"""PANet with a learnable temperature: the cosine head's scale alpha becomes a parameter.

PANet scores a query position against prototype p_j with alpha * cos(F_q, p_j), alpha fixed at
20 (PROTOCOL §3). Here alpha = exp(log_alpha), one parameter initialised at log(model.alpha) and
trained with the encoder; the segmentation head and PAR (which scores with the model's own
`score`) both use it. The prototypes are PANet's and forward's logits are this `score` of them,
so the model declares PANet's fast paths again (`fast_paths`): the Segmenter makes the
prototypes once, and test.py's encode-once path pools each support once and calls this `score`.

    python train.py with model.factory=examples.temperature:TemperaturePANet ...

Shape letters: B episodes, Q queries, W ways, C channels, h x w features.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from panet.models import PANet
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

    def score(self, query_features: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
        """exp(log_alpha) * cos(F_q, p_j): query_features B x Q x C x h x w, prototypes
        B x (1 + W) x C -> B x Q x (1 + W) x h x w."""
        cosines = super().score(query_features, prototypes) / self.alpha
        return self.temperature() * cosines
