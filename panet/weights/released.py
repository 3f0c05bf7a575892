"""The authors' released PANet snapshots (github.com/kaixin96/PANet): recognise, map, write.

The released train.py saves `torch.save(model.state_dict())` of `nn.DataParallel(FewShotSeg)`:
26 tensors `module.encoder.backbone.features.<b>.<l>.{weight,bias}` (`module.` absent when
saved without DataParallel). `features` alternates the five conv stages (even blocks b = 0, 2,
4, 6, 8) with max-pools (odd blocks, no tensors); a stage is Conv2d, ReLU, Conv2d, ... so its
convs sit at the even positions l. Our `DilatedVGG` keeps the stages in `encoder.stages.<s>`,
also as Conv2d, ReLU, ... (the pool last), so released (b, l) is our (s = b / 2, l): the names
map one to one, and every shape is checked against our VGG-16 PANet.

No configuration is stored in a snapshot: the released test.py reads the setting from its path,
    .../PANet_<VOC|COCO>[_align]_sets_<fold>_<W>way_<S>shot_[train]/<run>/snapshots/<step>.pth
(`parse_released_path`). The released model's input size is 417 x 417 (`RELEASED_INPUT_SIZE`).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Mapping, NamedTuple, Optional

import torch

from panet.models import PANet, vgg16_encoder
from panet.base.files import PathLike

DATA_PARALLEL_PREFIX = "module."
RELEASED_ENCODER = "encoder.backbone.features."  # FewShotSeg.encoder.backbone (= Encoder).features
RELEASED_INPUT_SIZE = 417
# the directory name released train.py gives a run (its `exp_str`, under the experiment name)
RELEASED_RUN = re.compile(r"(?:PANet_)?(VOC|COCO)(_align)?_sets_(\d+)_(\d+)way_(\d+)shot"
                          r"(?:_\[train\]|_train)?")
RELEASED_PATH_FORM = ".../PANet_<VOC|COCO>[_align]_sets_<fold>_<W>way_<S>shot_[train]/<run>/" \
                     "snapshots/<step>.pth"
MAX_LISTED = 3  # problems named in one error line


class ReleasedSetting(NamedTuple):
    """The episode setting a released snapshot's path names (what released test.py reads)."""

    dataset: str  # "voc" | "coco": also the name of our named config for that dataset
    align: bool  # trained with PAR (`_align` in the name)
    fold: int  # `sets_<fold>`: our data.fold
    ways: int
    shots: int

    def named_configs(self) -> List[str]:
        """Our named configs of this setting: the dataset, then align or noalign."""
        return [self.dataset, "align" if self.align else "noalign"]

    def config_updates(self) -> Dict[str, Dict[str, int]]:
        """The config values beside `named_configs`: data.fold, data.ways, data.shots."""
        return {"data": {"fold": self.fold, "ways": self.ways, "shots": self.shots}}

    def run_name(self) -> str:
        """The run folder name released train.py gives this setting (its test.py parses it)."""
        return (f"PANet_{self.dataset.upper()}{'_align' if self.align else ''}_sets_{self.fold}_"
                f"{self.ways}way_{self.shots}shot_[train]")


RELEASED_DATASETS = {"pascal": "voc", "coco": "coco"}  # our data.name -> released dataset


def setting_of_config(config: Mapping[str, Any]) -> Optional[ReleasedSetting]:
    """The released setting of one of our run configs, or None when the released code has no
    such setting (another dataset or input size, a PAR weight other than 0 or 1)."""
    data, align_weight = config["data"], config["train"]["align_weight"]
    if (data["name"] not in RELEASED_DATASETS or data["size"] != RELEASED_INPUT_SIZE
            or align_weight not in (0, 1)):
        return None
    return ReleasedSetting(RELEASED_DATASETS[data["name"]], align_weight == 1, data["fold"],
                           data["ways"], data["shots"])


def parse_released_path(path: PathLike) -> Optional[ReleasedSetting]:
    """The setting named by a released snapshot's path (its run folder's name, the deepest
    component that has the released form; the file's own stem counts too), or None."""
    path = Path(path)
    for part in (path.stem, *reversed(path.parent.parts)):
        match = RELEASED_RUN.fullmatch(part)
        if match:
            dataset, align, fold, ways, shots = match.groups()
            return ReleasedSetting(dataset.lower(), align is not None, int(fold), int(ways),
                                   int(shots))
    return None


