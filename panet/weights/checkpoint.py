"""Training checkpoints: everything needed to continue a run exactly, written atomically: the
model, optimizer and scheduler states, the step, every random generator's state (Python, numpy,
torch CPU and CUDA) and the run's full configuration (test.py never guesses a model's setting).

Format 2 holds only tensors and plain data, read with `torch.load(weights_only=True)`
(`panet.base.safe_load`): naming a crafted file runs nothing. Format 1 pickled numpy's state and
sacred's config objects; it is refused with the command that converts it (`UPGRADE_COMMAND`).
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np
import torch

from panet.base.files import write_atomically
from panet.base.safe_load import UnsafeFileError, describe_contents, load_data, plain_data
from panet.weights.released import is_released_state

FORMAT_VERSION = 2
# what format-1 checkpoints pickled beyond data: numpy's RNG state, sacred's config containers
FORMAT_1_OBJECTS = ("numpy.", "sacred.config.custom_containers.")
UPGRADE_COMMAND = "python scripts/convert_checkpoint.py --upgrade --trust-pickle"
CHECKPOINT_KEYS = ("step", "model", "optimizer", "scheduler", "rng", "config")


def rng_states() -> Dict[str, Any]:
    """`rng_data` of the current state of every random generator a run may draw from."""
    return rng_data(random.getstate(), np.random.get_state(), torch.get_rng_state(),
                    torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [])


def rng_data(python: tuple, numpy_state: tuple, torch_state: torch.Tensor,
             cuda: List[torch.Tensor]) -> Dict[str, Any]:
    """Generator states as tensors and plain data.

    python: `random.getstate()` = (version, 625 ints, gauss_next) -> dict of an int, a list and
    a float or None; numpy: the legacy global `np.random.get_state()` = (name, 624 uint32 keys,
    pos, has_gauss, cached_gaussian) -> dict with the keys as a uint32 tensor; torch: the CPU
    generator's ByteTensor; cuda: one ByteTensor per GPU (empty without CUDA).
    """
    version, internal, gauss_next = python
    name, keys, pos, has_gauss, cached_gaussian = numpy_state
    return {
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
        "numpy": {"name": str(name), "keys": torch.from_numpy(np.array(keys, dtype=np.uint32)),
                  "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached_gaussian)},
        "torch": torch_state,
        "cuda": list(cuda),
    }


def restore_rng_states(states: Dict[str, Any]) -> None:
    """Set every generator to the state `rng_states` returned (the next draws are those that
    followed the save). Each visible GPU i gets the state saved from GPU i, if any (a run may
    resume on fewer or more GPUs)."""
    python, numpy_state = states["python"], states["numpy"]
    random.setstate((python["version"], tuple(python["internal"]), python["gauss_next"]))
    np.random.set_state((numpy_state["name"], numpy_state["keys"].numpy().astype(np.uint32),
                         numpy_state["pos"], numpy_state["has_gauss"],
                         numpy_state["cached_gaussian"]))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        for device, state in enumerate(states["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(state, device)


def checkpoint_contents(*, step: int, model: torch.nn.Module,
                        optimizer: torch.optim.Optimizer, scheduler, config: Dict[str, Any],
                        origin: Optional[Dict[str, Any]] = None,
                        identity: Optional[Dict[str, Any]] = None, scaler=None
                        ) -> Dict[str, Any]:
    """What `save_checkpoint` writes; `config`, `origin` (where converted weights came from)
    and `identity` (`panet.run.identity.training_identity`) as plain data; `scaler`: an fp16
    run's `torch.amp.GradScaler`."""
    state = {"format_version": FORMAT_VERSION, "step": step, "model": model.state_dict(),
             "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "rng": rng_states(), "config": plain_data(config, "config")}
    state.update({key: plain_data(value, key) for key, value in
                  (("origin", origin), ("identity", identity)) if value is not None})
    if scaler is not None:
        state["scaler"] = scaler.state_dict()
    return state


def save_checkpoint(path: Union[str, Path], **contents: Any) -> Path:
    """Write `checkpoint_contents(**contents)` at `path` atomically (a crash mid-write leaves
    the old file intact). A full disk raises `DiskFullError`."""
    data = io.BytesIO()  # serialised in memory first, so that a full disk can say how much
    torch.save(checkpoint_contents(**contents), data)
    return write_atomically(path, data.getbuffer())


def checkpoint_state(obj: Any, path: Union[str, Path]) -> Dict[str, Any]:
    """`obj`, what `path` held, if it is a checkpoint of the current format; else a one-line
    ValueError saying what it holds instead."""
    if isinstance(obj, dict) and "format_version" in obj:
        if obj["format_version"] != FORMAT_VERSION:
            raise ValueError(f"'{path}' is a panet checkpoint of format {obj['format_version']!r}; "
                             f"this code reads format {FORMAT_VERSION} (format 1 converts with "
                             f"{UPGRADE_COMMAND})")
        missing = [key for key in CHECKPOINT_KEYS if key not in obj]
        if missing or not isinstance(obj["config"], dict):
            raise ValueError(f"'{path}' is a damaged panet checkpoint (missing or wrong: "
                             f"{', '.join(missing) or 'config'})")
        return obj
    if isinstance(obj, dict) and is_released_state(obj):
        raise ValueError(f"'{path}' is a released PANet snapshot, not a train.py checkpoint: "
                         f"convert it with python scripts/convert_checkpoint.py --to panet "
                         f"'{path}' OUT.pt")
    raise ValueError(f"'{path}' holds {describe_contents(obj)}: not a panet checkpoint")


def load_file_data(path: Path, *, mmap: bool = False) -> Any:
    """`panet.base.safe_load.load_data` of a checkpoint; a refused file whose pickled objects
    are a format-1 checkpoint's is refused with the command converting it."""
    try:
        return load_data(path, "checkpoint", mmap=mmap)
    except UnsafeFileError as error:
        if all(name.startswith(FORMAT_1_OBJECTS) for name in error.names):
            raise UnsafeFileError(path, error.names, (
                "These are what panet checkpoints of format 1 pickled; if this is one and you "
                f"trust its source, convert it once: {UPGRADE_COMMAND} '{path}' NEW.pt")) from None
        raise


def load_checkpoint(path: Union[str, Path], *, mmap: bool = False) -> Dict[str, Any]:
    """Read a checkpoint of `save_checkpoint` (tensors on the CPU) as data only; `mmap=True`
    maps the tensors instead of reading them."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint '{path}' does not exist (train.py writes them to "
                                "<run dir>/checkpoints/{last,snapshot_<step>,final}.pt)")
    return checkpoint_state(load_file_data(path, mmap=mmap), path)


def load_checkpoint_header(path: Union[str, Path]) -> Dict[str, Any]:
    """The step and config of a checkpoint, without reading its tensors."""
    state = load_checkpoint(path, mmap=True)
    return {"step": state["step"], "config": state["config"]}
