"""Reading pretrained state-dict files for the encoders' loaders (VGG-16, ResNet-50/101): a file
meant for another encoder is refused in one line naming what it holds.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch

from panet.base.safe_load import describe_contents, load_data

TORCHVISION_MODELS_URL = "https://download.pytorch.org/models/"
TORCHVISION_URL_VARIABLE = "PANET_TORCHVISION_URL"  # another base URL holding the same files

# (bottleneck blocks?, blocks in layer1, layer2, layer3) -> name; layer4 is left out so that a
# file without it (an encoder saved up to layer3) is still recognised
RESNET_NAMES = {
    (False, (2, 2, 2)): "ResNet-18",
    (False, (3, 4, 6)): "ResNet-34",
    (True, (3, 4, 6)): "ResNet-50",
    (True, (3, 4, 23)): "ResNet-101",
    (True, (3, 8, 36)): "ResNet-152",
}
VGG_NAMES = {8: "VGG-11", 10: "VGG-13", 13: "VGG-16", 16: "VGG-19"}  # by number of convs


def imagenet_hint(name: str, file_name: str, builder: str) -> str:
    """What an encoder loader's errors end with: the ImageNet file of `name` expected, where it
    is published and cached (after torchvision's `builder`)."""
    return (f"Expected torchvision's ImageNet {name} weights, the file {file_name} (published at "
            f"{TORCHVISION_MODELS_URL}{file_name}, or under ${TORCHVISION_URL_VARIABLE} when "
            "set; torchvision caches it in torch.hub.get_dir()/checkpoints, i.e. "
            f"$TORCH_HOME/hub/checkpoints, after `torchvision.models.{builder}"
            "(weights='IMAGENET1K_V1')`, and model.weights='imagenet' downloads it there).")


def read_state_dict(path: Path, expected: str, how_to_get: str,
                    fits: Callable[[Dict[str, torch.Tensor]], bool]) -> Dict[str, torch.Tensor]:
    """The flat `name -> tensor` dict at `path`, read as data only (`load_data`), whose layout
    `fits` the encoder. One-line errors naming `expected` (e.g. "VGG-16") and ending with
    `how_to_get`: FileNotFoundError, or ValueError for an unreadable file, not a flat dict of
    tensors, or another model's (`describe_state_dict`)."""
    if not path.is_file():
        raise FileNotFoundError(f"{expected} weights not found at '{path}'. {how_to_get}")
    try:
        state = load_data(path, "torch state dict")
    except ValueError as error:  # truncated, damaged, not a torch file, pickled objects
        raise ValueError(f"Could not read {expected} weights: {error}. {how_to_get}") from None
    if not isinstance(state, dict):
        raise ValueError(f"'{path}' holds a {type(state).__name__}, not a state dict. {how_to_get}")
    not_tensors = [str(key) for key, value in state.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise ValueError(f"'{path}' is not a flat state dict of tensors (entries "
                         f"{', '.join(not_tensors[:3])} are not tensors: a training checkpoint?). "
                         f"{how_to_get}")
    if not fits(state):
        raise ValueError(f"'{path}' holds {describe_state_dict(state)}, not {expected}'s. "
                         f"{how_to_get}")
    return state


def load_by_name(path: Path, expected: str, file_name: str, builder: str,
                 fits: Callable[[Dict[str, torch.Tensor]], bool], ours: Dict[str, torch.Tensor],
                 ignored: Callable[[str], bool]) -> List[str]:
    """Copy the tensors of the `expected` file at `path` (`read_state_dict`; torchvision's
    `file_name`, made by `builder`: `imagenet_hint`) into `ours` (name -> the encoder's tensor)
    by name; returns the file's other keys, each `ignored`. A one-line ValueError names the first
    four missing, misshapen or unexpected tensors."""
    how_to_get = imagenet_hint(expected, file_name, builder)
    state = read_state_dict(path, expected, how_to_get, fits)
    problems = [f"missing key {key}" if key not in state else
                f"{key} has shape {tuple(state[key].shape)}, expected {tuple(tensor.shape)}"
                for key, tensor in ours.items()
                if key not in state or state[key].shape != tensor.shape]
    others = [key for key in state if key not in ours]
    problems += [f"unexpected key {key}" for key in others if not ignored(key)]
    if problems:
        more = f"; and {len(problems) - 4} more" if len(problems) > 4 else ""
        raise ValueError(f"'{path}' does not match {expected}: {'; '.join(problems[:4])}{more}. "
                         f"{how_to_get}")
    with torch.no_grad():
        for key, tensor in ours.items():
            tensor.copy_(state[key])
    return others


def resnet_layout(state: Dict[str, torch.Tensor]) -> Optional[Tuple[bool, Tuple[int, ...]]]:
    """(bottleneck blocks?, blocks in each of layer1..layer4 present) of a torchvision ResNet
    state dict; None when `state` is not one."""
    if "conv1.weight" not in state or "layer1.0.conv1.weight" not in state:
        return None
    blocks = []
    for stage in range(1, 5):
        indices = {int(m.group(1)) for key in state
                   if (m := re.match(rf"layer{stage}\.(\d+)\.", key))}
        if not indices:
            break
        blocks.append(max(indices) + 1)
    return "layer1.0.conv3.weight" in state, tuple(blocks)


def describe_state_dict(state: Dict[str, torch.Tensor]) -> str:
    """What a state dict holds, in a few words: "ResNet-50 weights (layer1-4: 3, 4, 6, 3
    blocks)", "VGG-16 weights (13 convs under features.N)", else `describe_contents`."""
    layout = resnet_layout(state)
    if layout is not None:
        bottleneck, blocks = layout
        name = RESNET_NAMES.get((bottleneck, blocks[:3]), "ResNet")
        counts = ", ".join(map(str, blocks))
        return f"{name} weights (layer1-{len(blocks)}: {counts} blocks)"
    vgg_convs = [key for key, value in state.items()
                 if re.fullmatch(r"features\.\d+\.weight", key) and value.dim() == 4]
    if vgg_convs:
        name = VGG_NAMES.get(len(vgg_convs), "VGG")
        with_bn = " with BatchNorm" if any(key.endswith("running_mean") for key in state) else ""
        return f"{name} weights{with_bn} ({len(vgg_convs)} convs under features.N)"
    return describe_contents(state)
