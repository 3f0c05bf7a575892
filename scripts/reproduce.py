"""Reproduce the paper: run the train.py / test.py jobs of a table, analysis or figure, then
write our numbers beside the paper's (docs/reproducing.md, docs/cluster.md).

    python scripts/reproduce.py --table 1 --dry-run       # the commands, their state, GPU hours
    python scripts/reproduce.py --table 1                 # run what is not done, write table1.md
    python scripts/reproduce.py --analysis prototype-distance   # Sec. 4.3
    python scripts/reproduce.py --figure loss-curves|qualitative   # Fig. 5; Figs. 3, 4, 6
    python scripts/reproduce.py --table 1 --synthetic     # toy scale on generated data (CI)
    python scripts/reproduce.py --table cdfss --dry-run   # cross-domain: docs/cross-domain.md
    python scripts/reproduce.py --table 1 --factory M:C --name Ours --also PANet=results
    python scripts/reproduce.py --table 1 --executor local --parallel 8   # 8 GPUs, a job each
    python scripts/reproduce.py --table 1 --executor slurm --slurm-partition gpu   # then:
    python scripts/reproduce.py --table 1 --status        # what a plain run would do with each job

Every job is checked before the first one starts (--dry-run lists what would stop them); each
writes <out>/runs/<job>/. Done jobs (their output records what they would make now) are skipped,
unfinished training resumes from last.pt, "changed" outputs stop the command unless
--rerun-changed. Tables are written once a test has its result; each keeps its commit.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Callable, List, NamedTuple, Optional, Sequence

from panet.base.device import use_device
from panet.base.errors import OneLineParser
from panet.models import ENCODERS
from panet.models.numerics import MEMORY_FORMATS, PRECISIONS
from panet.report.render import write_report
from panet.reproduce import grid, specs
from panet.reproduce.executors import Run, execute
from panet.reproduce.jobrun import CHANGED, DONE, JobStatus, report, summary
from panet.reproduce.jobs import (FEATURE_CACHE_GB, FOLDS, REPO_ROOT, Job, Scale, Variant,
                                  absent_synthetic, jobs_for, train_job)
from panet.reproduce.outputs import job_problems, set_aside
from panet.reproduce.slurm import (DEFAULT_TIME, SlurmError, SlurmOptions, current_statuses,
                                   time_minutes)
from panet.run import identity
from panet.run.folder import RunFolder, checkpoint_file, resolve_checkpoint

TOY = {"steps": 5, "test_runs": 1, "test_episodes": 8}  # Table 1 in ~3 minutes on 2 cores
# --dry-run: VGG-16 at 417 px, forward + backward ~414 GFLOP at ~7 TFLOP/s (half a V100's peak)
GPU_SECONDS_PER_IMAGE = 0.06
SLURM_ONLY = ("slurm_partition", "slurm_time", "gpus_per_job", "cpus_per_job", "slurm_mem",
              "slurm_extra", "wait")


class Target(NamedTuple):
    """What was asked: the jobs it reads, what this process then does (--dry-run says it), and
    `write`, which does it and returns the file written."""

    jobs: List[Job]
    then: str
    write: Callable[[], Path]


def table_target(number: str, scale: Scale, name: Optional[str] = None,
                 also: Sequence[tuple] = ()) -> Target:
    spec = specs.TABLES[number]
    settings = spec.settings(scale.training_seeds, scale.encoder)
    jobs = jobs_for(settings, scale)

    def write() -> Path:
        results, commit = grid.read_results(jobs), grid.code_label(identity.code_version())
        parameters = specs.encoder_parameters(scale.synthetic, scale.encoder) if spec.params \
            else None
        others = {}
        for other, folder in also:  # another method's runs of the same jobs
            their_jobs = jobs_for(settings, replace(scale, out=folder, factory=None))
            their_results = grid.read_results(their_jobs)
            others[other] = (their_results, grid.resampled_results(their_jobs, their_results))
        method = name or (scale.factory.rpartition(":")[2] if scale.factory else None)
        provenance = grid.Provenance(commit, scale.synthetic, scale.training_seeds,
                                     scale.encoder, parameters, jobs, method, others)
        report = grid.table_report(spec, results, specs.load_paper_results(), provenance,
                                   grid.resampled_results(jobs, results))
        return write_report(report, scale.out / spec.stem, grid.commit_note(results, commit))

    return Target(jobs, f"write {scale.out}/{spec.stem}.md (and .tex) from the results", write)


def analysis_target(scale: Scale, device: str) -> Target:
    from panet.report.analysis import measure_prototype_distance, prototype_distance_report

    models = {name: replace(setting, encoder=scale.encoder)
              for name, setting in specs.PROTOTYPE_DISTANCE_MODELS.items()}
    jobs = [train_job(setting, scale) for setting in models.values()]

    def write() -> Path:
        measured = {name: measure_prototype_distance(
            job.output, scale.test_episodes, device=use_device(device), fold=setting.fold,
            ways=setting.ways, shots=setting.shots, **data_root(scale, setting.dataset))
            for (name, setting), job in zip(models.items(), jobs)}
        print("\n".join(f"{name}: {value}" for name, value in measured.items()), flush=True)
        report = prototype_distance_report(
            measured, specs.load_paper_results()[specs.PROTOTYPE_DISTANCE_PAPER_KEY],
            setting=f"fold 0, 1-way 5-shot, {scale.test_episodes} test episodes (seed 1234) "
                    f"of the models {', '.join(job.name for job in jobs)}",
            commit=grid.code_label(identity.code_version()), synthetic_scale=scale.synthetic)
        return write_report(report, scale.out / "prototype_distance")

    return Target(jobs, f"measure Sec. 4.3's prototype distances over {scale.test_episodes} "
                  f"episodes per model here -> {scale.out / 'prototype_distance.md'}", write)


def loss_curves_target(scale: Scale, fold: int, runs: Optional[List[Path]]) -> Target:
    """Fig. 5 from a table's models, or the curves of any train.py run folders (`runs`)."""
    from panet.report.analysis import read_training_curves
    from panet.report.figures import plot_loss_curves

    models = {} if runs else specs.loss_curve_models(fold, scale.encoder)
    jobs = [train_job(setting, scale) for setting in models.values()]
    path = (runs[0] / "loss_curves.png" if runs
            else scale.out / "runs" / "figures" / f"loss_curves_fold{fold}.png")

    def write() -> Path:
        panels: dict = {"training loss": {str(run): read_training_curves(run)
                                          for run in runs}} if runs else {}
        for (shots, align), job in zip(models, jobs):
            panels.setdefault(f"fold {fold}, 1-way {shots}-shot", {})[
                "PANet" if align else "PANet w/o PAR"] = read_training_curves(job.folder)
        return plot_loss_curves(panels, path)

    return Target(jobs, f"plot the logged losses -> {path}", write)


