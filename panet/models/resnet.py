"""Dilated ResNet-50/101 encoders for "PANet with a ResNet", and their ImageNet weights.

Shapes: N images, 3 x H x W in (ImageNet-normalised, as VGG-16: PROTOCOL §1), C x h x w out.
The paper gives no such encoder (later papers, PFENet, HSNet, BAM, SSP, list PANet on one); our
reading:

- torchvision's ResNet with `replace_stride_with_dilation=[False, True, True]` (layer3: dilation
  1, then 2; layer4: 2, then 4): output stride 8, h = ceil(H / 8), VGG-16's 53 x 53 at 417.
- Features from layer3, C = 1024, as SSP's baseline; layer4 (C = 2048) only on request; avgpool
  and fc not built. They end with a ReLU (VGG-16's last conv has none); the head takes them so.
- BatchNorm frozen (ImageNet's statistics, eval mode); all convolutions train. Episodes of 2 to 6
  alike images are too few for batch statistics, and training-mode BN would make an image's
  features depend on its batch, which the encode-once test path rules out. `FrozenBatchNorm2d`
  holds buffers under BatchNorm2d's names (so torchvision files load by name and SGD never sees
  them), stays in eval mode through `model.train()`, and spares importing torchvision (~1.5 s)
  until a ResNet is built.
- Random initialisation as torchvision's (kaiming-normal fan_out convs, identity BN), for tests
  and benchmarks.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from panet.models.vgg import run_levels
from panet.models.weights import TORCHVISION_MODELS_URL, load_by_name, resnet_layout

RESNET50_WEIGHTS_FILE = "resnet50-0676ba61.pth"  # torchvision's ResNet50_Weights.IMAGENET1K_V1
RESNET50_WEIGHTS_URL = TORCHVISION_MODELS_URL + RESNET50_WEIGHTS_FILE
RESNET101_WEIGHTS_FILE = "resnet101-63fe2227.pth"  # ResNet101_Weights.IMAGENET1K_V1
RESNET101_WEIGHTS_URL = TORCHVISION_MODELS_URL + RESNET101_WEIGHTS_FILE
RESNET_WEIGHTS = {50: (RESNET50_WEIGHTS_FILE, RESNET50_WEIGHTS_URL),
                  101: (RESNET101_WEIGHTS_FILE, RESNET101_WEIGHTS_URL)}

STAGE_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}  # bottleneck blocks of layer1..layer4
FEATURES = {"layer3": 1024, "layer4": 2048}  # where the features are taken -> C

logger = logging.getLogger(__name__)


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d frozen in eval mode, its four C-vectors buffers: N x C x h x w ->
    N x C x h x w."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps  # BatchNorm2d's default, which torchvision's ResNets use
        for name, value in (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0),
                            ("running_var", 1.0)):
            self.register_buffer(name, torch.full((channels,), value))
        self.train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=False, eps=self.eps)

    def train(self, mode: bool = True) -> "FrozenBatchNorm2d":
        """Stay in eval mode whatever `mode` is: this BN is frozen."""
        return super().train(False)

    def extra_repr(self) -> str:
        return f"{self.running_mean.numel()}, eps={self.eps}"


def bottleneck_stage(in_channels: int, planes: int, n_blocks: int, stride: int = 1,
                     dilation: Tuple[int, int] = (1, 1)) -> nn.Sequential:
    """One ResNet stage as torchvision builds it: `n_blocks` bottlenecks, frozen BN; the first
    with `stride`, dilation `dilation[0]` and a projection shortcut, the others `dilation[1]`."""
    from torchvision.models.resnet import Bottleneck  # here: see the module docstring

    out_channels = planes * Bottleneck.expansion
    shortcut = nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
        FrozenBatchNorm2d(out_channels),
    )
    first = Bottleneck(in_channels, planes, stride, shortcut, dilation=dilation[0],
                       norm_layer=FrozenBatchNorm2d)
    others = [Bottleneck(out_channels, planes, dilation=dilation[1], norm_layer=FrozenBatchNorm2d)
              for _ in range(n_blocks - 1)]
    return nn.Sequential(first, *others)


class DilatedResNet(nn.Module):
    """torchvision's ResNet-50/101 up to layer3 (or layer4), output stride 8, frozen BN:
    N x 3 x H x W -> N x C x h x w, C = `out_channels`; submodule names are torchvision's."""

    def __init__(self, depth: int = 50, features: str = "layer3"):
        super().__init__()
        if depth not in STAGE_BLOCKS:
            raise ValueError(f"ResNet depth {depth!r} is not built here: choose 50 or 101")
        if features not in FEATURES:
            raise ValueError(f"features={features!r}: choose 'layer3' or 'layer4'")
        blocks = STAGE_BLOCKS[depth]
        self.depth = depth
        self.features = features
        self.out_channels = FEATURES[features]
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = FrozenBatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = bottleneck_stage(64, 64, blocks[0])
        self.layer2 = bottleneck_stage(256, 128, blocks[1], stride=2)
        self.layer3 = bottleneck_stage(512, 256, blocks[2], dilation=(1, 2))
        self.layer4 = (bottleneck_stage(1024, 512, blocks[3], dilation=(2, 4))
                       if features == "layer4" else None)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    @property
    def levels(self) -> Dict[str, nn.Module]:
        """The named levels, shallow to deep: layer1 (with the stem), layer2, layer3, layer4."""
        stem = nn.Sequential(self.conv1, self.bn1, self.relu, self.maxpool, self.layer1)
        found = {"layer1": stem, "layer2": self.layer2, "layer3": self.layer3}
        return found if self.layer4 is None else {**found, "layer4": self.layer4}

    def forward(self, images: torch.Tensor, levels: Optional[Sequence[str]] = None):
        """N x 3 x H x W (ImageNet-normalised) -> N x C x h x w, h = ceil(H / 8) (layer3's or
        layer4's output); with `levels`, the dict of those levels' outputs (layer1: C = 256 at
        H / 4, layer2: 512, layer3: 1024, layer4: 2048, all three at H / 8)."""
        if levels is not None:
            return run_levels(self.levels, images, levels)
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))  # N x 64 x H/4 x W/4
        x = self.layer3(self.layer2(self.layer1(x)))  # N x 1024 x h x w
        return x if self.layer4 is None else self.layer4(x)  # N x 2048 x h x w


