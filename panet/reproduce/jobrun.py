"""Running jobs, whatever runs them (here, K local processes, Slurm), and where each stands.

- **Order** (`prerequisites`): a job starts after the jobs it `needs` have succeeded and the
  earlier tests sharing its feature cache have ended; a shared cache goes once every test reading
  it has its output.
- **Record**: `<run folder>/job.json` holds the last attempt: "executor", "command", then "host",
  "pid", "log" (None: streamed), "exit_code" (local) or "slurm_job_id", "stdout", "stderr",
  "error" (Slurm).
- **States** (`survey`): done (its output records what the job would make now,
  `panet.reproduce.outputs`); changed (it records other settings, data or code, or tests a
  checkpoint that is not done: a plain run refuses, --rerun-changed reruns); running or pending
  (in Slurm's queue; a process writing its run folder; not started); blocked (it needs a failed,
  changed or blocked job); failed (an attempt ended without its output: its log's last line).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from panet.base.files import atomic_write
from panet.base.lock import writer_of
from panet.reproduce.jobs import Job
from panet.reproduce.outputs import changes

RECORD_FILE = "job.json"
DONE, CHANGED, RUNNING, PENDING, BLOCKED, FAILED = STATES = (
    "done", "changed", "running", "pending", "blocked", "failed")
# squeue's states of a job still in the scheduler's hands, and those of a started one
QUEUED = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED",
          "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED"}
STARTED = {"CONFIGURING", "RUNNING", "COMPLETING", "RESIZING", "SIGNALING", "STAGE_OUT"}
NEVER_RUNS = "DependencyNeverSatisfied"  # squeue's reason for a job whose afterok failed
SCHEDULER_LINES = ("srun: ", "submitit ")  # srun's and submitit's own lines in a job's log


class JobFailed(RuntimeError):
    """A job failed or left no output; the message ends with its last line of error output."""


class QueueEntry(NamedTuple):
    """A Slurm job as squeue shows it: state (PENDING, ...) and reason ("None", Dependency...)."""

    state: str
    reason: str


@dataclass(frozen=True)
class JobStatus:
    """Where a job stands: one of STATES, the detail, the log to read, the Slurm job of its last
    submission while queued, and for a changed job what differs ("key: recorded -> wanted")."""

    name: str
    state: str
    detail: str
    log: Optional[str] = None
    slurm_id: Optional[str] = None
    changes: Tuple[str, ...] = ()

    @property
    def finished(self) -> bool:
        """Nothing will happen to it without a new command."""
        return self.state in (DONE, CHANGED, BLOCKED, FAILED)

    def line(self) -> str:
        return f"[{self.state}] {self.name}: {self.detail}" + (
            f"\n    log: {self.log}" if self.log else "")


def python_command(argv: Sequence[str]) -> List[str]:
    """A job's argv ("python", script, ...) run by this interpreter."""
    return [sys.executable, *argv[1:]]


def prerequisites(jobs: Sequence[Job]) -> Dict[str, Tuple[Tuple[str, ...], Tuple[str, ...]]]:
    """name -> (the jobs that must have succeeded, those that must have ended) before it."""
    names, earlier, order = {job.name for job in jobs}, {}, {}
    for job in jobs:
        order[job.name] = (tuple(name for name in job.needs if name in names),
                           tuple(earlier.get(job.shared_cache, ())))
        if job.shared_cache is not None:
            earlier.setdefault(job.shared_cache, []).append(job.name)
    return order


