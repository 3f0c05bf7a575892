"""Run folders: where a train.py / test.py run writes everything, and sacred's record of it there.

A run folder holds sacred's record of the run (config.json, run.json, cout.txt, metrics.json),
its TensorBoard events (tensorboard/) and what the run makes:
checkpoints/ (train.py) or results.json (test.py). The folder is

- `train.output_dir` / `test.output_dir` when set;
- for train.py resuming `<run>/checkpoints/<name>.pt`: that `<run>`, so a resumed run continues
  in its own folder (sacred's metrics and stdout appended, one TensorBoard stream);
- otherwise a new numbered folder `runs/<id>` under the current directory.

Under torchrun only rank 0 records; every rank learns rank 0's folder (`shared_run_dir`).
The recording process holds the folder's lock (`panet.base.lock`) from before its first write to
the end of the run, so a second train.py / test.py writing the same folder stops at once.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any, Mapping, NoReturn, Optional, Sequence

from sacred import Experiment
from sacred.observers import FileStorageObserver
from sacred.run import Run

from panet.base import distributed
from panet.base.device import describe_device, device_line
from panet.base.lock import RunFolderLock

REPO_ROOT = Path(__file__).resolve().parents[2]  # where train.py and test.py live
RUNS_DIR = "runs"
RESULTS_FILE = "results.json"  # what test.py writes into its run folder
OPTION_OBSERVERS = ("-F", "--file_storage", "-u", "--unobserved", "-m", "--mongo_db")
CAPTURE_OPTIONS = ("-C", "--capture")


def planned_run_dir(output_dir: Optional[str], resumed=None) -> Optional[Path]:
    """The run folder asked for (see the module docstring): `output_dir` (train.output_dir /
    test.output_dir) when set, else the run folder of a resumed checkpoint (`resumed`, a
    `panet.weights.model_files.CheckpointRef`), else None for a new numbered one."""
    if output_dir is not None:
        return Path(output_dir).expanduser()
    return None if resumed is None else resumed.run_dir


class RunObserver(FileStorageObserver):
    """sacred's file observer, writing into the run folder the config asks for (an existing
    one is continued) or else into a new numbered folder under `runs_dir`. It locks the folder
    before writing anything there and unlocks it when the run ends (`panet.base.lock`)."""

    def __init__(self, ex: Experiment, runs_dir: str = RUNS_DIR):
        super().__init__(runs_dir)
        self.ex = ex
        self._target: Optional[Path] = None
        self._lock: Optional[RunFolderLock] = None

    def started_event(self, ex_info, command, host_info, start_time, config, meta_info, _id):
        self._target = run_dir_asked(self.ex, config)
        if self._target is not None:  # sources go inside the run folder, not beside it
            self.basedir = str(self._target.parent)
            self.source_dir = self._target / "_sources"
            self.resource_dir = self._target / "_resources"
        return super().started_event(ex_info, command, host_info, start_time, config,
                                     meta_info, _id)

    def _make_run_dir(self, _id):
        if self._target is None:
            super()._make_run_dir(_id)  # a new numbered folder: nobody else writes it yet
            self._lock = RunFolderLock(self.dir).acquire()
            return
        self._lock = RunFolderLock(self._target).acquire()  # RunFolderBusy: nothing written
        self.dir = str(self._target)

    # A run refused by the lock never started here: there is no record of it to finish.
    def completed_event(self, stop_time, result):
        self._finish(super().completed_event, stop_time, result)

    def interrupted_event(self, interrupt_time, status):
        self._finish(super().interrupted_event, interrupt_time, status)

    def failed_event(self, fail_time, fail_trace):
        self._finish(super().failed_event, fail_time, fail_trace)

    def _finish(self, record, *args) -> None:
        if self._lock is None:
            return
        try:
            record(*args)
        finally:
            self._lock.release()
            self._lock = None


def run_dir_asked(ex: Experiment, config: Mapping[str, Any]) -> Optional[Path]:
    """The run folder `config` asks of `ex` (a `panet.run.experiments.PanetExperiment`)."""
    resumed = ex.request.checkpoint if ex.script == "train" else None
    return planned_run_dir(config[ex.script]["output_dir"], resumed)


def run_directory(run: Run, ex: Experiment) -> Optional[Path]:
    """Where this process's run writes: its observer's folder, else the configured one."""
    for observer in run.observers:
        if getattr(observer, "dir", None):
            return Path(observer.dir)
    return run_dir_asked(ex, run.config)


def shared_run_dir(run: Run, ex: Experiment, context: distributed.Context) -> Optional[Path]:
    """Rank 0's run folder on every rank (only rank 0 has an observer)."""
    mine = run_directory(run, ex)
    shared = distributed.broadcast_object(None if mine is None else str(mine), context)
    return None if shared is None else Path(shared)


def announce_device(run: Run, context: distributed.Context, tf32: bool) -> dict:
    """Print what computes (`panet.base.device.describe_device`) on rank 0 and keep it in the run
    record (run.json's "info"); returns the description."""
    description = describe_device(context.device, tf32)
    if context.is_main:
        print(device_line(description) + (f" x {context.world_size} processes"
                                          if context.distributed else ""), flush=True)
        run.info["device"] = {**description, "processes": context.world_size}
    return description


def command_of(ex: Experiment, argv: Sequence[str]) -> str:
    """The sacred command an argv runs: its first argument when that names a command, else
    the experiment's main function."""
    return argv[1] if len(argv) > 1 and argv[1] in ex.commands else ex.default_command


def run_from_command_line(ex: Experiment, argv: Optional[Sequence[str]] = None):
    """Run `ex` (a `PanetExperiment`) from the command line. The main function of the main
    process is recorded in its run folder (`RunObserver`) unless the command line names its own
    observer; other commands (print_config, ...) are not recorded. An interrupted run exits
    with status 130 without a traceback (train.py prints how to continue it). In a Slurm job,
    output is captured in Python (`--capture=sys`) unless the command line chooses."""
    argv = list(sys.argv if argv is None else argv)
    chosen = any(arg.startswith(CAPTURE_OPTIONS) for arg in argv)
    if os.environ.get("SLURM_JOB_ID") and not chosen:
        # Slurm signals every process of a job it stops: sacred's default capture, a `tee`
        # child process, would die first and break the output train.py saves last.pt with
        argv.append("--capture=sys")
    observer = None
    if (distributed.is_main_process() and command_of(ex, argv) == ex.default_command
            and not any(flag in argv for flag in OPTION_OBSERVERS)):
        observer = RunObserver(ex)
        ex.observers.append(observer)
    try:
        return ex.run_commandline(argv)
    except KeyboardInterrupt:  # Ctrl-C / SIGTERM: the run has said how to continue
        sys.exit(130)
    finally:
        if observer is not None:
            ex.observers.remove(observer)


def script_main(ex: Experiment) -> NoReturn:
    """What `python train.py ...` and `python test.py ...` do: `run_from_command_line`, then
    exit with its status; a worker of several torchrun processes (a process group, hence
    gloo's or NCCL's threads) exits through `distributed.exit_worker`."""
    status = 0
    try:
        run_from_command_line(ex)
    except SystemExit as stop:
        status = stop.code
    if distributed.launched_processes() > 1:
        distributed.exit_worker(status)
    sys.exit(status)


def load_experiment(script: str) -> Experiment:
    """The sacred experiment of train.py or test.py (`script` "train" | "test"), imported from
    the repository root under another module name (`test` is also a standard-library package).
    """
    spec = importlib.util.spec_from_file_location(f"panet_{script}_script",
                                                  REPO_ROOT / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ex
