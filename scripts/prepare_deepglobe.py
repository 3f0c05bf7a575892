"""Build PATNet's Deepglobe test set (6 binary land-cover classes) from the official release.

    python scripts/prepare_deepglobe.py --release DIR --out DIR

--release: the Kaggle "deepglobe-land-cover-classification-dataset" folder (train/<id>_sat.jpg,
train/<id>_mask.png). --out, missing or empty, receives <k>/test/origin/<stem>.jpg and
<k>/test/groundtruth/<stem>.png for k = 1..6 (read it with data.root=OUT). The rules, and their
sources in PATNet's data/preprocess.py, are in panet/data/deepglobe_prepare.py. A folder that is
no release, or a non-empty --out, is refused in one line before anything is written (status 2).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from panet.data.deepglobe_prepare import (CLASS_COLOURS, CLASS_NAMES, PrepareSummary,
                                          prepare_deepglobe, release_pairs)


def check_out(out: Path) -> None:
    """ValueError unless ``out`` can receive the tiles: missing or an empty folder."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; name a new folder")
    if out.is_dir() and any(out.iterdir()):
        raise ValueError(f"--out {out} is not empty; name a new or empty folder (nothing is "
                         "overwritten)")


def print_summary(summary: PrepareSummary, out: Path) -> None:
    print(f"{summary.images} images -> {summary.tiles} tiles, {summary.kept} kept by PATNet's "
          f"filter; written under {out}:")
    for class_id, count in summary.per_class.items():
        print(f"  {class_id} {CLASS_NAMES[class_id]:<12s} RGB {CLASS_COLOURS[class_id]!s:<16s}"
              f"{count:6d} tiles")
    if summary.off_palette:
        print(f"note: {summary.off_palette} tiles held colours outside the 7 Deepglobe colours "
              f"(compared exactly, as PATNet did)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--release", type=Path, required=True,
                        help="the official release folder (holding train/)")
    parser.add_argument("--out", type=Path, required=True,
                        help="new or empty folder for the tiles (the dataset's data.root)")
    args = parser.parse_args(argv)
    try:
        pairs = release_pairs(args.release)
        check_out(args.out)
    except ValueError as error:
        print(f"Cannot prepare {args.release}: {error}")
        return 2
    print_summary(prepare_deepglobe(pairs, args.out), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
