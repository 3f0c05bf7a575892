"""The encoders PANet can run on, by config name (`model.encoder`): a registry.

Each entry builds an encoder mapping N x 3 x H x W (ImageNet-normalised) images to N x C x h x w
features, from an ImageNet weights file or from random weights (`weights=None`). Validation,
the config's comments, the tables and the Segmenter read this registry, so a new encoder is one
module defining its builder plus one line here (README, "Layout").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Union

from torch import nn

from panet.models.resnet import RESNET_WEIGHTS, resnet_encoder
from panet.models.vgg import VGG16_WEIGHTS_FILE, VGG16_WEIGHTS_URL, small_encoder, vgg16_encoder

# where torchvision keeps the ImageNet files it downloads (torch.hub's checkpoint folder)
TORCHVISION_CACHE = Path("~/.cache/torch/hub/checkpoints")


@dataclass(frozen=True)
class EncoderSpec:
    """One encoder: `build(weights file or None, levels) -> nn.Module`, where `levels` names the
    feature levels a method asks for (a ResNet builds layer4 only when asked); `weights_file`:
    torchvision's ImageNet file for it (None: no pretrained weights exist), published at
    `weights_url`. Every encoder maps N x 3 x H x W to N x C x h x w features, and to a dict of
    named levels (its `levels`) when called with `levels=`."""

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


def imagenet_weights(name: str) -> Optional[Path]:
    """torchvision's cached ImageNet file of encoder `name` (None when it has none)."""
    spec = ENCODERS[name]
    return None if spec.weights_file is None else (TORCHVISION_CACHE / spec.weights_file
                                                   ).expanduser()


def build_encoder(name: str, weights: Union[str, Path, None] = None,
                  levels: Sequence[str] = ()) -> nn.Module:
    """Encoder `name` of the registry (config key model.encoder, checked there), initialised
    from `weights` (a file) or at random, with every level of `levels` built."""
    return ENCODERS[name].build(None if weights is None else Path(weights).expanduser(), levels)
