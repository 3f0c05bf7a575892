"""The Slurm executor (`--executor slurm`): one Slurm job per job not done, submitted through
submitit `afterok` on the jobs it needs (`afterany` on the earlier tests sharing its feature
cache); submitit's files and the logs (`<id>_0_log.out`, `.err`) go to `<run folder>/slurm/`.

- `SlurmTask` runs the job's command as it is when the job starts (continuing from last.pt) as a
  child process appending to the logs; a failure is added to job.json with its last line.
- 90 s before the time limit Slurm sends USR2 (the child ignores it): `SlurmTask.checkpoint`
  stops train.py with SIGTERM (it saves last.pt) and submitit requeues the job (at most
  `TIMEOUT_REQUEUES` times), which continues from last.pt. A job preempted or requeued gets
  SIGTERM: train.py saves last.pt and continues when it runs again; a test runs again.
- Submitting again leaves done and queued jobs alone, submits failed ones again and cancels and
  resubmits a queued job that waits on one of those (or can never start).
"""

from __future__ import annotations

import datetime
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import submitit
from submitit.core.utils import FailedJobError, FailedSubmissionError

from panet.reproduce.jobrun import (DONE, PENDING, RUNNING, SCHEDULER_LINES, JobStatus,
                                    QueueEntry, failure, last_line, prerequisites,
                                    python_command, read_record, remove_finished_caches,
                                    summary, survey, write_record)
from panet.reproduce.jobs import REPO_ROOT, Job

