"""Benchmark: test-time evaluation encoding each distinct image once (test.encode=image) against
encoding every episode's images (test.encode=episode, the released behaviour).

(a) Encoder calls of the paper protocol (5 runs x 1,000 episodes, seeds 1234..1238, 1 query,
    417 px, each fold's test classes on the trainaug list), counted by the evaluation's own
    planning code on the masks and lists of scripts/prepare_voc.py (no JPEG needed):

        python scripts/bench_eval.py --count VOC_ROOT [--lists-dir DIR] [--json] [--folds 0 2]

(b) Wall time, encoder calls and peak memory of both paths, each in a fresh process, on the
    same episodes of a synthetic set (300 images of 375 x 500, or --root), 1 run, 1-way, random
    weights, workers 0 (--repeats N: alternating, the fastest counts). Targets: new/old wall time
    <= 1.15 x new/old calls; the image path's peak <= 1.5 GiB above the episode path's:

        python scripts/bench_eval.py [--episodes 300] [--shots 1 5] [--encoder vgg16] [--size 417]

(c) Encoder calls of a cross-domain target's reference episodes (docs/cross-domain.md) with the
    values of its named config (FSS-1000: every test image once), masks only:

        python scripts/bench_eval.py --dataset fss1000 [--data-root DIR] [--lists-dir DIR]
                                     [--shots 1 5] [--episodes N] [--encoder vgg16] [--json]

calls_episode = W*S + Q per episode; calls_new = the image path's with the default feature
cache; distinct_images = its calls when every feature fits; (c) ratio = calls_episode /
distinct_images. Details and measurements: docs/performance.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, Iterable, Optional, Sequence

import torch
import yaml

from panet.data import episode_dataset, make_episode_dataset, make_source
from panet.data.folds import fold_classes
from panet.data.synthetic import generate
from panet.data.voc import VocSource
from panet.evaluation import evaluate_runs
from panet.evaluation.images import GIB, feature_shape, plan_runs, schedule
from panet.evaluation.options import EvalOptions
from panet.evaluation.metrics import IoUMeter
from panet.models import ENCODERS, PANet, build_encoder
from panet.base.process_memory import peak_resident_bytes, resident_bytes
from panet.report.benchmarks import json_of_run, verdict
from panet.reproduce.jobs import TARGETS as CROSS_DOMAIN_TARGETS
from panet.settings import EpisodeSetting, TestSettings

REPO_ROOT = Path(__file__).resolve().parents[1]

PAPER_RUNS, PAPER_EPISODES, PAPER_SEED, PAPER_SIZE = 5, 1000, 1234, 417
FOLDS = (0, 1, 2, 3)
SETTINGS = ("1x1", "1x5", "2x1", "2x5")  # ways x shots
TIME_EPISODES = 300
TARGETS = {"time_per_call": 1.15, "extra_peak_gib": 1.5}
DEFAULT_CACHE_GB = TestSettings().cache_gb  # test.cache_gb's default
RESULT_ATOL = 1e-3  # the exactness contract: the two paths' IoUs within 0.1 points


def count_calls(voc_root: Path, fold: int, ways: int, shots: int, workers: int,
                cache_gb: float = DEFAULT_CACHE_GB, lists_dir: Optional[Path] = None,
                episodes: int = PAPER_EPISODES) -> Dict[str, int]:
    """(a): encoder calls of both paths for one protocol cell."""
    source = VocSource(voc_root, "trainaug", lists_dir=lists_dir, images=False)
    setting = EpisodeSetting(fold=fold, ways=ways, shots=shots, size=PAPER_SIZE)
    datasets = (episode_dataset(source, setting, episodes, PAPER_SEED + run, train=False)
                for run in range(PAPER_RUNS))
    return {"fold": fold, "ways": ways, "shots": shots,
            **plan_counts(plan_runs(datasets, workers), "vgg16", PAPER_SIZE, cache_gb)}


def plan_counts(plan, encoder: str, size: int, cache_gb: float) -> Dict[str, int]:
    """Encoder calls of a plan (``panet.evaluation.images.plan_runs``): the per-episode path's,
    the image path's with a feature cache of ``cache_gb`` GiB (features of ``encoder`` at
    ``size``), and its distinct images, support images and query images."""
    channels, height, width = feature_shape(build_encoder(encoder), (size, size))
    capacity = int(cache_gb * GIB) // (4 * channels * height * width)
    return {"calls_episode": plan.episode_calls,
            "calls_new": schedule(plan, capacity).encoder_calls(),
            "distinct_images": len(plan.images()), "support_images": len(plan.supports),
            "query_images": len(plan.queries)}


def count_target(dataset: str, shots: int, root: Optional[Path] = None,
                 episodes: Optional[int] = None, lists_dir: Optional[Path] = None,
                 encoder: str = "vgg16", workers: int = 2,
                 cache_gb: float = DEFAULT_CACHE_GB) -> Dict:
    """(c): encoder calls of the target's reference test episodes, ``shots``-shot: those
    ``make_episode_dataset`` draws with the named config's seed on ``root`` (None: its
    data.root), ``episodes`` of them (None: its test.episodes, or on FSS-1000 every image of
    the test split); ValueError naming what is wrong."""
    config = yaml.safe_load((REPO_ROOT / "configs" / f"{dataset}.yaml").read_text())
    data = config["data"]
    setting = EpisodeSetting(name=dataset, root=str(root or data["root"]), fold_style="all",
                             shots=shots, size=data["size"],
                             lists_dir=None if lists_dir is None else str(lists_dir))
    if setting.problems():
        raise ValueError("; ".join(setting.problems()))
    source = make_source(setting, train=False)
    if episodes is None:
        episodes = (sum(map(len, source.class_images().values()))
                    if getattr(source, "every_query", False) else config["test"]["episodes"])
    drawn = make_episode_dataset(setting, episodes, config["seed"], train=False, source=source)
    counts = plan_counts(plan_runs([drawn], workers), encoder, setting.size, cache_gb)
    return {"dataset": dataset, "protocol": setting.episode_rule, "shots": shots,
            "episodes": len(drawn), "seed": config["seed"], "size": setting.size, **counts,
            "ratio": counts["calls_episode"] / counts["distinct_images"]}


def print_counts(args: argparse.Namespace, cells: Iterable, count: Callable[..., Dict],
                 what: str, header: Callable[[Dict], str], line: Callable[[Dict], str]) -> int:
    """(a), (c): `count(*cell)` per cell, printed as counted under `header(first row)` (or all
    as JSON at the end); 2, naming `what`, when the data cannot be counted."""
    rows = []
    for cell in cells:
        try:
            rows.append(count(*cell))
        except (FileNotFoundError, ValueError) as error:
            print(f"cannot count {what}: {error}", file=sys.stderr)
            return 2
        if not args.json:
            if len(rows) == 1:
                print(header(rows[0]))
            print(line(rows[-1]), flush=True)
    if args.json:
        print(json.dumps(rows, indent=1))
    return 0


def count_main(args: argparse.Namespace) -> int:
    """(a): one row per fold and cell."""
    episodes = args.episodes or PAPER_EPISODES
    cells = ((fold, *map(int, setting.split("x")))
             for fold, setting in itertools.product(args.folds, args.settings))
    return print_counts(
        args, cells, lambda fold, ways, shots: count_calls(
            args.count, fold, ways, shots, args.workers, lists_dir=args.lists_dir,
            episodes=episodes), f"on {args.count}",
        lambda row: f"{PAPER_RUNS} runs x {episodes} episodes, seeds {PAPER_SEED}.."
                    f"{PAPER_SEED + PAPER_RUNS - 1}, {PAPER_SIZE} px, default feature cache "
                    f"({DEFAULT_CACHE_GB} GiB)\n| fold | setting | calls today | calls new | "
                    "distinct images | distinct support + distinct query imgs |\n"
                    "|---|---|---|---|---|---|",
        lambda row: f"| {row['fold']} | {row['ways']}-way {row['shots']}-shot | "
                    f"{row['calls_episode']:,} | {row['calls_new']:,} | "
                    f"{row['distinct_images']:,} | "
                    f"{row['support_images'] + row['query_images']:,} |")


def target_main(args: argparse.Namespace) -> int:
    """(c): one row per shot count."""
    return print_counts(
        args, ((shots,) for shots in args.shots), lambda shots: count_target(
            args.dataset, shots, args.data_root, args.episodes, args.lists_dir, args.encoder,
            args.workers), args.dataset,
        lambda row: f"{args.dataset} ({row['protocol']} episodes, seed {row['seed']}, "
                    f"{row['size']} px), 1-way 1 query; calls new: default feature cache "
                    f"({DEFAULT_CACHE_GB} GiB of {args.encoder} features)\n"
                    "| shots | episodes | calls per-episode path (S + 1 each) | calls new | "
                    "distinct images | distinct support + distinct query imgs | "
                    "per-episode / distinct |\n|---|---|---|---|---|---|---|",
        lambda row: f"| {row['shots']} | {row['episodes']:,} | {row['calls_episode']:,} | "
                    f"{row['calls_new']:,} | {row['distinct_images']:,} | "
                    f"{row['support_images'] + row['query_images']:,} | {row['ratio']:.2f} |")


def measure(args: argparse.Namespace) -> int:
    """One path in this process (--measure): prints a JSON line of its numbers."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = PANet(build_encoder(args.encoder)).eval()
    calls = []  # images computed (feature_shape's trace on the meta device computes none)
    model.encoder.register_forward_hook(
        lambda module, inputs, output: calls.append(len(output) * (output.device.type != "meta")))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the synthetic set may leave a class out
        setting = EpisodeSetting(name="synthetic", root=str(args.root), test_split="trainaug",
                                 shots=args.measure_shots, size=args.size)
        datasets = [make_episode_dataset(setting, args.episodes, PAPER_SEED, train=False)]
    meter = IoUMeter(fold_classes(20, 0, train=False))
    base = resident_bytes() / GIB
    start, cpu_start = time.perf_counter(), time.process_time()
    evaluate_runs(model, datasets, meter, EvalOptions(encode=args.measure), progress=False)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    peak = peak_resident_bytes() / GIB
    print(json.dumps({"calls": sum(calls), "seconds": seconds, "cpu_seconds": cpu_seconds,
                      "peak_gib": peak, "base_gib": base,
                      "mean_iou": meter.summary()["mean_iou"]}))
    return 0


