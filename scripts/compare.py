"""Compare two methods on the same test episodes: is A's mean-IoU really above B's?

    python scripts/compare.py RESULTS_A RESULTS_B                 # one test each
    python scripts/compare.py A1 A2 A3 --vs B1 B2 B3              # one test per training seed
    python scripts/compare.py A1 A2 --vs B1 B2 --json out.json --markdown out.md --latex out.tex

Each argument is a results.json of test.py or its run folder (with episodes.npz); a side of
several tests holds one method trained with different seeds. Tests of another protocol or
other episodes are refused, naming each setting that differs (exit status 2), and so is one
model on both sides, except as a comparison of numerics: the same models, each side in its own
precision, memory format or evaluation path. Prints A, B and A - B (mean-IoU and binary-IoU,
overall and per run, each class's IoU) with 95% bootstrap intervals, p-values, each side's
numerics and each test's provenance (docs/reporting.md); --json, --markdown and --latex write
it to files as well ('-': to standard output, instead of the Markdown).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from panet.base.files import atomic_write
from panet.report.comparison import (comparison_document, comparison_problems,
                                     comparison_report, load_test)
from panet.report.render import render_latex, render_markdown
from panet.report.results import json_text
from panet.report.statistics import paired_comparison


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
        problems = comparison_problems(a, b)
        if problems:
            raise ValueError("\n  ".join(["these tests cannot be compared:", *problems]))
        classes = sorted(int(c) for c in a[0].record["class_iou"])
        result = paired_comparison([t.records for t in a], [t.records for t in b], classes,
                                   args.resamples)
    except ValueError as error:
        print(f"cannot compare: {error}", file=sys.stderr)
        return 2

    report = comparison_report(a, b, result, args.resamples)
    texts = {"json": json_text(comparison_document(a, b, result, args.resamples)),
             "markdown": render_markdown(report), "latex": render_latex(report)}
    chosen = {name: getattr(args, name) for name in texts if getattr(args, name)}
    if "-" not in chosen.values():
        sys.stdout.write(texts["markdown"])
    for name, target in chosen.items():
        write(target, texts[name])
    return 0


if __name__ == "__main__":
    sys.exit(main())
