"""Check a dataset in the folder layout and write its per-class image lists.

    python scripts/prepare_folder.py ROOT [--workers 2]

ROOT holds images/<id>.jpg|.png, masks/<id>.png (0 background, k = line k of classes.txt, 255
ignore), classes.txt and optionally splits/<split>.txt (panet/data/folder.py). Any problem is
listed, with a summary, and nothing is written (exit status 1); otherwise it writes
ROOT/lists/<split>/class<k>.txt (and counts.txt) for split "all" and every split list, and
prints the images per class.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict

from panet.data.folder import ALL_SPLIT, LIST_DIR
from panet.data.folder_prepare import check_folder, write_folder_lists

MIN_IMAGES = 2  # an episode needs a support and a query of the class


def print_counts(class_names: Dict[int, str], lists: Dict[str, Dict[int, list]]) -> None:
    """The images of each class in each split, and the classes too scarce for an episode."""
    print(f"images per class and split:\n  {'class':<28s}" + "".join(f"{s:>10s}" for s in lists))
    for class_id, name in class_names.items():
        print(f"  {f'{class_id} {name}':<28s}"
              + "".join(f"{len(ids[class_id]):10d}" for ids in lists.values()))
    scarce = [name for class_id, name in class_names.items()
              if len(lists[ALL_SPLIT][class_id]) < MIN_IMAGES]
    if scarce:
        print(f"note: {len(scarce)} classes have fewer than {MIN_IMAGES} images and never make "
              f"an episode (a support and a query): {', '.join(scarce)}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="the dataset folder")
    parser.add_argument("--workers", type=int, default=2, help="threads reading the files")
    args = parser.parse_args(argv)

    check = check_folder(args.root, workers=args.workers)
    if check.problems:
        print(f"Cannot prepare {args.root}:")
        for problem in check.problems:
            print(f"  [{problem.kind}] {problem.message}")
        print(f"{check.summary()}. Nothing was written; fix them and run again.")
        return 1

    lists = write_folder_lists(check)
    print(f"{args.root}: {len(check.classes_of)} images, {len(check.class_names)} classes, no "
          f"problems; per-class lists written under {args.root / LIST_DIR}")
    print_counts(check.class_names, lists)
    return 0


if __name__ == "__main__":
    sys.exit(main())
