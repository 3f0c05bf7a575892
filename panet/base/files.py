"""Writing output files: atomically (a temporary file renamed over the target: a crash leaves
the previous file), with the mode `open()` would give (not mkstemp's 0600), and a full disk said
in one line.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator, Optional, Union

from panet.base.errors import OneLineError

PathLike = Union[str, Path]
FULL_DISK_ERRORS = {errno.ENOSPC: "no space left on the device",
                    errno.EDQUOT: "disk quota exceeded"}


def default_file_mode() -> int:
    """The mode `open()` gives a new file: 0666 minus the umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_write(path: PathLike, mode: str = "wb") -> Iterator[IO]:
    """A temporary file beside `path` (parents created): on success flushed to disk, given the
    default file mode and renamed to `path`; on any error removed, `path` left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(handle, mode) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/panet`` when that is an absolute path, else ``~/.cache/panet``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache") / "panet"


def writable_problem(path: PathLike) -> Optional[str]:
    """Why a run could not write into folder `path`, or None, by a uniquely named probe (in its
    deepest existing parent when it is missing), removed at once."""
    path = Path(path)
    existing = next(folder for folder in (path, *path.parents) if folder.exists())
    try:
        if existing == path:
            with tempfile.NamedTemporaryFile(dir=path, prefix=".write-probe-"):
                return None
        os.rmdir(tempfile.mkdtemp(dir=existing, prefix=".write-probe-"))
        return None
    except OSError as error:
        return f"cannot write there ({error.strerror or error})"


class DiskFullError(OneLineError):
    """A file could not be written for lack of space."""

    def then(self, next_step: str) -> "DiskFullError":
        """The same error, its message ending with what to do next."""
        return DiskFullError(f"{self}; {next_step}")


def format_size(n_bytes: float) -> str:
    """1536 -> '1.5 KiB' (binary units, one decimal)."""
    for unit in ("bytes", "KiB", "MiB"):
        if n_bytes < 1024:
            return f"{n_bytes:.0f} bytes" if unit == "bytes" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    return f"{n_bytes:.1f} GiB"


def free_space(path: PathLike) -> int:
    """Free bytes on the file system of `path` (or of its nearest existing parent)."""
    path = Path(path).absolute()
    return shutil.disk_usage(next(p for p in (path, *path.parents) if p.exists())).free


def write_atomically(path: PathLike, data: Union[bytes, memoryview]) -> Path:
    """Write `data` to `path` through `atomic_write`; lack of space raises `DiskFullError`
    (bytes needed and free, the previous file intact)."""
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


def file_sha256(path: PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
