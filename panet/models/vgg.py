"""The DeepLab-style dilated VGG-16 encoder of PANet (PROTOCOL §1), its ImageNet weights, and
the small VGG-style encoder of the CPU demos.

Shapes: N images, 3 x H x W in, C x h x w out. For VGG-16, C = 512 and h = ceil(H / 8)
(417 -> 209 -> 105 -> 53 -> 53: three 3x3 stride-2 pools, then a 3x3 stride-1 pool).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence, Union

import torch
from torch import nn

from panet.models.weights import TORCHVISION_MODELS_URL, load_by_name, resnet_layout

VGG16_WEIGHTS_FILE = "vgg16-397923af.pth"
VGG16_WEIGHTS_URL = TORCHVISION_MODELS_URL + VGG16_WEIGHTS_FILE


class Block(NamedTuple):
    """One stage of a VGG-style encoder: `n_convs` 3x3 convolutions, then an optional pool."""

    n_convs: int
    channels: int
    dilation: int = 1
    pool_stride: Optional[int] = None  # 3x3 max-pool with padding 1 after the block; None: no pool


# PROTOCOL §1. The last conv has no ReLU: the prototypes live in a signed feature space.
VGG16_DILATED = (
    Block(2, 64, pool_stride=2),
    Block(2, 128, pool_stride=2),
    Block(3, 256, pool_stride=2),
    Block(3, 512, pool_stride=1),
    Block(3, 512, dilation=2),
)

# Not the paper's: a 0.6M-parameter encoder (output stride 4) for CPU demos and toy-scale runs.
SMALL_DILATED = (
    Block(2, 32, pool_stride=2),
    Block(2, 64, pool_stride=2),
    Block(2, 128, pool_stride=1),
    Block(2, 128, dilation=2),
)

# Index in torchvision's `vgg16().features` of each of our 13 convs, in order.
TORCHVISION_VGG16_CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)


class DilatedVGG(nn.Module):
    """A VGG-style fully convolutional encoder of `blocks`: N x 3 x H x W -> N x C x h x w.
    3x3 convs with bias, padding = dilation, each but the last followed by a ReLU;
    kaiming-normal weights (fan_in), PyTorch's default biases, as in the released code."""

    def __init__(self, blocks: Sequence[Block] = VGG16_DILATED, in_channels: int = 3):
        super().__init__()
        stages = []
        for block in blocks:
            layers: List[nn.Module] = []
            for _ in range(block.n_convs):
                layers += [
                    nn.Conv2d(in_channels, block.channels, 3, padding=block.dilation,
                              dilation=block.dilation),
                    nn.ReLU(inplace=True),
                ]
                in_channels = block.channels
            if block.pool_stride is not None:
                layers.append(nn.MaxPool2d(3, stride=block.pool_stride, padding=1))
            stages.append(nn.Sequential(*layers))
        if isinstance(stages[-1][-1], nn.ReLU):  # no ReLU after the final conv
            stages[-1] = nn.Sequential(*list(stages[-1])[:-1])
        self.stages = nn.Sequential(*stages)
        self.out_channels = in_channels
        for conv in self.convs():
            nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")

    @property
    def levels(self) -> Dict[str, nn.Module]:
        """The named levels (stages), shallow to deep: conv1 ... conv5 for VGG-16."""
        return {f"conv{i + 1}": stage for i, stage in enumerate(self.stages)}

    def forward(self, images: torch.Tensor, levels: Optional[Sequence[str]] = None):
        """N x 3 x H x W (ImageNet-normalised) -> N x C x h x w; with `levels` (names of
        `self.levels`), the dict of those stages' outputs (`run_levels`)."""
        if levels is None:
            return self.stages(images)
        return run_levels(self.levels, images, levels)

    def convs(self) -> List[nn.Conv2d]:
        """The convolutions in order (13 for VGG-16)."""
        return [m for m in self.modules() if isinstance(m, nn.Conv2d)]


def run_levels(named: Dict[str, nn.Module], x: torch.Tensor, levels: Sequence[str]
               ) -> Dict[str, torch.Tensor]:
    """The outputs of `levels`, by name, of the modules of `named` run in order on `x`."""
    deepest = max(list(named).index(level) for level in levels)
    found = {}
    for name, module in list(named.items())[:deepest + 1]:
        x = module(x)
        if name in levels:
            found[name] = x
    return found


def vgg16_encoder(weights: Union[str, Path, None] = None) -> DilatedVGG:
    """PANet's encoder (PROTOCOL §1): dilated VGG-16, 14,714,688 parameters, output stride 8,
    from torchvision's ImageNet file `weights` (`load_torchvision_vgg16`) or at random."""
    encoder = DilatedVGG(VGG16_DILATED)
    if weights is not None:
        load_torchvision_vgg16(encoder, weights)
    return encoder


def small_encoder(weights: Union[str, Path, None] = None) -> DilatedVGG:
    """The CPU-scale encoder (`SMALL_DILATED`), random init only (settings check weights)."""
    assert weights is None, "the 'small' encoder has no pretrained weights"
    return DilatedVGG(SMALL_DILATED)


def load_torchvision_vgg16(encoder: DilatedVGG, path: Union[str, Path]) -> None:
    """Copy the 13 convs of torchvision's VGG-16 `features` into `encoder`, by name. Raises
    FileNotFoundError for an absent file, a one-line ValueError naming the expected file for
    another model's weights, missing keys or other shapes."""
    convs = encoder.convs()
    assert len(convs) == len(TORCHVISION_VGG16_CONVS), "VGG-16 weights fit VGG-16's 13 convs"
    ours = {f"features.{index}.{name}": getattr(conv, name)
            for conv, index in zip(convs, TORCHVISION_VGG16_CONVS) for name in ("weight", "bias")}
    load_by_name(Path(path), "VGG-16", VGG16_WEIGHTS_FILE, "vgg16",
                 lambda state: resnet_layout(state) is None, ours, ignored=lambda key: True)
