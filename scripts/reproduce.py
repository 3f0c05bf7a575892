"""Reproduce the paper: run the train.py / test.py jobs of a table, analysis or figure, then
write our numbers beside the paper's (the specs are in panet/tables.py).

    python scripts/reproduce.py --table 1 --dry-run       # the commands, done/pending, GPU hours
    python scripts/reproduce.py --table 1                 # run what is missing -> results/table1.md
    python scripts/reproduce.py --table 6 --data-root /data   # /data/VOC2012, /data/COCO
    python scripts/reproduce.py --analysis prototype-distance   # Sec. 4.3
    python scripts/reproduce.py --figure loss-curves      # Fig. 5
    python scripts/reproduce.py --figure loss-curves --run runs/3   # any train.py run folder(s)
    python scripts/reproduce.py --figure qualitative [--checkpoint PATH]   # Figs. 3, 4, 6 style
    python scripts/reproduce.py --table 1 --synthetic     # toy scale on generated data (CI)
    python scripts/reproduce.py --table 1 --seeds 3       # 3 training seeds per model
    python scripts/reproduce.py --table 1 --factory PKG.MODULE:CALLABLE --out DIR   # your method
    python scripts/reproduce.py --table 1 --precision bf16   # every job with precision=bf16
    python scripts/reproduce.py --table 1 --executor local --parallel 8   # 8 GPUs, a job each
    python scripts/reproduce.py --table 1 --executor slurm --slurm-partition gpu   # then:
    python scripts/reproduce.py --table 1 --status        # done / running / pending / failed

Every job's configuration is checked before the first one starts (a bad value stops the script
at once). Jobs run one after another as subprocesses from the repository root (their output
streams through), each in its run folder <out>/runs/<job name>/; a job whose output exists
(final.pt, results.json) is skipped, an unfinished training run resumes from its last.pt, and
jobs that need a failed job are skipped. Tables (<out>/tableN.md) are written even when cells
are still missing. Figures go to a run folder: the loss curves of a table's models to
<out>/runs/figures/, the overlays to the shown model's run folder, the curves of --run DIR to
DIR (the first one given). The tests of one checkpoint run one after another and share its
encoder features through <out>/feature_cache/<weights>/ (on disk, up to --feature-cache-gb;
removed after their last test). --executor local --parallel K and --executor slurm run the same
jobs elsewhere (panet/cluster/executors.py, docs/cluster.md).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch

from panet import reproduce as tables
from panet.run.folder import RunFolder, checkpoint_file, resolve_checkpoint
from panet.reproduce import executors
from panet.reproduce.jobrun import command_now, remove_finished_caches
from panet.reproduce.slurm import SlurmError
from panet.data import synthetic
from panet.base.device import use_device
from panet.base.files import atomic_write
from panet.models import ENCODERS
from panet.models.numerics import MEMORY_FORMATS, PRECISIONS
from panet.report.results import code_version
from panet.reproduce import (PROTOTYPE_DISTANCE_MODELS, PROTOTYPE_DISTANCE_PAPER_KEY, TABLES, Job,
                          Scale, Setting, Variant)

REPO_ROOT = tables.REPO_ROOT
SYNTHETIC_ROOT = REPO_ROOT / "data" / "synthetic"

# Toy scale: the whole synthetic Table 1 (8 train + 16 test jobs) in about 3 minutes on 2 cores.
TOY_STEPS = 5
TOY_TEST_RUNS = 1
TOY_TEST_EPISODES = 8

# GPU-time assumption of --dry-run. VGG-16 of PROTOCOL §1 at 417 x 417 costs 69 GMAC per image
# forward (counted on the model), forward + backward ~3x that = 414 GFLOP; at ~7 TFLOP/s
# sustained FP32 (half a V100's peak) that is 0.06 s. A test image (forward only) costs 1/3.
GPU_SECONDS_PER_IMAGE = 0.06

Execute = Callable[[Sequence[str]], int]


def execute(argv: Sequence[str]) -> int:
    """Run a job command (argv[0] "python" = this interpreter) from the repository root, its
    output streaming to ours; returns the exit code."""
    return subprocess.call([sys.executable, *argv[1:]], cwd=REPO_ROOT)


def run_jobs(jobs: Sequence[Job], run: Execute = execute) -> List[str]:
    """Run the pending jobs in order (skipping done ones and those needing a failed job);
    returns the names of the jobs that failed or were skipped for that. A feature cache shared
    by tests is removed once all of them are done (kept after a failure, for the rerun)."""
    failed: List[str] = []
    for job in jobs:
        if job.done():
            print(f"[done] {job.name}: {job.output}", flush=True)
            remove_finished_caches(jobs)
            continue
        blocked = [name for name in job.needs if name in failed]
        if blocked:
            print(f"[skipped] {job.name}: needs the failed job(s) {', '.join(blocked)}", flush=True)
            failed.append(job.name)
            continue
        argv = command_now(job)  # an unfinished training run continues from its last.pt
        print(f"[run] {job.name}\n      {shlex.join(argv)}", flush=True)
        code = run(argv)
        if code != 0 or not job.done():
            print(f"[failed] {job.name}: exit code {code}"
                  + ("" if code else f", but {job.output} was not written"), flush=True)
            failed.append(job.name)
        remove_finished_caches(jobs)
    return failed


def config_problems(jobs: Sequence[Job]) -> List[str]:
    """Every job's configuration composed as its train.py / test.py would compose it, and checked
    (panet.run.validation) before anything runs. Files are checked by each job when it starts: a
    test job's checkpoint does not exist before its train job has run."""
    from panet.base.errors import ConfigError

    from panet.run.folder import CheckpointRef

    problems, planned = [], {}
    for job in jobs:
        checkpoint = None
        if job.needs and job.needs[0] in planned and not Path(planned[job.needs[0]][0]).is_file():
            path, config = planned[job.needs[0]]  # what its train job will write
            checkpoint = CheckpointRef(str(path), path, "panet", config["train"]["steps"],
                                       config, None)
        try:
            composed = tables.composition(job, checkpoint)
        except ConfigError as error:
            problems += [f"{job.name}: {line}" for line in error.problems]
            continue
        if job.trains:
            planned[job.name] = (job.output, composed.config)
    return problems


