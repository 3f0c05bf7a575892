"""PANet built from model settings: from ImageNet weights (training, PANet-init) or holding the
weights of a trained model (test, resume, predict). The one place a model is made."""

from __future__ import annotations

from typing import Dict, Optional

import torch

from .encoders import ENCODERS, build_encoder
from .panet import PANet


def build_model(model, weights_key: Optional[str] = "model.weights") -> PANet:
    """PANet with `model`'s encoder (`panet.settings.ModelSettings`), initialised from its
    ImageNet weights file (`model.weights_path`) or at random. A missing or wrong file raises an
    error naming the file, where it comes from, and the setting `weights_key`."""
    path = model.weights_path
    try:
        encoder = build_encoder(model.encoder, path)
    except (FileNotFoundError, ValueError) as error:
        if path is None or weights_key is None:
            raise
        url = ENCODERS[model.encoder].weights_url
        raise type(error)(f"{weights_key}={model.weights!r}: {' '.join(str(error).split())} "
                          f"Point {weights_key} at torchvision's ImageNet file of "
                          f"{model.encoder!r} ({url}), or set it to None to start from random "
                          "weights.") from None
    return PANet(encoder, alpha=model.alpha)


def model_with_weights(model, state: Dict[str, torch.Tensor]) -> PANet:
    """The PANet of `model` (settings) holding the trained weights `state` (all of them:
    a missing or unexpected tensor is an error)."""
    net = build_model(model.replace(weights=None), weights_key=None)
    net.load_state_dict(state)
    return net
