"""Where scripts/reproduce.py runs its jobs (docs/cluster.md), given as `Options`:

- `Options()`: on this machine, one after another, each job's output streaming through this
  process;
- `Options(parallel=K)`: K at a time on this machine, each job's output appended to
  `<run folder>/job.log`, one GPU per job where there are GPUs (`CUDA_VISIBLE_DEVICES` set to one
  of those this process sees). On a CPU machine each job keeps the threads it would have alone,
  so its results are bit for bit those of one after another;
- `Options(executor="slurm", slurm=SlurmOptions(...))`: one Slurm job per job, submitted with
  their dependencies (`panet.reproduce.slurm`); `wait=True` returns once all have finished.

Jobs given to an executor have had their changed outputs set aside (`panet.reproduce.outputs`):
an output present means done. Locally, a job starts once the jobs it needs have succeeded and
the tests before it sharing its feature cache have ended (`jobrun.prerequisites`); a job that
needs a failed one is skipped. Each attempt is recorded in job.json. Ctrl-C stops the running
jobs with SIGTERM (a train job saves last.pt); the same command continues.
"""

from __future__ import annotations

import datetime
import os
import shlex
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import torch

from panet.reproduce.jobrun import (DONE, failure, last_line, prerequisites, python_command,
                                    remove_finished_caches, write_record)
from panet.reproduce.jobs import REPO_ROOT, Job
from panet.reproduce.slurm import SlurmOptions, current_statuses, submit, wait

LOG_FILE = "job.log"
POLL_SECONDS = 0.2
Run = Callable[[Sequence[str]], int]  # runs a job's argv to its end, returns its exit code


@dataclass(frozen=True)
class Options:
    """How to run the jobs: `executor` "local" or "slurm"; `parallel` jobs at a time (local);
    `wait` for submitted Slurm jobs to finish; `slurm` their resources."""

    executor: str = "local"
    parallel: int = 1
    wait: bool = False
    slurm: SlurmOptions = field(default_factory=SlurmOptions)


def visible_gpus() -> List[str]:
    """The GPUs jobs may use, as CUDA_VISIBLE_DEVICES names them: the entries of this process's
    own CUDA_VISIBLE_DEVICES (those CUDA can use), else 0..N-1."""
    count = torch.cuda.device_count()
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        return [str(index) for index in range(count)]
    return [name.strip() for name in listed.split(",")][:count]


class _Ended:
    """A job `run` by a function (tests) rather than a process: already ended."""

    def __init__(self, code: int):
        self.returncode = code

    def poll(self) -> int:
        return self.returncode


@dataclass
class _Running:
    job: Job
    process: subprocess.Popen
    gpu: Optional[str]
    record: dict