def changed_jobs(jobs: Sequence[Job]) -> Dict[str, List[str]]:
    """The finished jobs whose outputs record other settings than their commands ask for (e.g.
    made with fewer steps or episodes, or by hand), with the settings that differ."""
    changed: Dict[str, List[str]] = {}
    for job in jobs:
        retrained = [name for name in job.needs if name in changed]
        if job.done() and retrained:
            changed[job.name] = [f"it tests the checkpoint of {retrained[0]}, which runs again"]
        elif job.done():
            differences = tables.changed_settings(job)
            if differences:
                changed[job.name] = differences
    return changed


def set_aside(job: Job) -> Path:
    """Move a changed job's run folder to <name>.replaced-<n> (kept), so the job runs anew."""
    folder = job.output.parent.parent if job.trains else job.output.parent
    number = 1
    while folder.with_name(f"{folder.name}.replaced-{number}").exists():
        number += 1
    return folder.rename(folder.with_name(f"{folder.name}.replaced-{number}"))


def describe_plan(jobs: Sequence[Job], seconds_per_image: float, synthetic_scale: bool) -> str:
    """--dry-run: every command in order with its status, and an estimate of GPU hours."""
    lines = []
    for job in jobs:
        status = "done" if job.done() else "pending"
        status += f", ~{job.gpu_seconds(seconds_per_image) / 3600:.2f} GPU h"
        partial = job.partial_checkpoint()
        if partial is not None:
            status += f", resumes from {partial}"
        lines += [f"[{status}] {job.name}", f"    {job.command}"]
    pending = [job for job in jobs if not job.done()]
    hours = sum(job.gpu_seconds(seconds_per_image) for job in pending) / 3600
    total = sum(job.gpu_seconds(seconds_per_image) for job in jobs) / 3600
    lines += [
        "",
        f"{len(jobs)} jobs: {len(jobs) - len(pending)} done, {len(pending)} pending.",
        f"Estimated GPU time (an estimate, not a measurement): {hours:.2f} GPU hours pending, "
        f"{total:.2f} for all jobs.",
        f"Assumption: {seconds_per_image} s per training image (forward + backward of VGG-16 at "
        "417 x 417 on a V100-class GPU; --gpu-seconds-per-image), a test image 1/3 of that; "
        "images per training step = W*S + Q, per test episode the same, test episodes = runs x "
        "episodes (an upper bound: test.py's default image path encodes each distinct image "
        "once, or twice when its feature cache is full: 2-26x fewer on PASCAL-5i, see "
        "scripts/bench_eval.py --count). Data loading and partially done training runs are not "
        "counted.",
    ]
    shared = sorted({str(path) for job in jobs for path in job.cleanup})
    if shared:
        lines.append(f"Feature caches (each up to the --feature-cache-gb budget on disk, removed "
                     f"after the last test that uses it): {', '.join(shared)}")
    if synthetic_scale:
        lines.append("Toy scale: the small encoder at ~129 px costs far less than this per image.")
    return "\n".join(lines)


