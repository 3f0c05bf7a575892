"""Where scripts/reproduce.py runs its jobs (docs/cluster.md): here one after another, output
streaming through this process; K at a time here, each job's output appended to
<run folder>/job.log, one GPU per job where there are GPUs (on a CPU each job keeps the threads
it has alone, so its results are bit for bit the same); or a Slurm job per job
(`panet.reproduce.slurm`). Locally a job starts once its prerequisites are met, is skipped when
a job it needs failed, and has each attempt recorded in job.json; Ctrl-C stops the running jobs
with SIGTERM (a train job saves last.pt) and the same command continues.
"""

from __future__ import annotations

import datetime
import os
import shlex
import signal
import socket
import subprocess
import time
from types import SimpleNamespace
from typing import Callable, List, NamedTuple, Optional, Sequence

import torch

from panet.reproduce.jobrun import (DONE, failure, last_line, prerequisites, python_command,
                                    remove_finished_caches, write_record)
from panet.reproduce.jobs import REPO_ROOT, Job
from panet.reproduce.slurm import SlurmOptions, current_statuses, submit
from panet.reproduce.slurm import wait as wait_until_finished

LOG_FILE = "job.log"
POLL_SECONDS = 0.2
Run = Callable[[Sequence[str]], int]  # runs a job's argv to its end, returns its exit code


def visible_gpus() -> List[str]:
    """The GPUs jobs may use as CUDA_VISIBLE_DEVICES names them (this process's own list)."""
    count, listed = torch.cuda.device_count(), os.environ.get("CUDA_VISIBLE_DEVICES")
    return ([str(index) for index in range(count)] if listed is None
            else [name.strip() for name in listed.split(",")][:count])


class _Running(NamedTuple):
    job: Job
    process: subprocess.Popen
    record: dict  # job.json's, with the job's GPU


class LocalExecutor:
    """Runs jobs `parallel` at a time, one per GPU of `gpus` if any; one at a time their output
    streams here. `run` (tests) runs each job's argv in place of a process."""

    def __init__(self, parallel: int = 1, gpus: Sequence[str] = (), run: Optional[Run] = None):
        self.stream, self.run_argv = parallel == 1, run
        self.slots = min(parallel, len(gpus)) if gpus else parallel
        self.free_gpus = [] if self.stream else list(gpus)
        if gpus and parallel > len(gpus):
            print(f"{len(gpus)} GPU(s): {self.slots} jobs at a time, one per GPU", flush=True)

    def run(self, jobs: Sequence[Job]) -> List[str]:
        """Run the jobs without output; returns those that failed or were skipped for that."""
        order, ended = prerequisites(jobs), {}  # name -> succeeded
        for job in (job for job in jobs if job.has_output()):
            print(f"[done] {job.name}: {job.output}", flush=True)
            ended[job.name] = True
        remove_finished_caches(jobs)
        waiting, running = [job for job in jobs if job.name not in ended], {}
        try:
            while waiting or running:
                for name, run in list(running.items()):
                    if run.process.poll() is not None:
                        ended[name] = self._finish(running.pop(name), run.process.poll())
                        remove_finished_caches(jobs)
                for job in list(waiting):
                    after_ok, after_any = order[job.name]
                    failed = [name for name in after_ok if ended.get(name) is False]
                    if failed:
                        print(f"[skipped] {job.name}: needs the failed job(s) "
                              f"{', '.join(failed)}", flush=True)
                        ended[job.name] = False
                    elif (all(ended.get(name) for name in after_ok) and len(running) < self.slots
                          and all(name in ended for name in after_any)):
                        running[job.name] = self._start(job)
                    else:
                        continue
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
        record = dict(executor="local", host=socket.gethostname(), command=shlex.join(argv),
                      log=log and str(log), gpu=gpu, pid=None)
        print(f"[run] {job.name}" + (f" on GPU {gpu}" if gpu else "") + f"\n      "
              f"{record['command']}" + (f"\n      log: {log}" if log else ""), flush=True)
        job.folder.mkdir(parents=True, exist_ok=True)
        write_record(job, **record, exit_code=None)
        if self.run_argv is not None:  # a function ran it (tests): an ended "process"
            code = self.run_argv(argv)
            return _Running(job, SimpleNamespace(poll=lambda: code, wait=lambda: code), record)
        with open(log or os.devnull, "a") as file:
            if log:  # each attempt's output after a line saying when, where and what
                file.write(f"==> {datetime.datetime.now().isoformat(timespec='seconds')} on "
                           f"{socket.gethostname()}" + (f", CUDA_VISIBLE_DEVICES={gpu}" if gpu
                                                        else "") + f": {record['command']}\n")
                file.flush()
            process = subprocess.Popen(
                python_command(argv), cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
                stdout=log and file, stderr=log and subprocess.STDOUT, start_new_session=bool(log),
                env={**os.environ, **({"CUDA_VISIBLE_DEVICES": gpu} if gpu else {})})
        record["pid"] = process.pid
        write_record(job, **record, exit_code=None)
        return _Running(job, process, record)

    def _finish(self, run: _Running, code: int) -> bool:
        """Record how a job ended and say it; True if it succeeded."""
        self.free_gpus += [run.record["gpu"]] if run.record["gpu"] is not None else []
        write_record(run.job, **run.record, exit_code=code)
        if code == 0 and run.job.has_output():
            print(f"[done] {run.job.name}: {run.job.output}", flush=True)
            return True
        log = run.record["log"]
        print(f"[failed] {failure(run.job, code, last_line(log))}"
              + (f"\n      log: {log}" if log else ""), flush=True)
        return False

    def _stop(self, running: Sequence[_Running]) -> None:
        """Stop the running jobs with SIGTERM (a streaming job had the terminal's Ctrl-C), wait
        for them and record how they ended."""
        for run in running:
            if run.process.poll() is None and not self.stream:
                run.process.send_signal(signal.SIGTERM)
        for run in running:
            write_record(run.job, **run.record, exit_code=run.process.wait())
            print(f"[stopped] {run.job.name} (exit code {run.process.poll()})", flush=True)


def execute(jobs: Sequence[Job], executor: str = "local", parallel: int = 1, wait: bool = False,
            slurm: SlurmOptions = SlurmOptions(), run: Optional[Run] = None
            ) -> Optional[List[str]]:
    """Run the jobs here (`parallel` at a time; `run`: see `LocalExecutor`) or submit them to
    Slurm (`wait`: until all have finished). Returns the jobs that failed or were skipped or
    blocked once all have ended; None while jobs are queued."""
    if executor == "local":
        return LocalExecutor(parallel, visible_gpus() if run is None else (), run).run(jobs)
    submit(jobs, slurm)
    statuses = wait_until_finished(jobs) if wait else current_statuses(jobs)
    if not all(status.finished for status in statuses):
        print("submitted. Follow them with --status (the same options); once they are done, "
              "the same command writes the outputs (or add --wait)", flush=True)
        return None
    return [status.name for status in statuses if status.state != DONE]