class LocalExecutor:
    """Runs jobs `parallel` at a time, one per GPU of `gpus` when there are any. One at a time,
    their output streams here (or each job's argv goes to `run`, for tests)."""

    def __init__(self, parallel: int = 1, gpus: Sequence[str] = (), run: Optional[Run] = None):
        if parallel < 1:
            raise ValueError(f"parallel must be >= 1, got {parallel}")
        self.stream, self.run_argv = parallel == 1, run
        self.slots = min(parallel, len(gpus)) if gpus else parallel
        self.free_gpus = [] if self.stream else list(gpus)
        if gpus and parallel > len(gpus):
            print(f"{len(gpus)} GPU(s): running {self.slots} jobs at a time, one per GPU",
                  flush=True)

    def run(self, jobs: Sequence[Job]) -> List[str]:
        """Run the jobs without output; returns the names of those that failed or were
        skipped because a job they need failed."""
        order = prerequisites(jobs)
        ended = {job.name: True for job in jobs if job.has_output()}  # name -> succeeded
        for job in (job for job in jobs if job.name in ended):
            print(f"[done] {job.name}: {job.output}", flush=True)
        remove_finished_caches(jobs)
        waiting = [job for job in jobs if job.name not in ended]
        running: Dict[str, _Running] = {}
        try:
            while waiting or running:
                for name, run in list(running.items()):
                    code = run.process.poll()
                    if code is not None:
                        del running[name]
                        ended[name] = self._finish(run, code)
                        remove_finished_caches(jobs)
                for job in list(waiting):
                    after_ok, after_any = order[job.name]
                    blocked = [name for name in after_ok if ended.get(name) is False]
                    if blocked:
                        print(f"[skipped] {job.name}: needs the failed job(s) "
                              f"{', '.join(blocked)}", flush=True)
                        ended[job.name] = False
                    elif not (all(ended.get(name) for name in after_ok) and
                              all(name in ended for name in after_any)
                              and len(running) < self.slots):
                        continue
                    else:
                        running[job.name] = self._start(job)
                    waiting.remove(job)
                if running and all(run.process.poll() is None for run in running.values()):
                    time.sleep(POLL_SECONDS)
        except KeyboardInterrupt:
            self._stop(running.values())
            raise
        return [name for name, succeeded in ended.items() if not succeeded]

    def _start(self, job: Job) -> _Running:
        argv, gpu = job.command_now(), self.free_gpus.pop(0) if self.free_gpus else None
        log = None if self.stream else job.folder / LOG_FILE
        started = datetime.datetime.now().isoformat(timespec="seconds")
        print(f"[run] {job.name}" + ("" if gpu is None else f" on GPU {gpu}")
              + f"\n      {shlex.join(argv)}" + ("" if log is None else f"\n      log: {log}"),
              flush=True)
        record = dict(executor="local", host=socket.gethostname(), started=started,
                      command=shlex.join(argv), log=None if log is None else str(log), gpu=gpu)
        job.folder.mkdir(parents=True, exist_ok=True)
        write_record(job, **record, pid=None, exit_code=None)
        if self.run_argv is not None:
            return _Running(job, _Ended(self.run_argv(argv)), gpu, record)
        env = os.environ if gpu is None else {**os.environ, "CUDA_VISIBLE_DEVICES": gpu}
        with open(os.devnull if log is None else log, "a") as file:
            if log is not None:
                file.write(f"==> {started} on {socket.gethostname()}"
                           + ("" if gpu is None else f", CUDA_VISIBLE_DEVICES={gpu}")
                           + f": {shlex.join(argv)}\n")
                file.flush()
            process = subprocess.Popen(python_command(argv), cwd=REPO_ROOT, env=env,
                                       stdout=None if log is None else file,
                                       stderr=None if log is None else subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=not self.stream)
        record["pid"] = process.pid
        write_record(job, **record, exit_code=None)
        return _Running(job, process, gpu, record)

    def _finish(self, run: _Running, code: int) -> bool:
        """Record how a job ended and say it; True if it succeeded."""
        if run.gpu is not None:
            self.free_gpus.append(run.gpu)
        write_record(run.job, **run.record, exit_code=code)
        if code == 0 and run.job.has_output():
            print(f"[done] {run.job.name}: {run.job.output}", flush=True)
            return True
        log = run.record["log"]
        print(f"[failed] {failure(run.job, code, last_line(log))}"
              + ("" if log is None else f"\n      log: {log}"), flush=True)
        return False

    def _stop(self, running: Sequence[_Running]) -> None:
        """Stop every running job with SIGTERM (train.py saves last.pt), wait and record them."""
        running = list(running)
        for run in running:  # streaming here, the job got the terminal's Ctrl-C itself
            if run.process.poll() is None and not self.stream:
                run.process.send_signal(signal.SIGTERM)
        for run in running:
            code = run.process.wait()
            write_record(run.job, **run.record, exit_code=code)
            print(f"[stopped] {run.job.name} (exit code {code})", flush=True)


def execute(jobs: Sequence[Job], options: Options, run: Optional[Run] = None
            ) -> Optional[List[str]]:
    """Run or submit the jobs as `options` say (`run`: a function running each local job's
    argv instead of a process, for tests). Returns the names of the jobs that failed or were
    skipped (or blocked) once every job has ended, or None while submitted jobs are queued."""
    if options.executor == "local":
        gpus = visible_gpus() if run is None else ()
        return LocalExecutor(options.parallel, gpus, run).run(jobs)
    submit(jobs, options.slurm)
    statuses = wait(jobs) if options.wait else current_statuses(jobs)
    if not all(status.finished for status in statuses):
        print("submitted. Follow them with --status (the same options); once they are done, "
              "the same command writes the outputs (or add --wait)", flush=True)
        return None
    return [status.name for status in statuses if status.state != DONE]
