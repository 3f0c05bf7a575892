"""The encoders PANet can run on, by config name (`model.encoder`): a registry.

Each entry builds an encoder mapping N x 3 x H x W (ImageNet-normalised) images to N x C x h x w
features, from an ImageNet weights file or from random weights (`weights=None`). Validation,
the config's comments, the tables and the Segmenter read this registry, so a new encoder is one
module defining its builder plus one line here (README, "Layout").
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Dict, Optional, Union

from torch import nn

from panet.models.resnet import RESNET_WEIGHTS, resnet_encoder
from panet.models.vgg import VGG16_WEIGHTS_FILE, VGG16_WEIGHTS_URL, small_encoder, vgg16_encoder

# where torchvision keeps the ImageNet files it downloads (torch.hub's checkpoint folder)
TORCHVISION_CACHE = Path("~/.cache/torch/hub/checkpoints")


@dataclass(frozen=True)
class EncoderSpec:
    """One encoder: `build(weights file or None) -> nn.Module`; `weights_file`: torchvision's
    ImageNet file for it (None: no pretrained weights exist), published at `weights_url`."""

    build: Callable[[Optional[Path]], nn.Module]
    description: str
    weights_file: Optional[str] = None
    weights_url: Optional[str] = None


ENCODERS: Dict[str, EncoderSpec] = {
    "vgg16": EncoderSpec(vgg16_encoder, "PANet's dilated VGG-16 (PROTOCOL §1)",
                         VGG16_WEIGHTS_FILE, VGG16_WEIGHTS_URL),
    "small": EncoderSpec(small_encoder, "0.6M-parameter VGG-style encoder for CPU demos"),
    "resnet50": EncoderSpec(partial(resnet_encoder, 50), "dilated ResNet-50 up to layer3 "
                            "(frozen BN; panet/models/resnet.py)", *RESNET_WEIGHTS[50]),
    "resnet101": EncoderSpec(partial(resnet_encoder, 101), "dilated ResNet-101 up to layer3 "
                             "(frozen BN; panet/models/resnet.py)", *RESNET_WEIGHTS[101]),
}


def imagenet_weights(name: str) -> Optional[Path]:
    """torchvision's cached ImageNet file of encoder `name` (None when it has none)."""
    spec = ENCODERS[name]
    return None if spec.weights_file is None else (TORCHVISION_CACHE / spec.weights_file
                                                   ).expanduser()


def build_encoder(name: str, weights: Union[str, Path, None] = None) -> nn.Module:
    """Encoder `name` of the registry (config key model.encoder, checked there), initialised
    from `weights` (a file) or at random."""
    return ENCODERS[name].build(None if weights is None else Path(weights).expanduser())