def qualitative_target(args: argparse.Namespace, scale: Scale) -> Target:
    """The overlays of --checkpoint, or of Table 1's 1-shot PANet of --fold, in the run folder
    of the model shown; --data-root replaces the data root either reads."""
    from panet.report.figures import save_qualitative

    setting = specs.TABLES["1"].setting(Variant(), 1, args.fold, encoder=scale.encoder)
    jobs = [] if args.checkpoint else [train_job(setting, scale)]
    checkpoint = args.checkpoint or jobs[0].output
    folder = RunFolder.of_checkpoint(checkpoint)
    path = (scale.out / "runs" / "figures" if folder is None else folder.path) / "qualitative.png"

    def write() -> Path:
        named = args.checkpoint and resolve_checkpoint(checkpoint).config["data"]["name"]
        dataset = "coco" if named == "coco" else "voc"
        return save_qualitative(checkpoint, path, args.episodes, device=use_device(args.device),
                                **data_root(scale, dataset))

    return Target(jobs, f"segment {args.episodes} test episodes here -> {path}", write)


def data_root(scale: Scale, dataset: str) -> dict:
    """data.* overrides of an evaluation in this process: --data-root's."""
    root = scale.data_root_of(dataset)
    return {} if root is None else {"root": str(root)}


def describe_plan(jobs: Sequence[Job], statuses: Sequence[JobStatus], seconds: float) -> str:
    """--dry-run: every command with its state and estimated GPU hours, then the estimate."""
    lines = []
    for job, status in zip(jobs, statuses):
        partial = job.partial_checkpoint()
        lines += [f"[{status.state}, ~{job.gpu_seconds(seconds) / 3600:.2f} GPU h"
                  + ("" if partial is None else f", resumes from {partial}") + f"] {job.name}",
                  f"    {job.command}"]
    left = sum(job.gpu_seconds(seconds) for job, status in zip(jobs, statuses)
               if status.state != DONE) / 3600
    total = sum(job.gpu_seconds(seconds) for job in jobs) / 3600
    shared = sorted({str(path) for job in jobs for path in job.cleanup})
    return "\n".join(lines + [
        "", summary(statuses) + ".",
        f"Estimated GPU time (an estimate, not a measurement): {left:.2f} GPU hours pending "
        f"(the jobs not done), {total:.2f} for all jobs.",
        f"Assumption: {seconds} s per training image (VGG-16 at 417 px on a V100-class GPU), a "
        "test image 1/3 of that, W*S + Q images per step or episode (tests encode each distinct "
        "image once: fewer, scripts/bench_eval.py --count); data loading not counted."] + (
        [f"Feature caches (removed after their last test): {', '.join(shared)}"] * bool(shared)))


