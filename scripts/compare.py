"""Compare two methods on the same test episodes: is A's mean-IoU really above B's?

    python scripts/compare.py RESULTS_A RESULTS_B                 # one test each
    python scripts/compare.py A1 A2 A3 --vs B1 B2 B3              # one test per training seed
    python scripts/compare.py A1 A2 --vs B1 B2 --json out.json --markdown out.md --latex out.tex
    python scripts/compare.py OURS_F0 OURS_F1 --vs PANET_F0 PANET_F1 --names Ours PANet  # folds

Each argument is a results.json of test.py or its run folder (with episodes.npz); a side of
several tests holds one method trained with different seeds. Tests of another protocol or other
episodes are refused, naming each setting that differs (exit status 2), and so is one model on
both sides, unless each side has its own precision, memory format or evaluation path. Prints A,
B and A - B (mean-IoU and binary-IoU, overall and per run, each class's IoU) with 95% bootstrap
intervals, p-values, each side's numerics and each test's provenance (docs/reporting.md), also
written by --json, --markdown and --latex ('-': to standard output, instead of the Markdown).
Tests of several folds give each fold's comparison and the mean over folds (folds resampled
independently). --names calls the sides other than A and B.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from panet.base.files import atomic_write
from panet.report.comparison import (by_fold, comparison_document, comparison_report,
                                     folds_problems, folds_report, load_test)
from panet.report.render import render_latex, render_markdown
from panet.report.results import json_text
from panet.report.statistics import (bootstrap_seed, fold_averaged_comparison,
                                     paired_comparison)


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("tests", type=Path, nargs="+",
                        help="results.json (or its folder) of A's tests; without --vs, exactly "
                             "two: A and B")
    parser.add_argument("--vs", type=Path, nargs="+", metavar="TEST",
                        help="results.json (or its folder) of B's tests")
    parser.add_argument("--resamples", type=int, default=10000, help="bootstrap resamples")
    parser.add_argument("--names", nargs=2, default=("A", "B"), metavar=("NAME_A", "NAME_B"),
                        help="what to call the two sides (default: A B)")
    for name in ("json", "markdown", "latex"):
        parser.add_argument(f"--{name}", metavar="FILE",
                            help=f"also write the comparison as {name.capitalize()} to FILE "
                                 "('-': standard output)")
    args = parser.parse_args(argv)
    if args.resamples < 1:
        parser.error("--resamples must be at least 1")
    if args.vs is None:
        if len(args.tests) != 2:
            parser.error(f"give two tests (A B), or A's tests then --vs and B's; got "
                         f"{len(args.tests)} without --vs")
        args.tests, args.vs = args.tests[:1], args.tests[1:]
    return args


def write(target: str, text: str) -> None:
    if target == "-":
        sys.stdout.write(text)
        return
    with atomic_write(Path(target), "w") as file:
        file.write(text)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        a = [load_test(path, f"A{index + 1}") for index, path in enumerate(args.tests)]
        b = [load_test(path, f"B{index + 1}") for index, path in enumerate(args.vs)]
        problems = folds_problems(a, b)
        if problems:
            raise ValueError("\n  ".join(["these tests cannot be compared:", *problems]))
        folds = {fold: [[t.records for t in x], [t.records for t in y],
                        sorted(int(c) for c in x[0].record["class_iou"]), bootstrap_seed(fold)]
                 for fold, (x, y) in by_fold(a, b).items()}
        results = {fold: paired_comparison(*sides, args.resamples, seed)
                   for fold, (*sides, seed) in folds.items()}
    except ValueError as error:
        print(f"cannot compare: {error}", file=sys.stderr)
        return 2
    if len(results) == 1:
        result = next(iter(results.values()))
        report = comparison_report(a, b, result, args.resamples, args.names)
        document = comparison_document(a, b, result, args.resamples)
    else:
        averaged = fold_averaged_comparison(list(folds.values()), args.resamples)
        report = folds_report(a, b, results, averaged, args.resamples, args.names)
        document = {**comparison_document(a, b, None, args.resamples),
                    "folds": results, "mean_over_folds": averaged}
    document["names"] = list(args.names)
    texts = {"json": json_text(document), "markdown": render_markdown(report),
             "latex": render_latex(report)}
    chosen = {name: getattr(args, name) for name in texts if getattr(args, name)}
    if "-" not in chosen.values():
        sys.stdout.write(texts["markdown"])
    for name, target in chosen.items():
        write(target, texts[name])
    return 0


if __name__ == "__main__":
    sys.exit(main())
