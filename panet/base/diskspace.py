"""Disk space for checkpoints: a full disk explained in one line, and foreseen at the start.

A checkpoint is serialised in memory first, so its size is known before the write; a write that
fails for lack of space (ENOSPC, or EDQUOT: a quota) raises `DiskFullError`, whose one-line
message says which file, how much it needs, how much is free there, that the previous file is
intact (writes are atomic, `panet.base.files.atomic_write`) and what to do next. `space_warning`
compares the free space of a run's checkpoint folder with what the checkpoints it will write
need, from the exact size of one of them.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path
from typing import Any, Optional, Union

import torch

from panet.base.errors import OneLineError
from panet.base.files import atomic_write

FULL_DISK_ERRORS = {errno.ENOSPC: "no space left on the device",
                    errno.EDQUOT: "disk quota exceeded"}
LAST, FINAL = "last.pt", "final.pt"  # train.py's rewritten and final checkpoints


class DiskFullError(OneLineError):
    """A file could not be written for lack of space."""

    def then(self, next_step: str) -> "DiskFullError":
        """The same error, its message ending with what to do next."""
        return DiskFullError(f"{self}; {next_step}")


def format_size(n_bytes: float) -> str:
    """1536 -> '1.5 KiB' (binary units, one decimal)."""
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n_bytes < 1024 or unit == "GiB":
            return f"{n_bytes:.0f} bytes" if unit == "bytes" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    raise AssertionError("unreachable")


def free_space(path: Union[str, Path]) -> int:
    """Free bytes (for an unprivileged user) on the file system of `path`, or of its nearest
    existing parent when `path` does not exist yet."""
    path = Path(path).absolute()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


class _ByteCounter:
    """A write-only file that keeps nothing but the number of bytes written to it."""

    def __init__(self):
        self.count = 0

    def write(self, data) -> int:
        size = memoryview(data).nbytes
        self.count += size
        return size

    def flush(self) -> None:
        pass


def serialized_size(obj: Any) -> int:
    """The number of bytes `torch.save(obj, file)` writes, without keeping them."""
    counter = _ByteCounter()
    torch.save(obj, counter)
    return counter.count


def write_atomically(path: Union[str, Path], data: Union[bytes, memoryview]) -> Path:
    """Write `data` to `path` through `atomic_write`. Lack of space raises `DiskFullError`
    (path, bytes needed, bytes free once the partial file is removed, the previous file
    intact); other errors pass through."""
    path = Path(path)
    existed = path.is_file()
    try:
        with atomic_write(path) as file:
            file.write(data)
    except OSError as error:
        if error.errno not in FULL_DISK_ERRORS:
            raise
        kept = (f"the previous {path.name} is intact" if existed
                else f"nothing was overwritten (there was no {path.name} yet)")
        raise DiskFullError(
            f"could not write {path}: {FULL_DISK_ERRORS[error.errno]} (it needs "
            f"{format_size(memoryview(data).nbytes)}, {format_size(free_space(path.parent))} "
            f"are free there); {kept}") from None
    return path


def checkpoints_to_write(start: int, steps: int, checkpoint_every: int, snapshot_every: int,
                         folder: Path) -> int:
    """How many checkpoint files of train.py's a run from step `start` to `steps` adds to
    `folder`: last.pt (when some step in (start, steps] is a multiple of `checkpoint_every` and
    it does not exist yet), a snapshot per multiple of `snapshot_every`, and final.pt (counted
    even when it exists: replacing it needs room for the new copy beside the old one). When
    last.pt is rewritten, its temporary copy takes no more than the final.pt still to come."""
    def multiples(every: int) -> int:
        return steps // every - start // every if every else 0

    writes_last = multiples(checkpoint_every) > 0 and not (folder / LAST).is_file()
    return int(writes_last) + multiples(snapshot_every) + 1


def space_warning(folder: Path, checkpoint_bytes: int, count: int) -> Optional[str]:
    """One line when `folder` has less free space than `count` checkpoints of
    `checkpoint_bytes` need, else None."""
    needed, free = checkpoint_bytes * count, free_space(folder)
    if free >= needed:
        return None
    return (f"warning: {folder} has {format_size(free)} free, but this run's checkpoints need "
            f"{format_size(needed)} ({count} file{'s' * (count > 1)} of "
            f"{format_size(checkpoint_bytes)}): the first save that does not fit will stop it, "
            "keeping the previous checkpoint")