def remove_finished_caches(jobs: Iterable[Job]) -> List[Path]:
    """Delete the cleanup folders whose readers among `jobs` all have their output."""
    jobs, removed = list(jobs), []
    for path in {path for job in jobs for path in job.cleanup}:
        if path.exists() and all(job.has_output() for job in jobs if job.shared_cache == path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def write_record(job: Job, **record: Any) -> None:
    """Record the job's current attempt in its run folder (replacing the previous one)."""
    with atomic_write(job.folder / RECORD_FILE, "w") as file:
        json.dump(record, file, indent=1)


def read_record(job: Job) -> Dict[str, Any]:
    """The job's last recorded attempt ({}: none, or unreadable, which counts as none)."""
    try:
        return json.loads((job.folder / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return {}


def last_line(log: Optional[str], ignore: Tuple[str, ...] = ()) -> Optional[str]:
    """The last non-empty line of a log's last 64 KiB not starting with one of `ignore`."""
    try:
        with open(log or "", "rb") as file:
            file.seek(max(0, file.seek(0, 2) - (1 << 16)))
            lines = file.read().decode(errors="replace").replace("\r", "\n").splitlines()
    except OSError:
        return None
    return next((line.strip() for line in reversed(lines)
                 if line.strip() and not line.startswith(ignore)), None)


def failure(job: Job, code: int, last: Optional[str]) -> JobFailed:
    """The error of a job whose command exited with `code` (0: but its output is missing)."""
    what = f"exit code {code}" if code else f"exited with code 0 but {job.output} was not written"
    return JobFailed(f"{job.name}: {what}" + (f": {last}" if last else ""))


def _alive_here(record: Mapping) -> bool:
    """Whether the local process a record names is alive (knowable on its host only)."""
    if record.get("host") != socket.gethostname() or not record.get("pid"):
        return False
    try:
        os.kill(record["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    return True


def _queued(job: Job, job_id: str, queue: Optional[Mapping[str, QueueEntry]]
            ) -> Optional[JobStatus]:
    """The status of a job whose last submission Slurm still holds (or squeue is missing)."""
    entry = None if queue is None else queue.get(job_id)
    if queue is not None and (entry is None or entry.state not in QUEUED):
        return None
    state, reason = (PENDING, None) if entry is None else entry
    if reason == NEVER_RUNS:
        return JobStatus(job.name, BLOCKED, f"Slurm job {job_id} can never start: a job it "
                         "needs failed (submitting again replaces both)", slurm_id=job_id)
    detail = ("(squeue is not available here to say more)" if entry is None else
              f"({state}" + ("" if reason in ("None", "") else f": {reason}") + ")")
    return JobStatus(job.name, RUNNING if state in STARTED else PENDING,
                     f"Slurm job {job_id} {detail}", slurm_id=job_id)


def _ended(job: Job, record: Mapping) -> JobStatus:
    """A job whose last attempt ended (or was abandoned) without its output."""
    log = record.get("stderr" if "slurm_job_id" in record else "log")
    if "slurm_job_id" in record:  # its own account, else (killed) its log's last line
        last = record.get("error") or last_line(log, SCHEDULER_LINES)
        detail = f"Slurm job {record['slurm_job_id']} left the queue without {job.output}"
    elif record.get("exit_code") is None:
        last, detail = None, "stopped before finishing (its executor was interrupted)"
    else:
        last, detail = last_line(log), f"exit code {record['exit_code']}"
    return JobStatus(job.name, FAILED, detail + (f": {last}" if last else ""), log=log)


def job_status(job: Job, queue: Optional[Mapping[str, QueueEntry]],
               needed: Sequence[JobStatus] = (), memo: Optional[dict] = None) -> JobStatus:
    """Where `job` stands (module docstring). `queue`: squeue's entries by job id, read before
    (None: no squeue here); `needed`: the statuses of the jobs it needs; `memo`: one survey's."""
    if job.has_output():
        waiting = [status.name for status in needed if status.state != DONE]
        found = ([f"it tests the checkpoint of {waiting[0]}, which is not done"] if waiting
                 else changes(job, memo))
        if not found:
            return JobStatus(job.name, DONE, str(job.output))
        return JobStatus(job.name, CHANGED, "its output records other settings, data or code: "
                         + "; ".join(found), changes=tuple(found))
    record, holder = read_record(job), writer_of(job.folder)
    queued = "slurm_job_id" in record and _queued(job, record["slurm_job_id"], queue)
    blocking = [f"{status.name} ({status.state})" for status in needed
                if status.state in (FAILED, CHANGED, BLOCKED)]
    partial = job.partial_checkpoint()
    if queued:
        return queued
    if holder is not None:
        return JobStatus(job.name, RUNNING, holder.describe(job.folder))
    if record.get("exit_code", 0) is None and _alive_here(record):
        return JobStatus(job.name, RUNNING, f"starting (pid {record['pid']})")
    if blocking:
        return JobStatus(job.name, BLOCKED, "needs " + ", ".join(blocking))
    if record and record.get("exit_code") != 0:  # a success whose output went: it runs again
        return _ended(job, record)
    return JobStatus(job.name, PENDING, "not started" + (
        "" if partial is None else f"; continues from {partial}"))


def survey(jobs: Sequence[Job], queue: Optional[Mapping[str, QueueEntry]]) -> List[JobStatus]:
    """Every job's status (`job_status`), each after those of the jobs it needs."""
    found: Dict[str, JobStatus] = {}
    memo: dict = {}
    for job in jobs:
        found[job.name] = job_status(job, queue, [found[name] for name in job.needs
                                                  if name in found], memo)
    return list(found.values())


def summary(statuses: Sequence[JobStatus]) -> str:
    """'24 jobs: 20 done, 0 changed, 2 running, 1 pending, 0 blocked, 1 failed'."""
    counts = Counter(status.state for status in statuses)
    return f"{len(statuses)} jobs: " + ", ".join(f"{counts[state]} {state}" for state in STATES)


def report(statuses: Sequence[JobStatus]) -> str:
    """Every job's line, then the summary (what --status prints)."""
    return "\n".join([status.line() for status in statuses] + [summary(statuses)])
