"""Model factories for the tests of `model.factory` (tests/test_method.py, tests/test_cli.py):
heads and prototypes that differ from PANet's in a way a test can predict, and factories that
break the interface. Imported by name (`model.factory=toy_methods:NegatedPANet`) from tests/, which
pytest puts on the import path."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from panet.models import PANet
from panet.models.prototypes import upsample

NOT_CALLABLE = 42  # model.factory=toy_methods:NOT_CALLABLE


class NegatedPANet(PANet):
    """PANet whose logits are negated: its predictions are PANet's least likely labels. Its
    forward is PANet's, which scores with this `score`: its fast paths hold."""

    fast_paths = ("parts", "pools")

    def score(self, query_features: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
        return -super().score(query_features, prototypes)


class FirstShotPANet(PANet):
    """PANet whose prototypes come from each way's first shot only: `prototypes` overridden
    alone, so the encode-once path must not be used."""

    def prototypes(self, support_features: torch.Tensor, support_fg: torch.Tensor,
                   support_bg: torch.Tensor) -> torch.Tensor:
        return super().prototypes(support_features[:, :, :1], support_fg[:, :, :1],
                                  support_bg[:, :, :1])


class BackgroundPANet(PANet):
    """PANet whose forward pushes every pixel to the background (its parts are PANet's): every
    path that honours forward predicts background only."""

    def forward(self, *inputs):
        out = super().forward(*inputs)
        shift = torch.zeros_like(out.logits_low)
        shift[:, :, 0] = 1e4
        return dataclasses.replace(out, logits=out.logits + upsample(shift, out.logits.shape[-2:]),
                                   logits_low=out.logits_low + shift)


class DoubledEncodePANet(PANet):
    """PANet whose features are twice the encoder's (its own `encode`, no extra weight): the
    same state dict as a PANet of the same encoder, other features."""

    fast_paths = ("parts", "pools")

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return 2 * super().encode(images)


class DeepLevelsPANet(PANet):
    """Asks for an encoder level the small encoder does not have."""

    feature_levels = ("conv4", "conv9")


class OwnLossPANet(PANet):
    """PANet trained on its own objective: the mean query logit of the true labels, negated."""

    def loss(self, out, query_labels, support_fg, support_bg):
        labels = query_labels.clamp(max=out.logits.shape[2] - 1)  # ignored pixels: any label
        picked = out.logits.gather(2, labels[:, :, None]).mean()
        return {"picked": -picked}


def not_a_model(encoder: nn.Module, alpha: float) -> nn.Module:
    """A module without PANet's interface."""
    return nn.Linear(3, 3)


def raising(encoder: nn.Module, alpha: float) -> nn.Module:
    raise RuntimeError("this factory always fails")


def tensor_forward(encoder: nn.Module, alpha: float) -> nn.Module:
    """A PANet whose forward returns the logits tensor instead of a PANetOutput."""

    class TensorForward(PANet):
        def forward(self, *inputs):
            return super().forward(*inputs).logits

    return TensorForward(encoder, alpha)