def git_commit() -> str:
    return code_version()["commit"] or "unknown (not a git checkout)"


def synthetic_data_present(root: Path) -> bool:
    """Whether `root` holds the generated dataset: PASCAL layout and COCO-json variant."""
    return all(marker.is_file() for marker in (
        root / synthetic.VOC_DIR / "ImageSets" / "Segmentation" / "trainaug.txt",
        root / synthetic.COCO_DIR / "annotations" / "instances_train2014.json"))


def write_report(report: tables.Report, stem: Path) -> Path:
    """`stem`.md and `stem`.tex of a report (Markdown and a booktabs LaTeX table); returns the
    Markdown file."""
    with atomic_write(stem.with_suffix(".tex"), "w") as file:
        file.write(tables.render_latex(report))
    with atomic_write(stem.with_suffix(".md"), "w") as file:
        file.write(tables.render_markdown(report))
    return stem.with_suffix(".md")


def write_table(number: int, scale: Scale) -> Path:
    """tableN.md and tableN.tex from the results of the table's test jobs."""
    spec = TABLES[number]
    jobs = tables.jobs_for(spec.settings(scale.training_seeds, scale.encoder), scale)
    results = tables.read_results(jobs)
    parameters = (tables.encoder_parameters(scale.synthetic, scale.encoder) if spec.params
                  else None)
    provenance = tables.Provenance(git_commit(), scale.synthetic, scale.training_seeds,
                                   scale.encoder, parameters, jobs)
    report = tables.table_report(spec, results, tables.load_paper_results(), provenance,
                                 tables.resampled_results(jobs, results))
    return write_report(report, scale.out / f"table{number}")


def write_prototype_distance(scale: Scale, device: torch.device) -> Path:
    from panet.report.analysis import measure_prototype_distance, prototype_distance_report

    measured, models = {}, []
    for name, setting in PROTOTYPE_DISTANCE_MODELS.items():
        job = tables.train_job(replace(setting, encoder=scale.encoder), scale)
        measured[name] = measure_prototype_distance(
            job.output, scale.test_episodes, device=device, fold=setting.fold,
            ways=setting.ways, shots=setting.shots, **data_overrides(scale, setting))
        models.append(job.name)
        print(f"{name}: {measured[name]}", flush=True)
    description = (f"fold 0, 1-way 5-shot, {scale.test_episodes} test episodes (seed 1234) of "
                   f"the models {', '.join(models)}")
    report = prototype_distance_report(
        measured, tables.load_paper_results()[PROTOTYPE_DISTANCE_PAPER_KEY],
        setting=description, commit=git_commit(), synthetic_scale=scale.synthetic)
    return write_report(report, scale.out / "prototype_distance")


