"""Where scripts/reproduce.py runs its jobs (docs/cluster.md), and where they stand:

- default (`--executor local`, `--parallel 1`): one after another, their output streaming
  through this process (scripts/reproduce.py's run_jobs);
- `--executor local --parallel K`: K at a time on this machine, one per GPU where there are GPUs
  (panet/parallel.py);
- `--executor slurm`: one Slurm job per pending job, submitted with their dependencies, and the
  command returns at once, or with `--wait` once every job is done or failed (panet/slurm.py);
- `--status`: each job done / running / pending / failed, from the run folders and squeue
  (panet/jobstatus.py).
"""

from __future__ import annotations

import argparse
from typing import List, Optional, Sequence

from panet.reproduce.jobstatus import FAILED, report
from panet.reproduce.parallel import run_parallel
from panet.reproduce.slurm import DEFAULT_TIME, SlurmOptions, current_statuses, submit, time_minutes, wait

EXECUTORS = ("local", "slurm")
SLURM_ONLY = ("slurm_partition", "slurm_time", "gpus_per_job", "cpus_per_job", "slurm_mem",
              "slurm_extra", "wait")


def add_options(parser: argparse.ArgumentParser) -> None:
    """The executor options of scripts/reproduce.py."""
    group = parser.add_argument_group("where jobs run (docs/cluster.md)")
    group.add_argument("--executor", choices=EXECUTORS, default="local",
                       help="local: on this machine (default); slurm: one Slurm job per pending "
                            "job, submitted through submitit, logs in <run folder>/slurm/")
    group.add_argument("--parallel", type=int, default=1, metavar="K",
                       help="local: K jobs at a time, each on its own GPU where there are GPUs, "
                            "output in <run folder>/job.log (default 1: one after another, "
                            "output here)")
    group.add_argument("--status", action="store_true",
                       help="say where each job stands (done / running / pending / failed, "
                            "with the log of a failed one) and run nothing")
    group.add_argument("--wait", action="store_true",
                       help="slurm: return once every job is done or failed (then write the "
                            "table), instead of right after submitting")
    group.add_argument("--slurm-partition", help="slurm: the partition (default: Slurm's)")
    group.add_argument("--slurm-time",
                       help=f"slurm: time limit per job, e.g. 4:00:00 (default {DEFAULT_TIME}); "
                            "a train job reaching it saves last.pt and is requeued to continue")
    group.add_argument("--gpus-per-job", type=int, help="slurm: GPUs per job (default 1)")
    group.add_argument("--cpus-per-job", type=int,
                       help="slurm: CPUs per job (default: Slurm's; data.workers + 1 is enough)")
    group.add_argument("--slurm-mem", help="slurm: memory per job, e.g. 32G (default: Slurm's)")
    group.add_argument("--slurm-extra", action="append", metavar="KEY=VALUE",
                       help="slurm: any other sbatch option, e.g. qos=high or account=lab "
                            "(repeatable)")


def check_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse (parser.error) executor options that do not go together."""
    if args.parallel < 1:
        parser.error(f"--parallel must be at least 1, got {args.parallel}")
    if args.executor == "slurm" and args.parallel != 1:
        parser.error("--parallel K is for --executor local; Slurm runs as many jobs at once "
                     "as the cluster gives")
    given = [name for name in SLURM_ONLY if getattr(args, name) not in (None, False)]
    if given and args.executor != "slurm":
        parser.error(f"{', '.join('--' + name.replace('_', '-') for name in given)}: Slurm "
                     "options, add --executor slurm")
    if args.status and args.dry_run:
        parser.error("--status and --dry-run: choose one")
    for flag, value, least in (("--gpus-per-job", args.gpus_per_job, 0),
                               ("--cpus-per-job", args.cpus_per_job, 1)):
        if value is not None and value < least:
            parser.error(f"{flag} must be at least {least}, got {value}")
    try:
        if args.slurm_time is not None:
            time_minutes(args.slurm_time)
    except ValueError as error:
        parser.error(f"--slurm-time {error}")
    for item in args.slurm_extra or ():
        key, equals, _ = item.partition("=")
        if not equals or not key.strip():
            parser.error(f"--slurm-extra {item!r}: expected KEY=VALUE, e.g. qos=high")


def slurm_options(args: argparse.Namespace) -> SlurmOptions:
    extra = tuple(tuple(item.split("=", 1)) for item in args.slurm_extra or ())
    return SlurmOptions(partition=args.slurm_partition, time=args.slurm_time or DEFAULT_TIME,
                        gpus_per_job=1 if args.gpus_per_job is None else args.gpus_per_job,
                        cpus_per_job=args.cpus_per_job, mem=args.slurm_mem, extra=extra)


def runs_here(args: argparse.Namespace) -> bool:
    """Whether the jobs run the default way: one after another in this process."""
    return args.executor == "local" and args.parallel == 1


def status_report(jobs: Sequence) -> str:
    """--status: every job's line and the counts."""
    return report(current_statuses(jobs))


def execute(jobs: Sequence, args: argparse.Namespace) -> Optional[List[str]]:
    """Run or submit the jobs as the options say. Returns the names of the jobs that failed
    (or were skipped because a job they need failed) once every job has ended, or None when
    jobs submitted to Slurm are still queued (the command returns without waiting)."""
    if args.executor == "local":
        return run_parallel(jobs, args.parallel)
    submit(jobs, slurm_options(args))
    statuses = wait(jobs) if args.wait else current_statuses(jobs)
    if not all(status.finished for status in statuses):
        print("submitted. Follow them with --status (the same options); once they are done, "
              "the same command writes the outputs (or add --wait)", flush=True)
        return None
    return [status.name for status in statuses if status.state == FAILED]