def at_least(least: int) -> Callable[[str], int]:
    """An argparse type: an integer >= `least`."""
    def parse(text: str) -> int:
        if not text.strip().lstrip("-").isdigit() or int(text) < least:
            raise argparse.ArgumentTypeError(f"expected an integer >= {least}, got {text!r}")
        return int(text)
    return parse


def add_options(parser: argparse.ArgumentParser) -> None:
    """What to reproduce, at what scale, and where jobs run."""
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--table", choices=list(specs.TABLES), help="1-6, or cdfss (cross-domain)")
    what.add_argument("--analysis", choices=["prototype-distance"])
    what.add_argument("--figure", choices=["loss-curves", "qualitative"])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="list the jobs, states, GPU hours")
    mode.add_argument("--status", action="store_true", help="say what a run would do with each job")
    add, count = parser.add_argument, at_least(1)
    add("--rerun-changed", action="store_true", help="rerun the changed jobs (default: refuse)")
    add("--seeds", type=count, default=1, help="training seeds per model (1234, 1235, ...)")
    add("--synthetic", action="store_true", help="toy scale on the synthetic dataset")
    add("--out", type=Path, help="where runs/ and the outputs go (default results/[synthetic/])")
    add("--data-root", type=Path, help="holds VOC2012/ and COCO/, or the synthetic dataset")
    add("--steps", type=count, help=f"--synthetic: training steps (default {TOY['steps']})")
    add("--test-runs", type=count, help=f"--synthetic: test runs (default {TOY['test_runs']})")
    add("--test-episodes", type=count,
        help=f"--synthetic: episodes per test run (default {TOY['test_episodes']})")
    add("--size", type=count, help="--synthetic: input size (default: configs/small.yaml's)")
    add("--gpu-seconds-per-image", type=float, default=GPU_SECONDS_PER_IMAGE,
        help=f"dry-run: seconds per training image on one GPU (default {GPU_SECONDS_PER_IMAGE})")
    add("--feature-cache-gb", type=float, default=FEATURE_CACHE_GB,
        help=f"the shared features' disk budget; 0: none (default {FEATURE_CACHE_GB})")
    add("--released", type=Path, metavar="DIR", help="test the authors' snapshots in DIR")
    add("--encoder", choices=list(ENCODERS), help="train and test with this encoder")
    add("--factory", metavar="MODULE:CALLABLE", help="your own method (model.factory)")
    add("--name", help="the name of the method the rows of our runs are (default: PANet, or "
                       "the --factory's callable)")
    add("--also", action="append", metavar="NAME=DIR", default=[],
        help="tables: add the rows of another method, its runs under DIR (that method's --out, "
             "at the same scale), named NAME")
    add("--precision", choices=list(PRECISIONS), help="add precision=<this> to every job")
    add("--memory-format", choices=list(MEMORY_FORMATS), help="add memory_format=<this>")
    add("--fold", type=int, default=0, choices=FOLDS, help="figures: the models' fold")
    add("--checkpoint", type=Path, help="qualitative: a train.py checkpoint to show")
    add("--episodes", type=count, default=4, help="qualitative: episodes shown")
    add("--run", type=Path, action="append", help="loss-curves: these train.py run folders")
    add("--device", default="auto", help="analysis, qualitative: auto, cpu, cuda, cuda:N")
    add("--executor", choices=("local", "slurm"), default="local", help="slurm: via submitit")
    add("--parallel", type=count, default=1, metavar="K", help="local: K jobs at a time")
    add("--wait", action="store_true", help="slurm: return once every job has finished")
    add("--slurm-partition", help="slurm: the partition")
    add("--slurm-time", help=f"slurm: time limit per job (default {DEFAULT_TIME})")
    add("--gpus-per-job", type=at_least(0), help="slurm: GPUs per job (default 1)")
    add("--cpus-per-job", type=count, help="slurm: CPUs per job")
    add("--slurm-mem", help="slurm: memory per job, e.g. 32G")
    add("--slurm-extra", action="append", metavar="KEY=VALUE", help="slurm: e.g. qos=high")