def resnet_encoder(depth: int, weights: Union[str, Path, None] = None,
                   features: str = "layer3") -> DilatedResNet:
    """The dilated ResNet encoder (`DilatedResNet`) from torchvision's ImageNet file `weights`
    (`load_torchvision_resnet`) or at random. Trainable parameters up to layer3: 8,512,704
    (ResNet-50), 27,452,608 (ResNet-101)."""
    encoder = DilatedResNet(depth, features)
    if weights is not None:
        load_torchvision_resnet(encoder, weights)
    return encoder


def load_torchvision_resnet(encoder: DilatedResNet, path: Union[str, Path]) -> List[str]:
    """Copy a torchvision ResNet state dict into `encoder` by name; return the ignored keys
    (`is_ignored`, logged in one line). Raises FileNotFoundError for an absent file, a one-line
    ValueError naming the expected file for another model's weights or any missing, unexpected
    or misshapen tensor."""
    path, name = Path(path), f"ResNet-{encoder.depth}"
    ignored = load_by_name(path, name, RESNET_WEIGHTS[encoder.depth][0], f"resnet{encoder.depth}",
                           lambda state: is_resnet(state, encoder.depth), encoder.state_dict(),
                           lambda key: is_ignored(key, encoder))
    if ignored:
        logger.info("%s: %s loaded; ignored %s", path.name, name, summarize_keys(ignored))
    return ignored


def is_resnet(state: Dict[str, torch.Tensor], depth: int) -> bool:
    """Whether a state dict has the blocks of a ResNet of `depth` in layer1-3."""
    layout = resnet_layout(state)
    return layout is not None and layout[0] and layout[1][:3] == STAGE_BLOCKS[depth][:3]


def is_ignored(key: str, encoder: DilatedResNet) -> bool:
    """Whether a key of a torchvision ResNet file is legitimately absent from `encoder`."""
    return (key.startswith("fc.") or key.endswith(".num_batches_tracked")
            or (encoder.layer4 is None and key.startswith("layer4.")))


def summarize_keys(keys: Sequence[str]) -> str:
    """'fc.* (2), layer4.* (30), num_batches_tracked (53)': keys counted by group."""
    groups: Dict[str, int] = Counter(
        "num_batches_tracked" if key.endswith(".num_batches_tracked")
        else re.sub(r"\..*", ".*", key) for key in keys)
    return ", ".join(f"{group} ({count})" for group, count in sorted(groups.items()))
