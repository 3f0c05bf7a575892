"""The model of a run built from model settings (`model.factory` around the configured encoder):
from ImageNet weights, or holding a trained model's weights. The one place a model is made."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

import torch
from torch import nn

from panet.base.download import DownloadError
from panet.models.encoders import ENCODERS, IMAGENET, build_encoder, fetch_imagenet_weights
from panet.models.factory import factory_levels, make_model
from panet.base.errors import one_line


def build_model(model, weights_key: Optional[str] = "model.weights") -> nn.Module:
    """The model `model.factory` makes around `model`'s encoder (`ModelSettings`), from its
    ImageNet weights file (`encoder_weights`) or at random. A missing or wrong file raises an
    error naming it and the setting `weights_key`; a bad factory, a one-line FactoryError."""
    path = encoder_weights(model, weights_key)
    try:
        encoder = build_encoder(model.encoder, path, factory_levels(model.factory))
    except (FileNotFoundError, ValueError) as error:
        if path is None or weights_key is None:
            raise
        url = ENCODERS[model.encoder].weights_url
        raise type(error)(f"{weights_key}={model.weights!r}: {one_line(error)} "
                          f"Point {weights_key} at torchvision's ImageNet file of "
                          f"{model.encoder!r} ({url}), or set it to None to start from random "
                          "weights.") from None
    return make_model(model.factory, encoder, model.alpha)


def encoder_weights(model, weights_key: Optional[str]) -> Optional[Path]:
    """The weights file `model`'s encoder starts from (`model.weights_path`), downloaded first
    for model.weights='imagenet'; a failed download is a DownloadError naming `weights_key`."""
    if model.weights != IMAGENET or model.weights_path is None:
        return model.weights_path
    try:
        return fetch_imagenet_weights(model.encoder)
    except DownloadError as error:
        raise DownloadError(f"{weights_key}={model.weights!r}: {error}; or set "
                            f"{weights_key}=None to start from random weights") from None


def weights_problem(model, state: Dict[str, torch.Tensor]) -> Optional[str]:
    """Why the trained weights `state` cannot be those of the model `model` makes (missing,
    unexpected, misshapen or non-finite tensors), or None. Built on the meta device."""
    with torch.device("meta"):
        expected = build_model(model.replace(weights=None), weights_key=None).state_dict()
    missing = [name for name in expected if name not in state]
    unexpected = [name for name in state if name not in expected]
    found = [f"missing {missing}"] * bool(missing) + [f"unexpected {unexpected}"] * bool(unexpected)
    for name, tensor in state.items():
        want = expected.get(name)
        if want is None:
            continue
        if tensor.shape != want.shape or tensor.dtype != want.dtype:
            found.append(f"{name} is {tensor.dtype} {tuple(tensor.shape)}, the model's "
                         f"{want.dtype} {tuple(want.shape)}")
        elif tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            found.append(f"{name} holds NaN or infinite values")
    if not found:
        return None
    return (f"the weights do not fit the model model.factory={model.factory!r} makes: "
            + "; ".join(found[:3]) + (f" (and {len(found) - 3} more)" if len(found) > 3 else ""))


def model_with_weights(model, state: Dict[str, torch.Tensor]) -> nn.Module:
    """The model of `model` holding all of the trained weights `state` (`weights_problem`)."""
    problem = weights_problem(model, state)
    if problem is not None:
        raise ValueError(problem)
    net = build_model(model.replace(weights=None), weights_key=None)
    net.load_state_dict(state)
    return net
