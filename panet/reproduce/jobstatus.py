"""Where each of scripts/reproduce.py's jobs stands (`--status`): done, running, pending or failed,
read from its run folder and, for jobs submitted to Slurm, from the scheduler's queue (`squeue`;
not `sacct`, which needs Slurm's accounting database).

In order of precedence:

- **done**: its output exists (checkpoints/final.pt, results.json);
- a Slurm job still in the queue: **running**, or **pending** with Slurm's reason (waiting for
  the jobs it needs, for resources, or requeued); one that can never start because a job it
  needs failed counts as **failed** (resubmitting cancels and replaces it);
- **running**: a process holds its run folder (`panet.base.lock`), or the local process recorded
  in job.json is alive;
- **failed**: an executor's attempt ended without the output; the detail is the last line of
  its log, whose path is given;
- **pending**: never started by an executor (a partly trained job says it will resume).
"""

from __future__ import annotations

import os
import socket
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, List, Mapping, Optional, Sequence

from panet.reproduce.jobrun import last_line, read_record, run_folder
from panet.base.lock import writer_of

DONE, RUNNING, PENDING, FAILED = "done", "running", "pending", "failed"
STATES = (DONE, RUNNING, PENDING, FAILED)
# squeue states of a job that is still the scheduler's business; others (COMPLETED, FAILED,
# CANCELLED, TIMEOUT, ...) mean it has left for good
QUEUED_STATES = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED",
                 "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED"}
RUNNING_STATES = {"CONFIGURING", "RUNNING", "COMPLETING", "RESIZING", "SIGNALING", "STAGE_OUT"}
NEVER_RUNS = "DependencyNeverSatisfied"  # squeue's reason for a job whose afterok failed
SCHEDULER_LINES = ("srun: ", "submitit ")  # srun's and submitit's own lines in a job's log


@dataclass(frozen=True)
class QueueEntry:
    """One job as squeue shows it."""

    state: str  # PENDING, RUNNING, ...
    reason: str  # why it is pending (Dependency, Resources, BeginTime, ...), "None" otherwise


@dataclass(frozen=True)
class JobStatus:
    name: str
    state: str  # one of STATES
    detail: str
    log: Optional[str] = None  # the log to read (failed jobs)
    slurm_id: Optional[str] = None  # the Slurm job of the last submission, while it is queued

    @property
    def finished(self) -> bool:
        """Nothing will happen to it without a new command: done or failed."""
        return self.state in (DONE, FAILED)

    def line(self) -> str:
        return f"[{self.state}] {self.name}: {self.detail}" + (
            f"\n    log: {self.log}" if self.log else "")


def _alive_here(record: Mapping) -> bool:
    """Whether the local process a record names is alive (only knowable on its host)."""
    if record.get("host") != socket.gethostname() or not record.get("pid"):
        return False
    try:
        os.kill(record["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    return True


def _slurm_status(job, record: Mapping, entry: Optional[QueueEntry]) -> Optional[JobStatus]:
    """The status of a job whose last submission is still in Slurm's queue, else None."""
    if entry is None or entry.state not in QUEUED_STATES:
        return None
    job_id = record["slurm_job_id"]
    if entry.reason == NEVER_RUNS:
        return JobStatus(job.name, FAILED, f"Slurm job {job_id} can never start: a job it needs "
                         "failed (submitting again replaces both)", slurm_id=job_id)
    state = RUNNING if entry.state in RUNNING_STATES else PENDING
    reason = "" if entry.reason in ("None", "") else f": {entry.reason}"
    return JobStatus(job.name, state, f"Slurm job {job_id} ({entry.state}{reason})",
                     slurm_id=job_id)


def _ended_status(job, record: Mapping) -> JobStatus:
    """A job whose last attempt ended (or was abandoned) without its output."""
    if record.get("executor") == "slurm":
        # the job's own account of its failure, else (killed: time limit, memory, node) the
        # last line of its log that is neither srun's nor submitit's
        last = record.get("error") or last_line(record.get("stderr"), ignore=SCHEDULER_LINES)
        detail = f"Slurm job {record['slurm_job_id']} left the queue without {job.output}"
        return JobStatus(job.name, FAILED, detail + (f": {last}" if last else ""),
                         log=record.get("stderr"))
    log = record.get("log")
    if record.get("exit_code") is None:
        return JobStatus(job.name, FAILED, "stopped before finishing (its executor was "
                         "interrupted)", log=log)
    last = last_line(log)
    return JobStatus(job.name, FAILED, f"exit code {record['exit_code']}"
                     + (f": {last}" if last else ""), log=log)


def job_status(job, queue: Optional[Mapping[str, QueueEntry]]) -> JobStatus:
    """Where `job` stands. `queue`: squeue's entries by Slurm job id (None: squeue is not
    available here), read before calling, so that a job leaving the queue has its output seen."""
    if job.done():
        return JobStatus(job.name, DONE, str(job.output))
    record = read_record(job) or {}
    if record.get("executor") == "slurm":
        if queue is None:
            return JobStatus(job.name, PENDING, f"Slurm job {record['slurm_job_id']} (squeue is "
                             "not available here to say more)", slurm_id=record["slurm_job_id"])
        queued = _slurm_status(job, record, queue.get(record["slurm_job_id"]))
        if queued is not None:
            return queued
    holder = writer_of(run_folder(job))
    if holder is not None:
        return JobStatus(job.name, RUNNING, holder.describe(run_folder(job)))
    if record.get("executor") == "local" and record.get("exit_code") is None \
            and _alive_here(record):
        return JobStatus(job.name, RUNNING, f"starting (pid {record['pid']}, log "
                         f"{record.get('log')})")
    if record:
        return _ended_status(job, record)
    partial = job.partial_checkpoint()
    return JobStatus(job.name, PENDING, "not started" if partial is None
                     else f"not started; continues from {partial}")


def job_statuses(jobs: Iterable, queue: Optional[Mapping[str, QueueEntry]]) -> List[JobStatus]:
    return [job_status(job, queue) for job in jobs]


def slurm_ids(jobs: Iterable) -> List[str]:
    """The Slurm job ids recorded in the jobs' run folders (their last submissions)."""
    records = (read_record(job) or {} for job in jobs)
    return [record["slurm_job_id"] for record in records if record.get("executor") == "slurm"]


def summary(statuses: Sequence[JobStatus]) -> str:
    """'24 jobs: 20 done, 2 running, 1 pending, 1 failed'."""
    counts = Counter(status.state for status in statuses)
    return f"{len(statuses)} jobs: " + ", ".join(f"{counts[state]} {state}" for state in STATES)


def report(statuses: Sequence[JobStatus]) -> str:
    """Every job's line, then the summary."""
    return "\n".join([status.line() for status in statuses] + [summary(statuses)])