def released_step(path: PathLike) -> Optional[int]:
    """The training step of a released snapshot, `<step>` of its `<step>.pth` name, or None."""
    stem = Path(path).stem
    return int(stem) if stem.isdigit() else None


@lru_cache(maxsize=1)
def panet_vgg16_shapes() -> Dict[str, torch.Size]:
    """Name -> shape of every tensor of our VGG-16 PANet (built on the meta device: no memory)."""
    with torch.device("meta"):
        return {name: tensor.shape for name, tensor in PANet(vgg16_encoder()).state_dict().items()}


@lru_cache(maxsize=1)
def released_names() -> Dict[str, str]:
    """Our VGG-16 PANet's tensor names -> the released ones (with DataParallel's `module.`): our
    encoder.stages.<s>.<l> is released block b = 2 s (module docstring)."""
    names = {}
    for ours in panet_vgg16_shapes():
        _, _, stage, position, kind = ours.split(".")
        names[ours] = f"{DATA_PARALLEL_PREFIX}{RELEASED_ENCODER}{2 * int(stage)}.{position}.{kind}"
    return names


def is_released_state(state: Mapping[Any, Any]) -> bool:
    """Whether every key of a loaded dict is under `[module.]encoder.backbone.features.` (the
    layout inside is checked by `released_to_panet`)."""
    return bool(state) and all(
        isinstance(key, str) and key.removeprefix(DATA_PARALLEL_PREFIX).startswith(RELEASED_ENCODER)
        for key in state)


def _refuse(where: PathLike, what: str, problems: List[str]) -> ValueError:
    listed = "; ".join(problems[:MAX_LISTED])
    more = f" (and {len(problems) - MAX_LISTED} more)" if len(problems) > MAX_LISTED else ""
    return ValueError(f"'{where}': {what}: {listed}{more}")


def _shape_problem(name: str, tensor: Any, expected: torch.Size) -> Optional[str]:
    if not isinstance(tensor, torch.Tensor):
        return f"{name} is a {type(tensor).__name__}, not a tensor"
    if tensor.shape != expected:
        return f"{name} has shape {tuple(tensor.shape)}, expected {tuple(expected)}"
    return None


def released_to_panet(state: Mapping[str, Any], where: PathLike = "snapshot"
                      ) -> Dict[str, torch.Tensor]:
    """Our VGG-16 PANet state dict of a released snapshot's (the same tensors, renamed). Raises
    a one-line ValueError naming missing, unexpected and misshapen tensors (`where`: the
    file)."""
    expected = panet_vgg16_shapes()
    ours_of = {released: ours for ours, released in released_names().items()}
    ours: Dict[str, torch.Tensor] = {}
    problems = []
    for key, tensor in state.items():
        name = ours_of.get(DATA_PARALLEL_PREFIX + key.removeprefix(DATA_PARALLEL_PREFIX))
        if name not in expected:
            problems.append(f"unexpected tensor {key}")
        elif name in ours:
            problems.append(f"{key} given twice (with and without {DATA_PARALLEL_PREFIX})")
        else:
            problem = _shape_problem(key, tensor, expected[name])
            if problem:
                problems.append(problem)
            ours[name] = tensor
    problems += [f"missing {released_names()[name]}" for name in expected if name not in ours]
    if problems:
        raise _refuse(where, "not the released PANet's VGG-16 layout", problems)
    return ours


def panet_to_released(state: Mapping[str, Any], where: PathLike = "checkpoint"
                      ) -> "OrderedDict[str, torch.Tensor]":
    """The released snapshot state dict (`module.` names, in the order of
    `nn.DataParallel(FewShotSeg).state_dict()`) of our VGG-16 PANet's. Raises a one-line
    ValueError when `state` is not exactly a VGG-16 PANet."""
    expected = panet_vgg16_shapes()
    problems = [f"unexpected tensor {name}" for name in state if name not in expected]
    problems += [f"missing {name}" for name in expected if name not in state]
    problems += [p for p in (_shape_problem(name, state[name], shape)
                             for name, shape in expected.items() if name in state) if p]
    if problems:
        raise _refuse(where, "only a VGG-16 PANet has a released counterpart", problems)
    return OrderedDict((released_names()[name], state[name]) for name in expected)