def write_loss_curves(scale: Scale, fold: int) -> Path:
    from panet.report.analysis import read_training_curves
    from panet.report.figures import plot_loss_curves

    panels = {}
    for (shots, align), setting in tables.loss_curve_models(fold, scale.encoder).items():
        label = "PANet" if align else "PANet w/o PAR"
        curves = read_training_curves(scale.run_dir(setting.train_name))
        panels.setdefault(f"fold {fold}, 1-way {shots}-shot", {})[label] = curves
    return plot_loss_curves(panels, figure_path(scale, f"loss_curves_fold{fold}.png"))


def write_run_loss_curves(run_dirs: Sequence[Path]) -> Path:
    """The loss curves of any train.py run folders in one panel, saved in the first of them."""
    from panet.report.analysis import read_training_curves
    from panet.report.figures import plot_loss_curves

    curves = {str(run): read_training_curves(run) for run in run_dirs}
    return plot_loss_curves({"training loss": curves}, run_dirs[0] / "loss_curves.png")


def figure_path(scale: Scale, name: str) -> Path:
    """Where a figure of several runs goes: <out>/runs/figures/ (never a tracked folder)."""
    return scale.out / "runs" / "figures" / name


def data_overrides(scale: Scale, setting: Setting) -> dict:
    """data.* overrides of an in-process evaluation: the data root given on our command line."""
    root = scale.data_root_of(setting.dataset)
    return {} if root is None else {"root": str(root)}


def qualitative_path(args: argparse.Namespace, scale: Scale) -> Path:
    """The overlays go to the run folder of the model shown (or beside other figures)."""
    checkpoint = args.checkpoint or tables.train_job(qualitative_model(args.fold, scale),
                                                     scale).output
    return (getattr(RunFolder.of_checkpoint(checkpoint), "path", None) or figure_path(scale, "")) / "qualitative.png"


def qualitative_model(fold: int, scale: Scale) -> Setting:
    """The default model of --figure qualitative: Table 1's 1-shot PANet of `fold`."""
    return TABLES[1].setting(Variant(), shots=1, fold=fold, encoder=scale.encoder)


def qualitative_overrides(args: argparse.Namespace, scale: Scale) -> dict:
    """data.* overrides of the overlays: --data-root, for the default model as for a
    --checkpoint (whose stored root it replaces)."""
    if not args.checkpoint:
        return data_overrides(scale, qualitative_model(args.fold, scale))
    if args.data_root is None:
        return {}
    name = resolve_checkpoint(args.checkpoint).config["data"]["name"]
    return {"root": str(scale.data_root_of("coco" if name == "coco" else "voc"))}


def target_jobs(args: argparse.Namespace, scale: Scale) -> List[Job]:
    """The jobs whose outputs the requested table, analysis or figure reads."""
    if args.table:
        return tables.jobs_for(TABLES[args.table].settings(scale.training_seeds, scale.encoder),
                               scale)
    if args.analysis:
        return [tables.train_job(replace(s, encoder=scale.encoder), scale)
                for s in PROTOTYPE_DISTANCE_MODELS.values()]
    if args.figure == "loss-curves":
        if args.run:
            return []
        return [tables.train_job(s, scale)
                for s in tables.loss_curve_models(args.fold, scale.encoder).values()]
    return ([] if args.checkpoint
            else [tables.train_job(qualitative_model(args.fold, scale), scale)])


