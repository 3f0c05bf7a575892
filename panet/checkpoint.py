"""Training checkpoints: everything needed to continue a run exactly, written atomically.

A checkpoint holds the model, optimizer and scheduler states, the step reached, every random
generator's state (Python, numpy, torch CPU and CUDA) and the run's full configuration, so that
`test.py` never has to guess the episode setting of a model.
"""

from __future__ import annotations

import io
import random
import shlex
from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy as np
import torch

from .diskspace import DiskFullError, write_atomically

FORMAT_VERSION = 1
CHECKPOINT_DIR = "checkpoints"  # <run dir>/checkpoints/{last,snapshot_<step>,final}.pt


def rng_states() -> Dict[str, Any]:
    """The state of every random generator a run may draw from."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_states(states: Dict[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def checkpoint_state(*, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     scheduler, config: Dict[str, Any]) -> Dict[str, Any]:
    """What a checkpoint holds (`save_checkpoint` writes it)."""
    return {
        "format_version": FORMAT_VERSION,
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng_states(),
        "config": config,
    }


def save_checkpoint(path: Union[str, Path], *, step: int, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, scheduler, config: Dict[str, Any]) -> Path:
    """Write a checkpoint at `path` atomically (`panet.files.atomic_write`: a crash mid-write
    leaves the old file intact; the file gets the umask's mode, 0644 by default). A full disk
    raises `panet.diskspace.DiskFullError` saying how to continue the run."""
    # Serialised in memory first, so that a full disk can say how much the file needs.
    data = io.BytesIO()
    torch.save(checkpoint_state(step=step, model=model, optimizer=optimizer,
                                scheduler=scheduler, config=config), data)
    try:
        return write_atomically(path, data.getbuffer())
    except DiskFullError as full:
        raise full.then(_after_full_disk(Path(path))) from None


def _after_full_disk(path: Path) -> str:
    """What to do when checkpoint `path` did not fit: continue from the run's newest one."""
    target = run_dir_of(path) or path
    try:
        find_checkpoint(target)
    except FileNotFoundError:
        return "no checkpoint was saved yet: free some space, then run the same command again"
    return ("free some space, then continue with: python train.py with "
            f"train.resume={shlex.quote(str(target))}")


def load_checkpoint(path: Union[str, Path], *, mmap: bool = False) -> Dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint` (tensors on the CPU). It unpickles the
    RNG states, so load only checkpoints you trust. `mmap=True` maps the tensors instead of
    reading them: a cheap way to look at the step and config of a large checkpoint."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint '{path}' does not exist (train.py writes them to "
                                "<run dir>/checkpoints/{last,snapshot_<step>,final}.pt)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
    except Exception as error:
        raise ValueError(f"could not read checkpoint '{path}': {error}") from error
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"'{path}' is not a panet checkpoint (format {FORMAT_VERSION})")
    return state


def load_checkpoint_header(path: Union[str, Path]) -> Dict[str, Any]:
    """The step and config of a checkpoint, without reading its tensors."""
    state = load_checkpoint(path, mmap=True)
    return {"step": state["step"], "config": state["config"]}


def find_checkpoint(path: Union[str, Path]) -> Path:
    """The checkpoint file that `path` names: the file itself, or for a run folder (or its
    checkpoints/ folder) the one of checkpoints/final.pt and last.pt with the most steps
    (final.pt on a tie). Raises FileNotFoundError saying what was looked for."""
    path = Path(path).expanduser()
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError("no such file or folder (expected a checkpoint .pt file or a "
                                "run folder holding checkpoints/final.pt or last.pt)")
    folder = path / CHECKPOINT_DIR if (path / CHECKPOINT_DIR).is_dir() else path
    candidates = [folder / name for name in ("final.pt", "last.pt") if (folder / name).is_file()]
    if not candidates:
        raise FileNotFoundError(f"a folder without {folder / 'final.pt'} or "
                                f"{folder / 'last.pt'}: train.py has not saved a checkpoint there")
    return max(candidates, key=lambda candidate: load_checkpoint_header(candidate)["step"])


def run_dir_of(checkpoint: Union[str, Path]) -> Optional[Path]:
    """The run folder a checkpoint belongs to (<run>/checkpoints/<name>.pt), else None."""
    checkpoint = Path(checkpoint).expanduser()
    return checkpoint.parent.parent if checkpoint.parent.name == CHECKPOINT_DIR else None