def time_main(args: argparse.Namespace) -> int:
    args.episodes = args.episodes or TIME_EPISODES
    print(f"{args.encoder} at {args.size} x {args.size}, 1 run x {args.episodes} episodes, "
          f"1-way, synthetic set, {args.threads} torch threads, workers 0, default cache "
          f"({DEFAULT_CACHE_GB} GiB in memory), fastest of {args.repeats}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or generate(Path(tmp) / "synthetic")
        rows = []
        for shots in args.shots:
            measured = {"episode": [], "image": []}
            for _ in range(args.repeats):
                for encode in measured:  # in a fresh process: `measure`
                    measured[encode].append(json_of_run(REPO_ROOT, [
                        __file__, "--measure", encode, "--measure-shots", str(shots), "--root",
                        str(root), "--episodes", str(args.episodes), "--size", str(args.size),
                        "--encoder", args.encoder, "--threads", str(args.threads)]))
            old, new = (min(runs, key=lambda r: r["seconds"]) for runs in measured.values())
            call_ratio, time_ratio = new["calls"] / old["calls"], new["seconds"] / old["seconds"]
            rows.append({"shots": shots, "episode": old, "image": new,
                         "call_ratio": call_ratio, "time_ratio": time_ratio,
                         "time_per_call": time_ratio / call_ratio,
                         "extra_peak_gib": new["peak_gib"] - old["peak_gib"],
                         "iou_difference": abs(old["mean_iou"] - new["mean_iou"])})
            print_time_row(rows[-1], header=len(rows) == 1)
    if args.json:
        print(json.dumps(rows, indent=1))
    return 0 if all(row["iou_difference"] <= RESULT_ATOL for row in rows) else 1


def print_time_row(row: dict, header: bool) -> None:
    if header:
        print("| shots | path | encoder calls | wall s | CPU s | peak RSS GiB | "
              "RSS before eval GiB |")
        print("|---|---|---|---|---|---|---|")
    for name in ("episode", "image"):
        r = row[name]
        print(f"| {row['shots']} | {name} | {r['calls']} | {r['seconds']:.1f} | "
              f"{r['cpu_seconds']:.1f} | {r['peak_gib']:.2f} | {r['base_gib']:.2f} |")
    judged = (("(wall ratio)/(call ratio)", "time_per_call", ".3f", TARGETS["time_per_call"]),
              ("image path peak - episode path peak, GiB,", "extra_peak_gib", "+.2f",
               TARGETS["extra_peak_gib"]),
              ("mean-IoU difference", "iou_difference", ".1e", RESULT_ATOL))
    print(f"{row['shots']}-shot: calls new/old {row['call_ratio']:.3f}, wall new/old "
          f"{row['time_ratio']:.3f}; " + "; ".join(
              f"{label} {row[key]:{form}} (target <= {target}: {verdict(row[key], target)})"
              for label, key, form, target in judged), flush=True)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--count", type=Path, metavar="VOC_ROOT",
                        help="(a): count encoder calls of the paper protocol on this VOC root")
    parser.add_argument("--lists-dir", type=Path,
                        help="(a): the split lists' folder (default VOC_ROOT/ImageSets/"
                             "Segmentation); (c) fss1000: trn/val/test.txt's (DATA_ROOT/splits)")
    parser.add_argument("--dataset", choices=CROSS_DOMAIN_TARGETS,
                        help="(c): count encoder calls of this cross-domain target's episodes")
    parser.add_argument("--data-root", type=Path,
                        help="(c): the dataset's folder (default: its named config's data.root)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--folds", type=int, nargs="+", default=list(FOLDS), choices=FOLDS)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=SETTINGS,
                        help="(a): WAYSxSHOTS cells")
    parser.add_argument("--workers", type=int, default=2, help="(a), (c): processes reading masks")
    parser.add_argument("--episodes", type=int,
                        help=f"episodes per run (default: (a) {PAPER_EPISODES}, (b) "
                             f"{TIME_EPISODES}, (c) the named config's)")
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 5], help="(b), (c)")
    parser.add_argument("--encoder", default="vgg16", choices=list(ENCODERS),
                        help="(b); (c): whose features size the default cache")
    parser.add_argument("--size", type=int, default=PAPER_SIZE, help="(b): input size")
    parser.add_argument("--threads", type=int, default=2, help="(b): torch threads")
    parser.add_argument("--repeats", type=int, default=1,
                        help="(b): runs of each path, alternating; the fastest counts")
    parser.add_argument("--root", type=Path,
                        help="(b): an existing synthetic root (scripts/make_synthetic.py)")
    parser.add_argument("--measure", choices=["episode", "image"], help=argparse.SUPPRESS)
    parser.add_argument("--measure-shots", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    episodes = 1 if args.episodes is None else args.episodes
    if min(episodes, args.threads, args.repeats, *args.shots) < 1 or args.workers < 0:
        parser.error("--episodes, --shots, --threads and --repeats must be >= 1, --workers >= 0")
    if args.dataset and args.count:
        parser.error("--dataset (c) and --count (a) count different benchmarks: give one")
    if args.data_root and not args.dataset:
        parser.error("--data-root belongs to --dataset")
    return args


def main(argv: Sequence[str] = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.measure:
        return measure(args)
    if args.count:
        return count_main(args)
    return target_main(args) if args.dataset else time_main(args)


if __name__ == "__main__":
    sys.exit(main())