def with_numerics(jobs: Sequence[Job], args: argparse.Namespace) -> List[Job]:
    """The jobs with --precision and --memory-format added to their commands (when given)."""
    given = (("precision", args.precision), ("memory_format", args.memory_format))
    updates = tuple(f"{key}={value}" for key, value in given if value is not None)
    return [replace(job, argv=job.argv + updates) for job in jobs]


def final_step(args: argparse.Namespace, scale: Scale) -> str:
    """What this process does once the jobs are done (printed by --dry-run)."""
    if args.table:
        return (f"write {scale.out / f'table{args.table}.md'} (and .tex) from the test "
                "results")
    if args.analysis:
        return (f"measure Sec. 4.3's prototype distances over {scale.test_episodes} episodes per "
                f"model in this process -> {scale.out / 'prototype_distance.md'}")
    if args.figure == "loss-curves":
        target = (args.run[0] / "loss_curves.png" if args.run
                  else figure_path(scale, f"loss_curves_fold{args.fold}.png"))
        return f"plot the logged losses -> {target}"
    return (f"segment {args.episodes} test episodes in this process -> "
            f"{qualitative_path(args, scale)}")


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--table", type=int, choices=sorted(TABLES))
    what.add_argument("--analysis", choices=["prototype-distance"])
    what.add_argument("--figure", choices=["loss-curves", "qualitative"])
    parser.add_argument("--dry-run", action="store_true",
                        help="list the commands (done/pending) and estimate GPU hours; run nothing")
    parser.add_argument("--rerun-changed", action="store_true",
                        help="run again the jobs whose outputs record other settings than the "
                             "jobs ask for, keeping their old run folders (default: refuse)")
    parser.add_argument("--seeds", type=int, default=1,
                        help="tables: train every model with this many training seeds (1234, "
                             "1235, ...); tests keep episode seed 1234, so all seeds see the "
                             "same episodes; cells become mean ± std over seeds")
    parser.add_argument("--synthetic", action="store_true",
                        help="toy scale on the synthetic dataset (generated if absent)")
    parser.add_argument("--out", type=Path,
                        help="where runs/ and the outputs go (default results/, or "
                             "results/synthetic/ with --synthetic)")
    parser.add_argument("--data-root", type=Path,
                        help="paper scale: the folder holding VOC2012/ and COCO/ (default: the "
                             "configs' data/VOC2012, data/COCO); --synthetic: the generated "
                             f"dataset (default {SYNTHETIC_ROOT.relative_to(REPO_ROOT)})")
    toy = parser.add_argument_group("toy scale (--synthetic only)")
    toy.add_argument("--steps", type=int, help=f"training steps per job (default {TOY_STEPS})")
    toy.add_argument("--test-runs", type=int, help=f"test runs (default {TOY_TEST_RUNS})")
    toy.add_argument("--test-episodes", type=int,
                     help=f"episodes per test run (default {TOY_TEST_EPISODES})")
    toy.add_argument("--size", type=int, help="input size (default: configs/small.yaml's)")
    parser.add_argument("--gpu-seconds-per-image", type=float, default=GPU_SECONDS_PER_IMAGE,
                        help="dry-run assumption: seconds per training image (forward + "
                             f"backward) on one GPU (default {GPU_SECONDS_PER_IMAGE}, VGG-16 at "
                             "417 x 417 on a V100-class GPU)")
    parser.add_argument("--feature-cache-gb", type=float, default=tables.FEATURE_CACHE_GB,
                        help="disk budget (GiB) of the feature cache that the tests of one "
                             "checkpoint share (test.cache_gb); 0: no sharing, each test keeps "
                             f"features in memory (default {tables.FEATURE_CACHE_GB})")
    parser.add_argument("--released", type=Path, metavar="DIR",
                        help="test the authors' released snapshots under DIR (.../PANet_VOC_"
                             "align_sets_0_1way_5shot_[train]/1/snapshots/30000.pth, ...) instead "
                             "of training: each table cell whose setting has a snapshot (default "
                             "--out results/released)")
    parser.add_argument("--encoder", choices=list(ENCODERS),
                        help="train and test every model with this encoder instead of VGG-16 "
                             "(or the toy scale's small one); named in job names and headers")
    parser.add_argument("--factory", metavar="PACKAGE.MODULE:CALLABLE",
                        help="train and test your own method instead of PANet (model.factory, "
                             "docs/your-own-method.md); give it its own --out")
    parser.add_argument("--precision", choices=list(PRECISIONS),
                        help="add precision=<this> to every train.py / test.py job (default: "
                             "none, the paper's fp32; docs/precision.md)")
    parser.add_argument("--memory-format", choices=list(MEMORY_FORMATS),
                        help="add memory_format=<this> to every train.py / test.py job")
    parser.add_argument("--fold", type=int, default=0, choices=tables.FOLDS,
                        help="figures: the fold of the models shown (default 0)")
    parser.add_argument("--checkpoint", type=Path,
                        help="qualitative: a train.py checkpoint, shown on the data its config "
                             "names (default: Table 1's 1-shot PANet of --fold)")
    parser.add_argument("--episodes", type=int, default=4, help="qualitative: episodes shown")
    parser.add_argument("--run", type=Path, action="append",
                        help="loss-curves: plot these train.py run folders (repeatable) instead "
                             "of a table's models; the figure goes to the first one")
    parser.add_argument("--device", default="auto",
                        help="analysis and qualitative figure: auto (cuda when available, else "
                             "cpu), cpu, cuda, cuda:N")
    executors.add_options(parser)
    args = parser.parse_args(argv)
    executors.check_options(parser, args)
    toy_knobs = {"--steps": args.steps, "--test-runs": args.test_runs,
                 "--test-episodes": args.test_episodes, "--size": args.size}
    given = [flag for flag, value in toy_knobs.items() if value is not None]
    if given and not args.synthetic:
        parser.error(f"{', '.join(given)} set the toy scale: add --synthetic (the paper scale "
                     "keeps the configs' defaults)")
    counts = {**toy_knobs, "--episodes": args.episodes, "--seeds": args.seeds}
    below_one = [flag for flag, value in counts.items() if value is not None and value < 1]
    if below_one:
        parser.error(f"{', '.join(below_one)} must be at least 1")
    if not args.feature_cache_gb >= 0:
        parser.error(f"--feature-cache-gb must be >= 0, got {args.feature_cache_gb}")
    if args.released is not None and (args.synthetic or not args.table):
        parser.error("--released tests the authors' snapshots for a --table at paper scale "
                     "(without --synthetic)")
    if args.released is not None and not args.released.is_dir():
        parser.error(f"--released {args.released}: no such folder")
    if args.released is not None and args.factory is not None:
        parser.error("--released tests the authors' PANet snapshots: it takes no --factory")
    if args.run and args.figure != "loss-curves":
        parser.error("--run DIR plots the losses of a run folder: use it with --figure loss-curves")
    for run in args.run or ():
        if not (run / "metrics.json").is_file():
            parser.error(f"--run {run}: not a train.py run folder (no {run / 'metrics.json'})")
    if args.checkpoint is not None:
        try:
            args.checkpoint = checkpoint_file(args.checkpoint)
        except FileNotFoundError as error:
            parser.error(f"--checkpoint {args.checkpoint}: {error}")
    return args