def option_problems(args: argparse.Namespace) -> List[str]:
    """The options that do not go together."""
    slurm_only = [name for name in SLURM_ONLY if getattr(args, name) not in (None, False)]
    checks = [
        (args.executor == "slurm" and args.parallel != 1, "--parallel K is for --executor "
         "local; Slurm runs as many jobs at once as the cluster gives"),
        (slurm_only and args.executor != "slurm", ", ".join(
            "--" + name.replace("_", "-") for name in slurm_only) + ": add --executor slurm"),
        (any(not item.partition("=")[0].strip() or "=" not in item
             for item in args.slurm_extra or ()), "--slurm-extra: expected KEY=VALUE"),
        (args.released is not None and not args.table, "--released: with a --table"),
        (args.released is not None and not args.released.is_dir(),
         f"--released {args.released}: no such folder"),
        (args.run and args.figure != "loss-curves", "--run: with --figure loss-curves"),
        (args.also and not args.table, "--also: with a --table"),
        *((not name.strip() or not Path(folder).is_dir(), f"--also {item}: expected NAME=DIR, "
           "DIR a method's --out folder") for item in args.also
          for name, _, folder in [item.partition("=")]),
        *((not (run / "metrics.json").is_file(),
           f"--run {run}: not a train.py run folder (no metrics.json)") for run in args.run or ())]
    return [message for failed, message in checks if failed]


def make_scale(args: argparse.Namespace) -> Scale:
    """The Scale the options ask for (ValueError naming what does not fit)."""
    toy = {key: getattr(args, key) for key in (*TOY, "size") if getattr(args, key) is not None}
    given = ("precision", args.precision), ("memory_format", args.memory_format)
    common = dict(feature_cache_gb=args.feature_cache_gb, seeds=args.seeds, encoder=args.encoder,
                  factory=args.factory, **toy,
                  updates=tuple(f"{key}={value}" for key, value in given if value is not None))
    if args.synthetic:
        return Scale((args.out or REPO_ROOT / "results" / "synthetic").resolve(), True,
                     (args.data_root or REPO_ROOT / "data" / "synthetic").resolve(),
                     **{**TOY, **common})
    return Scale((args.out or REPO_ROOT / "results" / ("released" if args.released else ""))
                 .resolve(), data_root=args.data_root, **common,
                 released=args.released and args.released.resolve())


def make_options(args: argparse.Namespace) -> dict:
    """`execute`'s executor options (ValueError for a --slurm-time Slurm cannot read)."""
    try:
        time_minutes(args.slurm_time or DEFAULT_TIME)
    except ValueError as error:
        raise ValueError(f"--slurm-time {error}") from None
    slurm = SlurmOptions(args.slurm_partition, args.slurm_time or DEFAULT_TIME,
                         1 if args.gpus_per_job is None else args.gpus_per_job,
                         args.cpus_per_job, args.slurm_mem,
                         tuple(tuple(item.split("=", 1)) for item in args.slurm_extra or ()))
    return dict(executor=args.executor, parallel=args.parallel, wait=args.wait, slurm=slurm)


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    """The command line, with the `scale`, `options` and `target` it asks for (or a one-line
    refusal, exit status 2)."""
    parser = OneLineParser(description=__doc__.split("\n\n")[0],
                           epilog=__doc__.split("\n\n", 1)[1],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(parser)
    args = parser.parse_args(argv)
    problems = option_problems(args)
    if problems:
        parser.error("; ".join(problems))
    try:
        args.scale, args.options = make_scale(args), make_options(args)
        args.checkpoint = args.checkpoint and checkpoint_file(args.checkpoint)
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error))
    also = [(name.strip(), Path(folder).resolve())
            for name, _, folder in (item.partition("=") for item in args.also)]
    args.target = (table_target(args.table, args.scale, args.name, also) if args.table else
                   analysis_target(args.scale, args.device) if args.analysis else
                   loss_curves_target(args.scale, args.fold, args.run)
                   if args.figure == "loss-curves" else qualitative_target(args, args.scale))
    return args


