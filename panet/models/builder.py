"""The model of a run built from model settings: from ImageNet weights (training, PANet-init) or
holding the weights of a trained model (test, resume, predict). The one place a model is made:
`model.factory` (default PANet, `panet.models.factory`) around the configured encoder."""

from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import nn

from panet.models.encoders import ENCODERS, build_encoder
from panet.models.factory import make_model
from panet.base.errors import one_line


def build_model(model, weights_key: Optional[str] = "model.weights") -> nn.Module:
    """The model `model.factory` makes (`panet.settings.ModelSettings`; default PANet) around
    `model`'s encoder, initialised from its ImageNet weights file (`model.weights_path`) or at
    random. A missing or wrong file raises an error naming the file, where it comes from, and
    the setting `weights_key`; a factory that cannot make a model, a one-line FactoryError."""
    path = model.weights_path
    try:
        encoder = build_encoder(model.encoder, path)
    except (FileNotFoundError, ValueError) as error:
        if path is None or weights_key is None:
            raise
        url = ENCODERS[model.encoder].weights_url
        raise type(error)(f"{weights_key}={model.weights!r}: {one_line(error)} "
                          f"Point {weights_key} at torchvision's ImageNet file of "
                          f"{model.encoder!r} ({url}), or set it to None to start from random "
                          "weights.") from None
    return make_model(model.factory, encoder, model.alpha)


def model_with_weights(model, state: Dict[str, torch.Tensor]) -> nn.Module:
    """The model of `model` (settings) holding the trained weights `state`, all of them: a
    missing, unexpected or misshapen tensor is a one-line ValueError."""
    net = build_model(model.replace(weights=None), weights_key=None)
    try:
        found = net.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shapes that differ
        raise ValueError(f"the weights do not fit the model model.factory={model.factory!r} "
                         f"makes: {one_line(error)}") from None
    if found.missing_keys or found.unexpected_keys:
        raise ValueError(f"the weights do not fit the model model.factory={model.factory!r} "
                         f"makes: missing {found.missing_keys or 'none'}, unexpected "
                         f"{found.unexpected_keys or 'none'}")
    return net