def make_scale(args: argparse.Namespace) -> Scale:
    if not args.synthetic:
        out = args.out or REPO_ROOT / "results" / ("released" if args.released else "")
        return Scale(out.resolve(), data_root=args.data_root,
                     feature_cache_gb=args.feature_cache_gb, seeds=args.seeds,
                     encoder=args.encoder, factory=args.factory,
                     released=None if args.released is None else args.released.resolve())
    def toy(value: Optional[int], default: int) -> int:
        return default if value is None else value

    return Scale((args.out or REPO_ROOT / "results" / "synthetic").resolve(), synthetic=True,
                 data_root=(args.data_root or SYNTHETIC_ROOT).resolve(),
                 steps=toy(args.steps, TOY_STEPS), test_runs=toy(args.test_runs, TOY_TEST_RUNS),
                 test_episodes=toy(args.test_episodes, TOY_TEST_EPISODES), size=args.size,
                 feature_cache_gb=args.feature_cache_gb, seeds=args.seeds, encoder=args.encoder,
                 factory=args.factory)


def main(argv: Optional[Sequence[str]] = None, run: Execute = execute) -> int:
    args = parse_args(argv)
    scale = make_scale(args)
    jobs = with_numerics(target_jobs(args, scale), args)
    if args.table and TABLES[args.table].params:
        count = tables.encoder_parameters(scale.synthetic, scale.encoder)
        name = scale.encoder or ("small" if scale.synthetic else "vgg16")
        print(f"encoder parameters ({name}): {count:,} = {count / 1e6:.1f}M", flush=True)
    if args.status:  # where each job stands, from the run folders and squeue
        print(executors.status_report(jobs))
        return 0

    problems = config_problems(jobs)
    if problems:
        print("These jobs cannot run; nothing was started:\n  " + "\n  ".join(problems),
              file=sys.stderr)
        return 2
    changed = changed_jobs(jobs)
    said = [f"{name}: {difference}" for name, found in changed.items() for difference in found]
    if args.dry_run:
        print(describe_plan(jobs, args.gpu_seconds_per_image, scale.synthetic))
        print(f"Then: {final_step(args, scale)}.")
        if said:
            print("Made with other settings than their jobs ask for (--rerun-changed runs them "
                  "again):\n  " + "\n  ".join(said))
        if scale.synthetic and not synthetic_data_present(scale.data_root):
            print(f"The synthetic dataset is absent: it would be generated into {scale.data_root}.")
        return 0
    if said and not args.rerun_changed:
        print("These jobs' outputs were made with other settings than the jobs ask for (recorded "
              "-> asked); nothing was started:\n  " + "\n  ".join(said) + "\nRun them again "
              "with --rerun-changed (their run folders are kept as <name>.replaced-<n>), or "
              "give the settings they were made with.", file=sys.stderr)
        return 2
    for job in jobs:
        if job.name in changed:
            print(f"[changed] {job.name}: kept as {set_aside(job)}; it runs again", flush=True)
    if scale.synthetic and not synthetic_data_present(scale.data_root):
        print(f"generating the synthetic dataset into {scale.data_root}", flush=True)
        synthetic.generate(scale.data_root, coco=True)
    scale.out.mkdir(parents=True, exist_ok=True)
    try:
        failed = run_jobs(jobs, run) if executors.runs_here(args) else executors.execute(jobs, args)
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to continue (done jobs are skipped, "
              "an unfinished training run resumes from its last.pt)")
        return 130
    except SlurmError as error:
        print(error, file=sys.stderr)
        return 2
    if failed is None:  # submitted to Slurm, still queued: the outputs come with a later run
        return 0

    if args.table:
        print(f"wrote {write_table(args.table, scale)}")
    elif failed:
        print(f"not written: the jobs {', '.join(failed)} failed")
    elif args.analysis:
        print(f"wrote {write_prototype_distance(scale, use_device(args.device))}")
    elif args.figure == "loss-curves":
        figure = (write_run_loss_curves(args.run) if args.run
                  else write_loss_curves(scale, args.fold))
        print(f"wrote {figure}")
    else:
        from panet.report.figures import save_qualitative

        overrides = qualitative_overrides(args, scale)
        figure = save_qualitative(args.checkpoint or jobs[0].output,
                                  qualitative_path(args, scale), args.episodes,
                                  device=use_device(args.device), **overrides)
        print(f"wrote {figure}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