SLURM_FOLDER = "slurm"  # <run folder>/slurm/: submitit's files and the job's logs
DEFAULT_TIME = "4:00:00"  # per job; a train job that reaches it is requeued and continues
TIMEOUT_REQUEUES = 10  # how often a job may reach its time limit and be requeued
POLL_SECONDS = 0.5  # how often a Slurm job checks on its child process
WAIT_SECONDS = 5.0  # how often --wait asks squeue
SLURM_TIME = re.compile(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?")


class SlurmError(RuntimeError):
    """Slurm cannot be used as asked (no client, a refused submission, squeue failing)."""


def time_minutes(text: str) -> int:
    """Minutes of a Slurm time limit: "minutes", "minutes:seconds", "hours:minutes:seconds",
    "days-hours", "days-hours:minutes", "days-hours:minutes:seconds" (seconds round up)."""
    match = SLURM_TIME.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a Slurm time (minutes, MM:SS, HH:MM:SS, D-HH, "
                         "D-HH:MM or D-HH:MM:SS)")
    days, *fields = match.groups()
    numbers = [int(field) for field in fields if field is not None]
    units = (3600, 60, 1) if days is not None or len(numbers) == 3 else (60, 1)
    seconds = int(days or 0) * 86400 + sum(n * unit for n, unit in zip(numbers, units))
    if seconds <= 0:
        raise ValueError(f"{text!r}: a time limit must be positive")
    return -(-seconds // 60)


@dataclass(frozen=True)
class SlurmOptions:
    """The resources of every job (the --slurm-* options of scripts/reproduce.py)."""

    partition: Optional[str] = None
    time: str = DEFAULT_TIME
    gpus_per_job: int = 1
    cpus_per_job: Optional[int] = None
    mem: Optional[str] = None  # Slurm's --mem, e.g. 32G
    extra: Tuple[Tuple[str, str], ...] = ()  # any other sbatch option, e.g. (("qos", "high"),)

    def parameters(self, name: str, dependency: Optional[str]) -> Dict[str, Any]:
        """submitit.SlurmExecutor.update_parameters arguments of job `name`."""
        optional = {"partition": self.partition, "gpus_per_node": self.gpus_per_job or None,
                    "cpus_per_task": self.cpus_per_job, "mem": self.mem or None,
                    "dependency": dependency}
        return {"job_name": name, "time": time_minutes(self.time),
                "additional_parameters": dict(self.extra),
                **{key: value for key, value in optional.items() if value is not None}}


def _ignore_preemption_signal() -> None:
    """In the child: ignore the signal Slurm sends before the time limit (it would kill train.py
    before it saves); SlurmTask handles it."""
    signal.signal(getattr(signal, "SIG" + submitit.JobEnvironment.USR_SIG), signal.SIG_IGN)


class SlurmTask(submitit.helpers.Checkpointable):
    """What the Slurm job of `job` runs; after success it removes the feature cache of
    `cache_group` (the tests sharing the job's cache) once all of them are done."""

    def __init__(self, job: Job, cache_group: Sequence[Job] = ()):
        self.job = job
        self.cache_group = tuple(cache_group)
        self._process: Optional[subprocess.Popen] = None

    def __call__(self) -> str:
        argv = self.job.command_now()
        logs = submitit.JobEnvironment().paths
        print(f"[run] {self.job.name} on {socket.gethostname()}: {shlex.join(argv)}", flush=True)
        # The child appends to the job's logs itself, so that what it prints while Slurm tears
        # the job down (train.py saying what it saved) does not depend on Slurm's relay.
        with open(logs.stdout, "ab") as out, open(logs.stderr, "ab") as err:
            process = self._process = subprocess.Popen(
                python_command(argv), cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=out,
                stderr=err, preexec_fn=_ignore_preemption_signal,
                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        # Waited for in a thread, so that checkpoint(), a signal handler of this (main)
        # thread, can wait too without taking the lock an interrupted wait() would hold.
        threading.Thread(target=process.wait, daemon=True).start()
        while process.returncode is None:
            time.sleep(POLL_SECONDS)
        if process.returncode == 0 and self.job.has_output():
            remove_finished_caches(self.cache_group)
            return str(self.job.output)
        error = failure(self.job, process.returncode, last_line(str(logs.stderr), SCHEDULER_LINES))
        write_record(self.job, **{**read_record(self.job), "exit_code": process.returncode,
                                  "error": str(error)})
        raise error

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Called by submitit before it requeues the job: stop the child with SIGTERM (train.py
        saves last.pt) and wait for it; the requeued job continues from last.pt."""
        process = self._process
        if process is not None and process.returncode is None:
            print(f"stopping {self.job.name} to requeue it", flush=True)
            process.send_signal(signal.SIGTERM)
            while process.returncode is None:
                time.sleep(POLL_SECONDS)
        return submitit.helpers.DelayedSubmission(SlurmTask(self.job, self.cache_group))


def scheduler_queue(ids: Sequence[str]) -> Optional[Dict[str, QueueEntry]]:
    """squeue's view of the Slurm jobs `ids` (those it still knows), or None without squeue."""
    if not ids:
        return {}
    if shutil.which("squeue") is None:
        return None
    result = subprocess.run(["squeue", "--noheader", "--states=all", "--format=%i|%T|%r",
                             "--jobs=" + ",".join(ids)], capture_output=True, text=True,
                            timeout=120)
    if result.returncode != 0:
        if "Invalid job id" in result.stderr:  # none of them is known any more
            return {}
        raise SlurmError(f"squeue failed: {result.stderr.strip()}")
    lines = (line.strip().split("|", 2) for line in result.stdout.splitlines() if line.strip())
    return {job_id: QueueEntry(state, reason) for job_id, state, reason in lines}


def current_statuses(jobs: Sequence[Job]) -> List[JobStatus]:
    """Every job's status (`panet.reproduce.jobrun.survey`), the queue read first."""
    ids = [record["slurm_job_id"] for record in map(read_record, jobs) if "slurm_job_id" in record]
    return survey(jobs, scheduler_queue(ids))


def dependency_of(after_ok: Sequence[str], after_any: Sequence[str],
                  ids: Mapping[str, str]) -> Optional[str]:
    """Slurm's --dependency for jobs that must succeed / end first, by the Slurm ids they have
    (jobs already done have none and impose nothing)."""
    parts = [f"{kind}:" + ":".join(ids[name] for name in names if name in ids)
             for kind, names in (("afterok", after_ok), ("afterany", after_any))
             if any(name in ids for name in names)]
    return ",".join(parts) or None


def submit_job(job: Job, options: SlurmOptions, dependency: Optional[str],
               cache_group: Sequence[Job] = ()) -> str:
    """Submit `job` (returns its Slurm id) and record the submission in its run folder."""
    executor = submitit.SlurmExecutor(folder=job.folder / SLURM_FOLDER,
                                      max_num_timeout=TIMEOUT_REQUEUES)
    executor.update_parameters(**options.parameters(job.name, dependency))
    try:
        submitted = executor.submit(SlurmTask(job, cache_group))
    except (FailedJobError, FailedSubmissionError) as error:
        lines = str(error).strip().splitlines() or ["no message"]
        raise SlurmError(f"sbatch refused {job.name}: {lines[-1]}") from None
    write_record(job, executor="slurm", slurm_job_id=submitted.job_id,
                 submitted=datetime.datetime.now().isoformat(timespec="seconds"),
                 command=job.command, stdout=str(submitted.paths.stdout),
                 stderr=str(submitted.paths.stderr))
    return submitted.job_id


def submit(jobs: Sequence[Job], options: SlurmOptions) -> List[str]:
    """Submit every job that is neither done nor queued (module docstring); returns the names
    submitted."""
    if shutil.which("sbatch") is None:
        raise SlurmError("sbatch not found: --executor slurm needs Slurm's client commands "
                         "(sbatch, squeue, scancel) on this machine")
    statuses = {status.name: status for status in current_statuses(jobs)}
    elsewhere = [status.detail for status in statuses.values()
                 if status.state == RUNNING and status.slurm_id is None]
    if elsewhere:
        raise SlurmError("these jobs are running outside Slurm; wait for them to end, then "
                         "submit: " + "; ".join(elsewhere))
    remove_finished_caches(jobs)
    order, ids, submitted = prerequisites(jobs), {}, []
    for job in jobs:
        status, (after_ok, after_any) = statuses[job.name], order[job.name]
        replaced = any(name in submitted for name in (*after_ok, *after_any))
        if status.state == DONE or (status.state in (RUNNING, PENDING) and status.slurm_id
                                    and not (status.state == PENDING and replaced)):
            ids.update({job.name: status.slurm_id} if status.slurm_id else {})
            print(status.line(), flush=True)
            continue
        if status.slurm_id is not None:  # queued, but can never start or waits on a replaced job
            subprocess.run(["scancel", status.slurm_id], check=False)
        dependency = dependency_of(after_ok, after_any, ids)
        group = [other for other in jobs
                 if job.shared_cache is not None and other.shared_cache == job.shared_cache]
        ids[job.name] = submit_job(job, options, dependency, group)
        submitted.append(job.name)
        print(f"[submitted] {job.name}: Slurm job {ids[job.name]}"
              + (f" ({dependency})" if dependency else "")
              + f"\n      logs: {job.folder / SLURM_FOLDER}", flush=True)
    return submitted


def wait(jobs: Sequence[Job], poll_seconds: float = WAIT_SECONDS) -> List[JobStatus]:
    """Block until every job is finished (done, failed or blocked), printing each change;
    returns the statuses."""
    seen = {status.name: status.state for status in current_statuses(jobs)}
    while True:
        statuses = current_statuses(jobs)
        for status in statuses:
            if seen.get(status.name) != status.state:
                print(status.line(), flush=True)
                seen[status.name] = status.state
        if all(status.finished for status in statuses):
            print(summary(statuses), flush=True)
            return statuses
        time.sleep(poll_seconds)

