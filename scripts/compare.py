"""Compare two tests of the same episodes: is model A's mean-IoU really above model B's?

    python scripts/compare.py RESULTS_A RESULTS_B [--resamples 10000]

RESULTS_A, RESULTS_B: results.json files of test.py, or the run folders holding them (each
with its episodes.npz beside it). The two tests must have seen identical episode lists (same
dataset, fold, setting, seed, runs and episodes): this is checked through the stored class and
image ids of every episode, not trusted from the configs, and anything else is refused. Prints
the difference A - B of mean-IoU and binary-IoU, overall (mean over runs) and per run, and of
each class's IoU, with a paired-bootstrap 95% interval and p-value (panet/statistics.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, Tuple

from panet.statistics import RECORDS_FILE, EpisodeRecords, paired_comparison


def load(path: Path) -> Tuple[Dict, EpisodeRecords, Path]:
    """(results.json record, episode records, results path) of a results file or run folder."""
    results = path / "results.json" if path.is_dir() else path
    if not results.is_file():
        raise ValueError(f"{path}: no results.json (give test.py's results.json or its folder)")
    records = results.with_name(RECORDS_FILE)
    if not records.is_file():
        raise ValueError(f"{results}: no {RECORDS_FILE} beside it (tests from before per-episode "
                         "records cannot be compared: run test.py again)")
    return json.loads(results.read_text()), EpisodeRecords.load(records), results


def percent(value: float) -> str:
    return f"{100 * value:6.1f}"


def line(label: str, entry: Dict) -> str:
    low, high = entry["ci"]
    return (f"{label:28s} {percent(entry['a'])} {percent(entry['b'])} "
            f"{100 * entry['difference']:+7.1f}   [{100 * low:+6.1f}, {100 * high:+6.1f}]   "
            f"{entry['p_value']:.4f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("a", type=Path, help="results.json (or its folder) of model A")
    parser.add_argument("b", type=Path, help="results.json (or its folder) of model B")
    parser.add_argument("--resamples", type=int, default=10000, help="bootstrap resamples")
    args = parser.parse_args(argv)
    if args.resamples < 1:
        parser.error("--resamples must be at least 1")
    try:
        (result_a, records_a, path_a), (result_b, records_b, path_b) = load(args.a), load(args.b)
        if result_a["rule"] != result_b["rule"]:
            raise ValueError(f"metric rules differ: {result_a['rule']} / {result_b['rule']}")
        classes = sorted(int(c) for c in result_a["class_iou"])
        if classes != sorted(int(c) for c in result_b["class_iou"]):
            raise ValueError("the two tests report different classes")
        comparison = paired_comparison(records_a, records_b, classes, args.resamples)
    except ValueError as error:
        print(f"cannot compare: {error}", file=sys.stderr)
        return 2

    print(f"A: {path_a}\nB: {path_b}\nidentical episodes: {records_a.n_runs} runs, "
          f"{len(records_a.run)} queries; paired bootstrap, {args.resamples} resamples; "
          f"metric rule {result_a['rule']}\n")
    print(f"{'(IoU in %)':28s} {'A':>6s} {'B':>6s} {'A - B':>7s}   {'95% interval':^16s}   p-value")
    for name, title in (("mean_iou", "mean-IoU"), ("binary_iou", "binary-IoU")):
        print(line(title, comparison["overall"][name]))
        for run, entry in enumerate(comparison["runs"]):
            print(line(f"  run {run}", entry[name]))
    print()
    for class_id, entry in comparison["classes"].items():
        print(line(f"class {class_id}", entry))
    return 0


if __name__ == "__main__":
    sys.exit(main())
