"""The encoders PANet can run on, by config name (`model.encoder`): a registry, read by the
settings, the tables and the Segmenter (a new encoder: docs/development.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Union

import torch.hub
from torch import nn

from panet.base.download import DownloadError, download
from panet.models.resnet import RESNET_WEIGHTS, resnet_encoder
from panet.models.vgg import VGG16_WEIGHTS_FILE, VGG16_WEIGHTS_URL, small_encoder, vgg16_encoder
from panet.models.weights import TORCHVISION_MODELS_URL, TORCHVISION_URL_VARIABLE

IMAGENET = "imagenet"  # model.weights: torchvision's ImageNet file of the configured encoder

@dataclass(frozen=True)
class EncoderSpec:
    """One encoder: `build(weights file or None, levels) -> nn.Module` mapping N x 3 x H x W to
    N x C x h x w (a dict of its named `levels` when called with `levels=`; a ResNet builds
    layer4 only when asked); `weights_file`: torchvision's ImageNet file (None: none exists),
    published at `weights_url`."""

    build: Callable[[Optional[Path], Sequence[str]], nn.Module]
    description: str
    weights_file: Optional[str] = None
    weights_url: Optional[str] = None


def _vgg(build: Callable[[Optional[Path]], nn.Module]):
    return lambda weights, levels=(): build(weights)  # every level is built


def _resnet(depth: int):
    return lambda weights, levels=(): resnet_encoder(
        depth, weights, "layer4" if "layer4" in levels else "layer3")


ENCODERS: Dict[str, EncoderSpec] = {
    "vgg16": EncoderSpec(_vgg(vgg16_encoder), "PANet's dilated VGG-16 (PROTOCOL §1); levels "
                         "conv1-conv5", VGG16_WEIGHTS_FILE, VGG16_WEIGHTS_URL),
    "small": EncoderSpec(_vgg(small_encoder), "0.6M-parameter VGG-style encoder for CPU demos; "
                         "levels conv1-conv4"),
    "resnet50": EncoderSpec(_resnet(50), "dilated ResNet-50 up to layer3, layer4 on request "
                            "(frozen BN; panet/models/resnet.py)", *RESNET_WEIGHTS[50]),
    "resnet101": EncoderSpec(_resnet(101), "dilated ResNet-101 up to layer3, layer4 on request "
                             "(frozen BN; panet/models/resnet.py)", *RESNET_WEIGHTS[101]),
}


def torchvision_cache() -> Path:
    """Where torchvision keeps the ImageNet files it downloads: torch.hub.get_dir()/checkpoints."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def imagenet_weights(name: str) -> Optional[Path]:
    """torchvision's cached ImageNet file of encoder `name`, there or not (None: it has none)."""
    spec = ENCODERS[name]
    return None if spec.weights_file is None else torchvision_cache() / spec.weights_file


def imagenet_url(name: str) -> str:
    """The address the ImageNet file of encoder `name` is fetched from: under
    $PANET_TORCHVISION_URL (a mirror) when set, else torchvision's own address."""
    base = os.environ.get(TORCHVISION_URL_VARIABLE) or TORCHVISION_MODELS_URL
    return base.rstrip("/") + "/" + ENCODERS[name].weights_file


def fetch_imagenet_weights(name: str) -> Path:
    """torchvision's cached ImageNet file of encoder `name`, downloaded first when absent; a
    failed download is a one-line DownloadError saying where to put the file."""
    path = imagenet_weights(name)
    assert path is not None, "the settings refuse model.weights for an encoder without them"
    if path.is_file():
        return path
    url = imagenet_url(name)
    try:
        return download(url, path)
    except DownloadError as error:
        raise DownloadError(f"{error}; put torchvision's file {path.name} at {path} (from "
                            f"{url}), or set {TORCHVISION_URL_VARIABLE} to a base URL that "
                            "holds it") from None


def build_encoder(name: str, weights: Union[str, Path, None] = None,
                  levels: Sequence[str] = ()) -> nn.Module:
    """Encoder `name` of the registry from `weights` (a file) or at random, with `levels` built."""
    return ENCODERS[name].build(None if weights is None else Path(weights).expanduser(), levels)