def prepare(args: argparse.Namespace, data_absent: bool) -> Optional[int]:
    """Before running: --status, the configurations' check, --dry-run, the changed jobs
    (refused, or set aside with --rerun-changed), the check of their files (the ImageNet file
    fetched, not by --dry-run; none when `data_absent`). The exit code when nothing runs."""
    jobs = args.target.jobs
    statuses = current_statuses(jobs)
    if args.status:
        print(report(statuses))
        return 0
    done = [status.name for status in statuses if status.state == DONE]
    problems = job_problems(jobs, done)
    if problems:
        return cannot_run(problems)
    on_disk = [] if data_absent else job_problems(jobs, done, disk=True, fetch=not args.dry_run)
    changed = "\n".join(f"  {status.name}: {change}" for status in statuses
                        if status.state == CHANGED for change in status.changes)
    if args.dry_run:
        print(describe_plan(jobs, statuses, args.gpu_seconds_per_image) + (
            f"\nThen: {args.target.then}.") + (
            "\nMade otherwise than their jobs would make them now (recorded -> wanted; "
            f"--rerun-changed runs them again):\n{changed}" if changed else "") + (
            "\nHere, these jobs could not run:\n  " + "\n  ".join(on_disk) if on_disk else ""))
        return 0
    if changed and not args.rerun_changed:
        print("These jobs' outputs record other settings, data or code than the jobs would "
              f"make now (recorded -> wanted); nothing was started:\n{changed}\nRun them again "
              "with --rerun-changed (their run folders are kept as <name>.replaced-<n>), or "
              "give the settings they were made with.", file=sys.stderr)
        return 2
    if on_disk:
        return cannot_run(on_disk)
    for job in (job for job, status in zip(jobs, statuses) if status.state == CHANGED):
        print(f"[changed] {job.name}: kept as {set_aside(job)}; it runs again", flush=True)
    return None


def cannot_run(problems: Sequence[str]) -> int:
    print("These jobs cannot run; nothing was started:", *problems, sep="\n  ", file=sys.stderr)
    return 2


def main(argv: Optional[Sequence[str]] = None, run: Optional[Run] = None) -> int:
    """`run`: runs each job's argv in place of a process (tests)."""
    args = parse_args(argv)
    scale = args.scale
    if args.table and specs.TABLES[args.table].params:
        count = specs.encoder_parameters(scale.synthetic, scale.encoder)
        name = scale.encoder or ("small" if scale.synthetic else "vgg16")
        print(f"encoder parameters ({name}): {count:,} = {count / 1e6:.1f}M", flush=True)
    root = scale.data_root
    absent = absent_synthetic(root, args.table) if scale.synthetic else []
    if absent and (args.dry_run or args.status):
        print(f"The synthetic dataset is absent: it would be generated into {root}.")
    for generate in () if args.dry_run or args.status else absent:
        print(f"generating the synthetic dataset into {root}", flush=True)
        generate()
    code = prepare(args, data_absent=bool(absent) and args.dry_run)
    if code is not None:
        return code
    scale.out.mkdir(parents=True, exist_ok=True)
    try:
        failed = execute(args.target.jobs, **args.options, run=run)
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to continue (done jobs are skipped, "
              "an unfinished training run resumes from its last.pt)")
        return 130
    except SlurmError as error:
        print(error, file=sys.stderr)
        return 2
    if failed is None:  # submitted to Slurm, still queued: the outputs come with a later run
        return 0
    tested = any(job.has_output() for job in args.target.jobs if not job.trains)
    print(f"not written: the jobs {', '.join(failed)} failed"
          if failed and not (args.table and tested) else f"wrote {args.target.write()}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
