"""Dilated ResNet-50/101 encoders for "PANet with a ResNet", and their ImageNet weights.

Shapes: N images, 3 x H x W in (ImageNet-normalised, the same input as VGG-16: PROTOCOL §1),
C x h x w out.

Later few-shot papers (PFENet, HSNet, BAM, SSP) report ResNet-50/101 backbones and list PANet
re-implemented on them. The paper gives no such encoder; our reading of one:

- torchvision's ResNet with `replace_stride_with_dilation=[False, True, True]`: layer3 and layer4
  keep stride 1 and dilate their 3x3 convs by 2 and 4 instead; as torchvision builds it, the
  first block of a dilated stage keeps the previous stage's dilation (layer3: 1, then 2;
  layer4: 2, then 4). Output stride 8: 417 -> 209 (conv1) -> 105 (maxpool, layer1) -> 53
  (layer2) -> 53 (layer3, layer4), h = ceil(H / 8), VGG-16's 53 x 53.
- Prototypes and logits come from layer3's output, C = 1024, as SSP's baseline does; layer4,
  avgpool and fc are not built. `features="layer4"` adds layer4 (C = 2048, dilation 4).
  Either way the features end with the stage's ReLU (non-negative), where VGG-16's last conv
  has none (PROTOCOL §1); the cosine head takes them as they are.
- BatchNorm is frozen: every BN is the per-channel affine map given by ImageNet's running
  statistics and affine values, i.e. BatchNorm2d in eval mode; all convolutions train.
  PANet's episodes are batches of 2 to 6 images, mostly of one class: too few, and too alike,
  for batch statistics. Training-mode BN would also make an image's features depend on the
  other images of its batch, which the encode-once test path (`panet.evaluation.images`) and the
  batch-independence of results rule out. `FrozenBatchNorm2d` below holds its four tensors as
  buffers, like torchvision's class of that name: `model.parameters()`, hence SGD's momentum
  and weight decay, never sees them, and they keep BatchNorm2d's state-dict names (without
  `num_batches_tracked`), so torchvision files load by name. Unlike torchvision's, it stays in
  eval mode through `model.train()`, so its `training` flag says what it computes, and it
  lets this module be imported without torchvision (whose import adds ~1.5 s to every process,
  e.g. each `train.py` with VGG-16): torchvision's `Bottleneck` is imported when a ResNet is built.
- Random initialisation (no `weights`) follows torchvision's: kaiming-normal convs (fan_out,
  ReLU gain), identity BN. It serves tests and benchmarks; the encoder is meant to start from
  the ImageNet files below.
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
from panet.models.weights import (TORCHVISION_MODELS_URL, imagenet_hint, mismatch,
                                  read_state_dict, resnet_layout)

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
    """BatchNorm2d frozen in eval mode: N x C x h x w -> N x C x h x w,
    (x - running_mean) / sqrt(running_var + eps) * weight + bias per channel, the four C-vectors
    being buffers (no parameters, no batch statistics, no running updates)."""

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
    """One ResNet stage as torchvision builds it: `n_blocks` bottlenecks of width `planes` with
    4 * planes output channels, frozen BN; the first block has `stride`, dilation `dilation[0]`
    and a 1x1 projection shortcut, the others dilation `dilation[1]`."""
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
    N x 3 x H x W -> N x C x h x w, C = `out_channels` (1024, or 2048 with layer4).

    Submodule names are torchvision's (`conv1`, `bn1`, `layer1.0.conv1`, ...), so the state
    dict's keys are those of torchvision's file (see the module docstring for the reading).
    """

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
        """The named levels, shallow to deep: layer1 (with the stem: conv1, bn1, maxpool),
        layer2, layer3 and, when built, layer4."""
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
    """The dilated ResNet encoder of "PANet with a ResNet": depth 50 or 101, features from
    "layer3" (C = 1024) or "layer4" (C = 2048), output stride 8, frozen BN. Trainable
    parameters (the convolutions'), up to layer3: 8,512,704 (ResNet-50), 27,452,608 (ResNet-101).

    `weights`: torchvision's ImageNet file (`RESNET_WEIGHTS[depth]`, or any file with its keys),
    loaded by `load_torchvision_resnet`; None keeps torchvision's random initialisation.
    """
    encoder = DilatedResNet(depth, features)
    if weights is not None:
        load_torchvision_resnet(encoder, weights)
    return encoder


def load_torchvision_resnet(encoder: DilatedResNet, path: Union[str, Path]) -> List[str]:
    """Copy a torchvision ResNet state dict into `encoder` by name; return the ignored keys.

    Every tensor of the encoder (conv weights, the BN buffers) must be in the file with its
    shape. The file's `fc.*`, its `layer4.*` when the encoder stops at layer3, and BN's
    `num_batches_tracked` counters are ignored, and logged in one line; any other key is refused.
    Raises FileNotFoundError for an absent file; ValueError, in one line naming the expected
    file and its URL, for an unreadable file, another model's weights (VGG, another ResNet
    depth) or any missing, unexpected or misshapen tensor.
    """
    path = Path(path)
    name = f"ResNet-{encoder.depth}"
    how_to_get = imagenet_hint(name, RESNET_WEIGHTS[encoder.depth][0], f"resnet{encoder.depth}")
    state = read_state_dict(path, name, how_to_get, lambda state: is_resnet(state, encoder.depth))
    ours = encoder.state_dict()
    problems = [f"missing key {key}" for key in ours if key not in state]
    problems += [f"{key} has shape {tuple(state[key].shape)}, expected {tuple(tensor.shape)}"
                 for key, tensor in ours.items()
                 if key in state and state[key].shape != tensor.shape]
    ignored = [key for key in state if key not in ours and is_ignored(key, encoder)]
    problems += [f"unexpected key {key}" for key in state if key not in ours and key not in ignored]
    if problems:
        raise mismatch(path, name, problems, how_to_get)
    encoder.load_state_dict({key: state[key] for key in ours})
    if ignored:
        logger.info("%s: %s loaded; ignored %s", path.name, name, summarize_keys(ignored))
    return ignored


def is_resnet(state: Dict[str, torch.Tensor], depth: int) -> bool:
    """Whether a state dict has the bottleneck blocks of a torchvision ResNet of `depth` (in
    layer1-3: a file without layer4 still fits)."""
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
