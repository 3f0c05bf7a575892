"""The sacred experiments of train.py and test.py, built here; the scripts add their main function.

    ex = experiment("train")        # train.py
    @ex.main
    def main(_run, _config): ...
    if __name__ == "__main__":
        script_main(ex)

Before any command runs, its configuration is composed (`panet.run.compose`) and checked
(`panet.run.validation`, `panet.run.disk`); sacred then runs with that config and no named
configs of its own. The main process's run is recorded in its run folder (`RunObserver`) unless
the command line names another observer; the folder has one writer (`panet.run.folder`).
Errors a user can act on (`OneLineError`) end the command in one line each, with status 1.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Dict, NoReturn, Optional, Sequence

from sacred import Experiment
from sacred.config.config_dict import ConfigDict
from sacred.observers import FileStorageObserver
from sacred.run import Run

from panet.base import distributed
from panet.base.device import describe_device, device_line
from panet.base.errors import ConfigError, OneLineError, one_line
from panet.base.rules import problem
from panet.run.compose import CHECKPOINT_KEYS, Composition, compose, flatten
from panet.run.folder import RUNS_DIR, CheckpointRef, RunFolder, resolve_checkpoint
from panet.run.disk import path_problems, planned_run_folder
from panet.run.validation import config_problems
from panet.settings import Settings

STOPPED = "stopped"  # run.info key of an interrupted run's message: how to continue it
OPTION_OBSERVERS = ("-F", "--file_storage", "-u", "--unobserved", "-m", "--mongo_db")
CAPTURE_OPTIONS = ("-C", "--capture")


class DocumentedConfig(ConfigDict):
    """The settings' defaults as sacred's config, with each field's doc for `print_config`."""

    def __init__(self):
        super().__init__(Settings.defaults())

    def __call__(self, fixed=None, preset=None, fallback=None):
        summary = super().__call__(fixed, preset, fallback)
        summary.docs.update(Settings.docs())
        return summary


def compose_command(script: str, names: Sequence[str], command_line: Dict[str, Any],
                    checkpoint: Optional[CheckpointRef] = None) -> Composition:
    """`compose` of a command, the checkpoint its values name resolved first (a missing or
    unreadable one is a ConfigError naming the key) unless given (`checkpoint`: reproduce.py
    checks a test job against the checkpoint its train job will write)."""
    key = CHECKPOINT_KEYS[script]
    given = command_line.get(key)
    if given is None:  # a named config may name it (a .yaml file given by path)
        given = compose(script, names, command_line).settings.value(key)
    if given and checkpoint is None:
        try:
            checkpoint = resolve_checkpoint(given)
        except (FileNotFoundError, ValueError) as error:
            raise ConfigError([problem(key, given, one_line(error))]) from None
    return compose(script, names, command_line, checkpoint)


class PanetExperiment(Experiment):
    """The sacred experiment of train.py or test.py (`script`); `composition`: the command's."""

    def __init__(self, name: str, script: str):
        super().__init__(name)
        self.script = script
        self.configurations.append(DocumentedConfig())
        self.logger = _sacred_logger()
        self.composition: Optional[Composition] = None
        self.from_command_line = False

    def run(self, command_name=None, config_updates=None, named_configs=(), info=None,
            meta_info=None, options=None):
        try:
            composition = compose_command(self.script, list(named_configs),
                                          flatten(config_updates or {}))
            problems = config_problems(composition)
            if not problems and command_name in (None, self.default_command):
                problems = path_problems(composition)
            if problems:
                raise ConfigError(problems)
            self.composition = composition
            return super().run(command_name, composition.config, (), info, meta_info, options)
        except OneLineError as error:
            if not self.from_command_line:
                raise
            print(error, file=sys.stderr, flush=True)
            raise SystemExit(1) from None

    def run_commandline(self, argv=None):
        self.from_command_line = True
        try:
            return super().run_commandline(argv)
        finally:
            self.from_command_line = False


def experiment(script: str) -> PanetExperiment:
    """The experiment of train.py ("train") or test.py ("test"), without its main function."""
    return PanetExperiment(f"panet_{script}", script)


