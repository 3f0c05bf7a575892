"""The local executor: K of scripts/reproduce.py's jobs at a time on this machine
(`--executor local --parallel K`).

Each job runs as its own `python train.py|test.py ...` from the repository root, as the default
one-after-another loop runs them, but with its output appended to `<run folder>/job.log` (the
console gets a line when a job starts and ends) and its attempt recorded in `job.json`, which
`--status` reads. Where there are GPUs, each running job sees only its own
(`CUDA_VISIBLE_DEVICES` set to one of the GPUs this process sees), so at most one job per GPU
runs. Nothing else changes: on a CPU machine each job uses the threads it would use alone, so
its results are bit for bit those of the one-after-another loop (export OMP_NUM_THREADS=cores/K
to share the cores instead: faster, but another thread count rounds differently).

A job starts once the jobs it needs have succeeded and the tests before it that share its
feature cache have ended (panet/jobrun.py); a job that needs a failed one is skipped. Plain
subprocesses rather than submitit's local executor: that one starts every job at once, with no
limit and no dependencies. Ctrl-C stops the running jobs with SIGTERM (a train job saves its
last.pt), waits for them, and running the same command again continues.
"""

from __future__ import annotations

import datetime
import os
import shlex
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Set

import torch

from panet.reproduce.jobrun import (command_now, failure, last_line, prerequisites, python_command,
                     remove_finished_caches, run_folder, write_record)
from panet.reproduce.jobs import REPO_ROOT

LOG_FILE = "job.log"
POLL_SECONDS = 0.2


def visible_gpus() -> List[str]:
    """The GPUs jobs may use, as CUDA_VISIBLE_DEVICES names them: the entries of this process's
    own CUDA_VISIBLE_DEVICES (those CUDA can use), else 0..N-1."""
    count = torch.cuda.device_count()
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        return [str(index) for index in range(count)]
    return [name.strip() for name in listed.split(",")][:count]


@dataclass
class _Running:
    job: object
    process: subprocess.Popen
    gpu: Optional[str]
    record: dict


class LocalExecutor:
    """Runs jobs `parallel` at a time, one per GPU of `gpus` when there are any."""

    def __init__(self, parallel: int, gpus: Sequence[str] = ()):
        if parallel < 1:
            raise ValueError(f"parallel must be >= 1, got {parallel}")
        self.slots = min(parallel, len(gpus)) if gpus else parallel
        self.free_gpus = list(gpus)
        if gpus and parallel > len(gpus):
            print(f"{len(gpus)} GPU(s): running {self.slots} jobs at a time, one per GPU",
                  flush=True)

    def run(self, jobs: Sequence) -> List[str]:
        """Run the pending jobs; returns the names of those that failed or were skipped because
        a job they need failed (as scripts/reproduce.py's run_jobs does)."""
        order = prerequisites(jobs)
        succeeded: Set[str] = set()
        failed: List[str] = []
        waiting = []
        for job in jobs:
            if job.done():
                print(f"[done] {job.name}: {job.output}", flush=True)
                succeeded.add(job.name)
            else:
                waiting.append(job)
        remove_finished_caches(jobs)
        running: Dict[str, _Running] = {}
        try:
            while waiting or running:
                for name, run in list(running.items()):
                    code = run.process.poll()
                    if code is not None:
                        del running[name]
                        if self._finish(run, code):
                            succeeded.add(name)
                        else:
                            failed.append(name)
                        remove_finished_caches(jobs)
                for job in list(waiting):
                    after_ok, after_any = order[job.name]
                    blocked = [name for name in after_ok if name in failed]
                    if blocked:
                        print(f"[skipped] {job.name}: needs the failed job(s) "
                              f"{', '.join(blocked)}", flush=True)
                        failed.append(job.name)
                        waiting.remove(job)
                        continue
                    ended = succeeded.union(failed)
                    ready = (all(name in succeeded for name in after_ok)
                             and all(name in ended for name in after_any))
                    if ready and len(running) < self.slots:
                        running[job.name] = self._start(job)
                        waiting.remove(job)
                if waiting or running:
                    time.sleep(POLL_SECONDS)
        except KeyboardInterrupt:
            self._stop(running.values())
            raise
        return failed

    def _start(self, job) -> _Running:
        argv = command_now(job)
        gpu = self.free_gpus.pop(0) if self.free_gpus else None
        log = run_folder(job) / LOG_FILE
        log.parent.mkdir(parents=True, exist_ok=True)
        started = datetime.datetime.now().isoformat(timespec="seconds")
        where = socket.gethostname() + ("" if gpu is None else f", CUDA_VISIBLE_DEVICES={gpu}")
        with open(log, "a") as file:
            file.write(f"==> {started} on {where}: {shlex.join(argv)}\n")
            file.flush()
            process = subprocess.Popen(python_command(argv), cwd=REPO_ROOT, stdout=file,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env=os.environ if gpu is None else
                                       {**os.environ, "CUDA_VISIBLE_DEVICES": gpu},
                                       start_new_session=True)
        record = dict(executor="local", host=socket.gethostname(), pid=process.pid,
                      started=started, command=shlex.join(argv), log=str(log), gpu=gpu)
        write_record(job, **record, exit_code=None)
        print(f"[run] {job.name}" + ("" if gpu is None else f" on GPU {gpu}")
              + f"\n      {shlex.join(argv)}\n      log: {log}", flush=True)
        return _Running(job, process, gpu, record)

    def _finish(self, run: _Running, code: int) -> bool:
        """Record how a job ended and say it; True if it succeeded."""
        if run.gpu is not None:
            self.free_gpus.append(run.gpu)
        write_record(run.job, **run.record, exit_code=code)
        if code == 0 and run.job.done():
            print(f"[done] {run.job.name}: {run.job.output}", flush=True)
            return True
        print(f"[failed] {failure(run.job, code, last_line(run.record['log']))}\n"
              f"      log: {run.record['log']}", flush=True)
        return False

    def _stop(self, running) -> None:
        """SIGTERM every running job (train.py saves last.pt), wait and record them."""
        running = list(running)
        for run in running:
            if run.process.poll() is None:
                run.process.send_signal(signal.SIGTERM)
        for run in running:
            code = run.process.wait()
            write_record(run.job, **run.record, exit_code=code)
            print(f"[stopped] {run.job.name} (exit code {code}; log: {run.record['log']})",
                  flush=True)


def run_parallel(jobs: Sequence, parallel: int, gpus: Optional[Sequence[str]] = None
                 ) -> List[str]:
    """Run `jobs` `parallel` at a time on this machine's GPUs (`visible_gpus()` by default) or
    CPUs; returns the names of the jobs that failed or were skipped."""
    return LocalExecutor(parallel, visible_gpus() if gpus is None else gpus).run(jobs)
