"""One writer per run folder: an exclusive `flock` on `<run folder>/.lock`, taken before anything
is written there and held until the run ends. The kernel drops it however the process dies, so
it is never stale. The file records the holder (host, pid, start, command), so a second writer
stops at once with one line naming the first ("runs/7 is being written by pid 1234 on host gpu3
since 12:01 (python train.py ...): wait for it or stop it"). `writer_of` probes a folder
(reproduce.py --status). On NFS, flock becomes a server-arbitrated byte-range lock; a file
system without locks (ENOLCK) gets a one-line warning and the run goes on unguarded.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import shlex
import socket
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Union

from panet.base.errors import OneLineError
from panet.base.files import FULL_DISK_ERRORS, DiskFullError, format_size, free_space

LOCK_FILE = ".lock"
# A writer that finds the lock taken tries again for this long before giving up: `writer_of`
# (a status probe) holds it for microseconds, a real writer for the whole run.
PATIENCE_SECONDS = 1.0
RETRY_SECONDS = 0.05


class RunFolderBusy(OneLineError):
    """Another process writes the run folder."""


@dataclass(frozen=True)
class Holder:
    """Who holds a run folder's lock."""

    host: str
    pid: int
    start: float  # seconds since the epoch
    command: str

    @classmethod
    def of_this_process(cls) -> "Holder":
        return cls(socket.gethostname(), os.getpid(), time.time(),
                   shlex.join(["python", *sys.argv]))

    def describe(self, folder: Path) -> str:
        started = datetime.datetime.fromtimestamp(self.start)
        when = (started.strftime("%H:%M") if started.date() == datetime.date.today()
                else started.strftime("%Y-%m-%d %H:%M"))
        return (f"{folder} is being written by pid {self.pid} on host {self.host} since {when} "
                f"({self.command})")


def _read_holder(fd: int) -> Optional[Holder]:
    """The holder recorded in an open lock file (None: not written yet)."""
    try:
        text = os.pread(fd, 1 << 16, 0).decode()
        return Holder(**json.loads(text))
    except (ValueError, TypeError):
        return None


def _try_lock(fd: int, operation: int) -> bool:
    """`flock(fd, operation | LOCK_NB)`: True if taken, False if another holder has it."""
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


class RunFolderLock:
    """The exclusive lock on `<folder>/.lock` (folder created): `with RunFolderLock(run_dir):`
    raises RunFolderBusy if another process writes it."""

    def __init__(self, folder: Union[str, Path], patience: float = PATIENCE_SECONDS):
        self.folder = Path(folder)
        self.patience = patience
        self._fd: Optional[int] = None

    def acquire(self) -> "RunFolderLock":
        if self._fd is not None:
            raise RuntimeError(f"{self.folder}: this lock is already held")
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            deadline = time.monotonic() + self.patience
            while not _try_lock(fd, fcntl.LOCK_EX):
                if time.monotonic() >= deadline:
                    holder = _read_holder(fd)
                    raise RunFolderBusy(
                        (holder.describe(self.folder) if holder is not None else
                         f"{self.folder} is being written by another process (it has not "
                         "recorded itself yet)") + ": wait for it or stop it")
                time.sleep(RETRY_SECONDS)
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(asdict(Holder.of_this_process())).encode(), 0)
        except OSError as error:
            os.close(fd)
            if error.errno == errno.ENOLCK:
                print(f"warning: cannot lock {self.folder} (its file system has no locks): a "
                      "second writer of this run folder would not be stopped", file=sys.stderr,
                      flush=True)
                return self
            if error.errno not in FULL_DISK_ERRORS:
                raise
            raise DiskFullError(f"cannot write {self.folder / LOCK_FILE}, which says who writes "
                                f"the run folder: {FULL_DISK_ERRORS[error.errno]} ("
                                f"{format_size(free_space(self.folder))} free); free some space "
                                "or choose another folder") from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        """Give the folder up; the file stays (deleting it would let two writers lock two files)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunFolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def writer_of(folder: Union[str, Path]) -> Optional[Holder]:
    """The process writing `folder` now (pid 0 on host "?": not recorded yet), or None."""
    path = Path(folder) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        if _try_lock(fd, fcntl.LOCK_SH):
            return None  # closing the file below releases the probe at once
        return _read_holder(fd) or Holder("?", 0, time.time(), "?")
    finally:
        os.close(fd)