class RunObserver(FileStorageObserver):
    """sacred's file observer, writing into the run folder the composition asks for, or a new
    runs/<id>; it holds the folder's lock from before its first write until the run ends."""

    def __init__(self, ex: PanetExperiment):
        super().__init__(RUNS_DIR)
        self.ex = ex
        self.folder: Optional[RunFolder] = None

    def started_event(self, ex_info, command, host_info, start_time, config, meta_info, _id):
        planned = planned_run_folder(self.ex.composition)
        if planned is not None:  # sources go inside the run folder, not beside it
            self.basedir = str(planned.path.parent)
            self.source_dir = planned.path / "_sources"
            self.resource_dir = planned.path / "_resources"
        self.folder = planned
        return super().started_event(ex_info, command, host_info, start_time, config,
                                     meta_info, _id)

    def _make_run_dir(self, _id):
        if self.folder is None:
            super()._make_run_dir(_id)  # a new numbered folder: nobody else writes it yet
            self.folder = RunFolder(self.dir)
        self.folder.lock()  # RunFolderBusy: nothing written
        self.dir = str(self.folder.path)

    # A run refused by the lock never started here: there is no record of it to finish.
    def completed_event(self, stop_time, result):
        self._finish(super().completed_event, stop_time, result)

    def interrupted_event(self, interrupt_time, status):
        run = self.ex.current_run
        self._finish(super().interrupted_event, interrupt_time, status,
                     last_words=None if run is None else run.info.get(STOPPED))

    def failed_event(self, fail_time, fail_trace):
        error = fail_trace[-1].strip() if fail_trace else None
        self._finish(super().failed_event, fail_time, fail_trace, last_words=error)

    def _finish(self, record, *args, last_words: Optional[str] = None) -> None:
        """Record how the run ended and give the folder up; an interrupted or failed run's last
        words (how to continue, the error) are added to cout.txt, which sacred fills only up to
        its last heartbeat."""
        if self.folder is None or not self.dir:
            return
        try:
            record(*args)
            if last_words:
                with open(Path(self.dir) / "cout.txt", "a") as cout:
                    cout.write(f"\n{last_words}\n")
        finally:
            self.folder.unlock()
            self.folder = None


def run_folder(run: Run, ex: PanetExperiment, context: distributed.Context
               ) -> Optional[RunFolder]:
    """The run folder this run writes, the same on every rank: the one asked for, else its file
    observer's, else None. The main process becomes its writer (`RunFolder.lock`)."""
    planned = planned_run_folder(ex.composition)
    mine = planned.path if planned is not None else next(
        (Path(observer.dir) for observer in run.observers if getattr(observer, "dir", None)),
        None)
    shared = distributed.broadcast_object(None if mine is None else str(mine), context)
    if shared is None:
        return None
    folder = RunFolder(shared)
    return folder.lock() if context.is_main else folder


def announce_device(run: Run, context: distributed.Context, tf32: bool) -> dict:
    """Print what computes (`describe_device`) on rank 0, keep it in run.json's "info" and
    return it."""
    description = {key: value if value is None or isinstance(value, (bool, int, float))
                   else str(value) for key, value in describe_device(context.device, tf32).items()}
    if context.is_main:
        print(device_line(description) + (f" x {context.world_size} processes"
                                          if context.distributed else ""), flush=True)
        run.info["device"] = {**description, "processes": context.world_size}
    return description


def run_from_command_line(ex: PanetExperiment, argv: Optional[Sequence[str]] = None):
    """Run `ex` from the command line (module docstring). An interrupted run exits with status
    130, no traceback; in a Slurm job, output is captured with `--capture=sys` unless chosen."""
    argv = list(sys.argv if argv is None else argv)
    warnings.formatwarning = _one_line_warning
    if os.environ.get("SLURM_JOB_ID") and not any(a.startswith(CAPTURE_OPTIONS) for a in argv):
        # Slurm signals every process of a job it stops: sacred's default capture, a `tee`
        # child process, would die first and break the output train.py saves last.pt with
        argv.append("--capture=sys")
    command = argv[1] if len(argv) > 1 and argv[1] in ex.commands else ex.default_command
    observer = None
    if (distributed.is_main_process() and command == ex.default_command
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


def script_main(ex: PanetExperiment) -> NoReturn:
    """`run_from_command_line`, then exit with its status (a worker of several torchrun
    processes through `distributed.exit_worker`)."""
    status = 0
    try:
        run_from_command_line(ex)
    except SystemExit as stop:
        status = stop.code
    if distributed.launched_processes() > 1:
        distributed.exit_worker(status)
    sys.exit(status)


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """A warning as people read it: `warning: <message>`, no source path."""
    return f"warning: {message}\n"


class _QuietRecords(logging.Filter):
    """Drops sacred's log lines that say nothing a user acts on: its warning when a key is set
    to None or back (model.weights=None), and "Failed after" following a one-line error."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("Changed type of config entry") and "NoneType" in message:
            return False
        return not (message.startswith("Failed after")
                    and isinstance(sys.exc_info()[1], OneLineError))


def _sacred_logger() -> logging.Logger:
    logger = logging.getLogger("panet")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s - %(name)s - %(message)s"))
        handler.addFilter(_QuietRecords())
        logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(logging.INFO)
    return logger
