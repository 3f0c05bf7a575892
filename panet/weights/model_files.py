"""One reader for every file a trained PANet comes from: our checkpoints and released snapshots.

    model_file = read_model_file("runs/7/checkpoints/final.pt")      # or a released .pth
    net = build_trained(model_file)                                  # its model, weights loaded
    size = model_input_size(model_file)                              # 417 for released files

Files are read as data only (`panet.base.safe_load`), the format told by what they hold: a dict
with `format_version` is a train.py checkpoint (`panet.weights.checkpoint`); a state dict named
`[module.]encoder.backbone.features.*` is a snapshot of the authors' released code
(`panet.weights.released`: tensors mapped to our names, shapes checked, setting read from its
path). Anything else is refused in one line saying what the file holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, NamedTuple, Optional, Tuple

import torch
from torch import nn

from panet.base.files import PathLike, file_sha256
from panet.base.safe_load import describe_contents
from panet.models.builder import model_with_weights
from panet.models.factory import DEFAULT_FACTORY, FactoryError
from panet.models.panet import ALPHA
from panet.settings import ModelSettings
from panet.weights.checkpoint import checkpoint_state, load_file_data
from panet.weights.released import (RELEASED_INPUT_SIZE, ReleasedSetting, is_released_state,
                                    parse_released_path, released_step, released_to_panet)

TORCHVISION_VGG_HEADS = {"features", "classifier"}  # keys of torchvision's vgg16 state dict


@dataclass(frozen=True)
class ModelFile:
    """A trained PANet read from a file: format "panet" (train.py's) or "released" (the
    authors'); state: our PANet state dict; config: a checkpoint's full config (None for released
    files); path_setting: the setting a released file's path names (or None); step (released:
    `<step>` of `<step>.pth`); sha256 of the file's bytes; origin: what a converted checkpoint
    was converted from; identity: `panet.run.identity.training_identity` (None when absent)."""

    path: Path
    format: str
    state: Dict[str, torch.Tensor]
    config: Optional[Dict[str, Any]]
    path_setting: Optional[ReleasedSetting]
    step: Optional[int]
    sha256: str
    origin: Optional[Dict[str, Any]] = None
    identity: Optional[Dict[str, Any]] = None


class Header(NamedTuple):
    """What a model file says of itself, its tensors unread: its format, the training step, the
    stored config and identity (train.py checkpoints) and the setting its path names (released
    snapshots)."""

    format: str
    step: Optional[int]
    config: Optional[Dict[str, Any]]
    path_setting: Optional[ReleasedSetting]
    identity: Optional[Dict[str, Any]] = None


def _read(path: Path, mmap: bool) -> Tuple[Header, Dict[str, torch.Tensor], Optional[dict]]:
    """The header, our PANet state dict and the origin of a model file (module docstring)."""
    obj = load_file_data(path, mmap=mmap)
    if isinstance(obj, dict) and "format_version" in obj:
        state = checkpoint_state(obj, path)
        return (Header("panet", state["step"], state["config"], None, state.get("identity")),
                state["model"], state.get("origin"))
    if isinstance(obj, Mapping) and is_released_state(obj):
        return (Header("released", released_step(path), None, parse_released_path(path)),
                released_to_panet(obj, path), None)
    heads = {str(key).split(".")[0] for key in obj} if isinstance(obj, Mapping) else set()
    hint = (" (torchvision's ImageNet VGG-16? it initialises an encoder: model.weights=, or "
            "predict.py --weights)") if heads and heads <= TORCHVISION_VGG_HEADS else ""
    raise ValueError(f"'{path}' holds {describe_contents(obj)}: not a panet checkpoint nor a "
                     f"released PANet snapshot{hint}")


def read_model_file(path: PathLike) -> ModelFile:
    """Read a train.py checkpoint or a released PANet snapshot (module docstring). Raises
    FileNotFoundError, or a one-line ValueError for pickled objects, a truncated or damaged
    file, a released snapshot with missing, unexpected or misshapen tensors, or any other
    content (named: "holds 13 tensors named conv1.*, ...")."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint '{path}' does not exist (expected a train.py "
                                "checkpoint or a released PANet snapshot)")
    header, state, origin = _read(path, mmap=False)
    return ModelFile(path, header.format, state, header.config, header.path_setting, header.step,
                     file_sha256(path), origin, header.identity)


def read_header(path: PathLike) -> Header:
    """The `Header` of a model file, its tensors mapped rather than read (a released snapshot's
    names and shapes are checked). Raises as `read_model_file`."""
    return _read(Path(path).expanduser(), mmap=True)[0]


def model_settings(model_file: ModelFile, factory: Optional[str] = None) -> ModelSettings:
    """The model settings of a model file (`weights` None: the weights are the file's): a
    checkpoint's stored ones, VGG-16 with alpha = 20 for a released snapshot. A file supplies
    settings, never code: a checkpoint made by another model.factory than PANet's is built only
    when `factory` names that one (else a one-line FactoryError saying what to add); a released
    snapshot is built by `factory` when given (its tensors must fit that model)."""
    if model_file.format == "released":
        return ModelSettings(encoder="vgg16", weights=None, alpha=ALPHA,
                             factory=factory or DEFAULT_FACTORY)
    stored = ModelSettings.from_config(model_file.config["model"]).replace(weights=None)
    if factory is None and stored.factory != DEFAULT_FACTORY:
        raise FactoryError(f"'{model_file.path}' holds a model made by model.factory="
                           f"{stored.factory!r}; a checkpoint supplies settings, never code to "
                           f"import: name that factory to run it (model.factory={stored.factory}, "
                           f"predict.py --factory {stored.factory})")
    if factory is not None and factory != stored.factory:
        raise FactoryError(f"'{model_file.path}' holds a model made by model.factory="
                           f"{stored.factory!r}, not {factory!r}")
    return stored


def build_trained(model_file: ModelFile, factory: Optional[str] = None) -> nn.Module:
    """The model of a model file holding its weights (`model_settings` says which)."""
    return model_with_weights(model_settings(model_file, factory), model_file.state)


def model_input_size(model_file: ModelFile) -> int:
    """The input size H = W the model was trained at: the checkpoint's data.size, 417 for a
    released snapshot."""
    if model_file.format == "released":
        return RELEASED_INPUT_SIZE
    return model_file.config["data"]["size"]
