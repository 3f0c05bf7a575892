"""One reader for every file a trained PANet comes from: our checkpoints and released snapshots.

    model_file = read_model_file("runs/7/checkpoints/final.pt")      # or a released .pth
    net = build_panet(model_file)                                    # PANet, weights loaded
    size = model_input_size(model_file)                              # 417 for released files

`read_model_file` reads the file as data only (`panet.base.safe_load`) and tells the two formats
apart by what they hold: a dict with `format_version` is a train.py checkpoint
(`panet.weights.checkpoint`); a state dict named like `[module.]encoder.backbone.features.*` is a
snapshot of the authors' released code (`panet.weights.released`), its tensors mapped to our names with
every shape checked and its setting read from its path. Anything else is refused in one line
saying what the file holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

import torch

from panet.weights.checkpoint import checkpoint_state, find_checkpoint, load_file_data, run_dir_of
from panet.models import PANet
from panet.models.builder import model_with_weights
from panet.models.panet import ALPHA
from panet.settings import ModelSettings
from panet.weights.released import (RELEASED_INPUT_SIZE, ReleasedSetting, is_released_state,
                       parse_released_path, released_step, released_to_panet)
from panet.base.safe_load import describe_contents, file_sha256

PathLike = Union[str, Path]
FORMATS = ("panet", "released")
TORCHVISION_VGG_HEADS = {"features", "classifier"}  # keys of torchvision's vgg16 state dict


@dataclass(frozen=True)
class ModelFile:
    """A trained PANet read from a file.

    format: "panet" (a train.py checkpoint) or "released" (the authors' snapshot);
    state: our PANet state dict (names of `PANet(vgg16_encoder())` for released files);
    config: the checkpoint's full config (data, model, train, ...), None for released files;
    path_setting: for released files, the setting their path names (None when it names none);
    step: training steps (released: `<step>` of `<step>.pth`, else None);
    sha256: hex SHA-256 of the file's bytes; origin: what a converted checkpoint was converted
    from (`scripts/convert_checkpoint.py`), else None.
    """

    path: Path
    format: str
    state: Dict[str, torch.Tensor]
    config: Optional[Dict[str, Any]]
    path_setting: Optional[ReleasedSetting]
    step: Optional[int]
    sha256: str
    origin: Optional[Dict[str, Any]] = None


def _not_a_model(path: Path, obj: Any) -> ValueError:
    hint = ""
    heads = {str(key).split(".")[0] for key in obj} if isinstance(obj, Mapping) else set()
    if heads and heads <= TORCHVISION_VGG_HEADS:
        hint = (" (torchvision's ImageNet VGG-16? it initialises an encoder: model.weights=, "
                "or predict.py --weights)")
    return ValueError(f"'{path}' holds {describe_contents(obj)}: not a panet checkpoint nor a "
                      f"released PANet snapshot{hint}")


def read_model_file(path: PathLike) -> ModelFile:
    """Read a train.py checkpoint or a released PANet snapshot (see the module docstring).

    Raises FileNotFoundError, or a one-line ValueError for a file holding pickled objects, a
    truncated or damaged file, a released snapshot with missing, unexpected or misshapen
    tensors, or any other content (named: "holds 13 tensors named conv1.*, ...").
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint '{path}' does not exist (expected a train.py "
                                "checkpoint or a released PANet snapshot)")
    obj = load_file_data(path)
    if isinstance(obj, dict) and "format_version" in obj:
        state = checkpoint_state(obj, path)
        return ModelFile(path, "panet", state["model"], state["config"], None, state["step"],
                         file_sha256(path), state.get("origin"))
    if isinstance(obj, Mapping) and is_released_state(obj):
        return ModelFile(path, "released", released_to_panet(obj, path), None,
                         parse_released_path(path), released_step(path), file_sha256(path))
    raise _not_a_model(path, obj)


def model_settings(model_file: ModelFile) -> ModelSettings:
    """The model settings of a model file: the checkpoint's stored ones; VGG-16 with alpha = 20
    for a released snapshot. (`weights` None: the weights are the file's.)"""
    if model_file.format == "released":
        return ModelSettings(encoder="vgg16", weights=None, alpha=ALPHA)
    return ModelSettings.from_config(model_file.config["model"]).replace(weights=None)


def build_panet(model_file: ModelFile) -> PANet:
    """The PANet of a model file, holding its weights."""
    return model_with_weights(model_settings(model_file), model_file.state)


@dataclass(frozen=True)
class CheckpointRef:
    """A checkpoint named by a setting (test.checkpoint, train.resume), resolved once: the file
    (a run folder names its final.pt or last.pt), its format, step, stored config (panet
    checkpoints) and the setting its path names (released snapshots). Its tensors are not read
    (`read_model_file(ref.path)` reads them)."""

    given: str
    path: Path
    format: str
    step: Optional[int]
    config: Optional[Dict[str, Any]]
    path_setting: Optional[ReleasedSetting]

    @property
    def run_dir(self) -> Optional[Path]:
        return run_dir_of(self.path)


def resolve_checkpoint(given: PathLike) -> CheckpointRef:
    """Resolve a checkpoint setting (see `CheckpointRef`). Raises FileNotFoundError or a one-line
    ValueError saying what the file holds when it is no model."""
    path = find_checkpoint(given)
    obj = load_file_data(path, mmap=True)
    if isinstance(obj, dict) and "format_version" in obj:
        state = checkpoint_state(obj, path)
        return CheckpointRef(str(given), path, "panet", state["step"], state["config"], None)
    if isinstance(obj, Mapping) and is_released_state(obj):
        released_to_panet(obj, path)  # every tensor named and shaped as released
        return CheckpointRef(str(given), path, "released", released_step(path), None,
                             parse_released_path(path))
    raise _not_a_model(path, obj)


def model_input_size(model_file: ModelFile) -> int:
    """The input size H = W the model was trained at: the checkpoint's data.size, 417 for a
    released snapshot."""
    if model_file.format == "released":
        return RELEASED_INPUT_SIZE
    return model_file.config["data"]["size"]
