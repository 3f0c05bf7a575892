"""What running one of scripts/reproduce.py's jobs means, whatever runs it (this process, K local
processes, Slurm): its command at the moment it starts, its run folder and the record of its
last attempt there, the order jobs must keep, and the shared feature caches to remove.

A job is a `panet.reproduce.Job` (name, argv, output, needs, cleanup, done(), partial_checkpoint()).

- **Command.** Decided when the job starts, not when it is submitted: a train job whose run
  folder holds checkpoints/last.pt continues from it (`train.resume=`), so a job requeued by a
  scheduler, or started again after a failure, picks up where it stopped.
- **Order.** A job starts after the jobs it `needs` have succeeded; tests of one set of weights
  share a feature cache (`test.cache_dir=`), so each also starts after the tests before it in
  that group have ended, successfully or not (the first encodes, the others read).
- **Record.** `<run folder>/job.json` describes the last attempt made by an executor: which one,
  the Slurm job id or the local process, the log files and, for local runs, the exit code.
  `--status` reads it (panet/jobstatus.py).
- **Caches.** A shared feature cache is removed once every test that reads it is done.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from panet.base.files import atomic_write

RECORD_FILE = "job.json"
CACHE_KEY = "test.cache_dir="
LAST_LINE_BYTES = 1 << 16  # how much of a log's end is read to find its last line


class JobFailed(RuntimeError):
    """A job's command failed or left no output; the message ends with its last line of error
    output, so that it is the last line of the job's log."""


def run_folder(job) -> Path:
    """The job's run folder: <run>/ of <run>/checkpoints/final.pt or of <run>/results.json."""
    output = Path(job.output)
    return output.parent.parent if output.parent.name == "checkpoints" else output.parent


def command_now(job) -> List[str]:
    """The job's argv as it should run now: a partly trained job continues from its last.pt."""
    argv = list(job.argv)
    partial = job.partial_checkpoint()
    if partial is not None:
        argv.append(f"train.resume={partial}")
    return argv


def python_command(argv: Sequence[str]) -> List[str]:
    """`argv` ("python", script, ...) run by this interpreter (from the repository root)."""
    return [sys.executable, *argv[1:]]


def shared_cache(job) -> Optional[Path]:
    """The feature cache folder the job's test shares with other tests, if any."""
    for arg in job.argv:
        if arg.startswith(CACHE_KEY):
            return Path(arg[len(CACHE_KEY):])
    return None


def prerequisites(jobs: Sequence) -> Dict[str, Tuple[Tuple[str, ...], Tuple[str, ...]]]:
    """name -> (jobs that must have succeeded, jobs that must have ended) before it starts:
    its `needs` among `jobs`, and the earlier tests sharing its feature cache."""
    names = {job.name for job in jobs}
    earlier: Dict[Path, List[str]] = {}
    order = {}
    for job in jobs:
        cache = shared_cache(job)
        before = tuple(earlier.get(cache, ())) if cache is not None else ()
        order[job.name] = (tuple(name for name in job.needs if name in names), before)
        if cache is not None:
            earlier.setdefault(cache, []).append(job.name)
    return order


def remove_finished_caches(jobs: Iterable) -> List[Path]:
    """Delete every cleanup folder (a shared feature cache) whose readers among `jobs` are all
    done; returns the folders removed."""
    jobs = list(jobs)
    removed = []
    for path in {path for job in jobs for path in job.cleanup}:
        readers = [job for job in jobs if shared_cache(job) == path]
        if all(job.done() for job in readers) and path.exists():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def write_record(job, **record: Any) -> Path:
    """Record the job's current attempt in its run folder (replacing the previous one)."""
    path = run_folder(job) / RECORD_FILE
    with atomic_write(path, "w") as file:
        json.dump(record, file, indent=1)
    return path


def read_record(job) -> Optional[Dict[str, Any]]:
    """The job's last recorded attempt, or None if no executor has started it (or the record is
    unreadable, which counts as never started: a rerun makes a new one)."""
    try:
        return json.loads((run_folder(job) / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return None


def last_line(*logs: Optional[str], ignore: Tuple[str, ...] = ()) -> Optional[str]:
    """The last non-empty line, not starting with one of the `ignore` prefixes, of the first of
    `logs` that has one (None if none has)."""
    for log in logs:
        if not log:
            continue
        try:
            with open(log, "rb") as file:
                file.seek(0, 2)
                file.seek(max(0, file.tell() - LAST_LINE_BYTES))
                lines = file.read().decode(errors="replace").replace("\r", "\n").splitlines()
        except OSError:
            continue
        for line in reversed(lines):
            if line.strip() and not line.startswith(ignore):
                return line.strip()
    return None


def failure(job, code: int, last: Optional[str]) -> JobFailed:
    """The error of a job whose command exited with `code` (0: but its output is missing)."""
    what = (f"exit code {code}" if code
            else f"exited with code 0 but {job.output} was not written")
    return JobFailed(f"{job.name}: {what}" + (f": {last}" if last else ""))
