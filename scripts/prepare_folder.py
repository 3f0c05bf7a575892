"""Check a dataset in the folder layout and write its per-class image lists.

    python scripts/prepare_folder.py ROOT [--workers 2]

ROOT holds images/<id>.jpg|.png, masks/<id>.png (class indices: 0 background, k = line k of
classes.txt, 255 ignore), classes.txt and optionally splits/<split>.txt (see
panet/data/folder.py). Every file is checked; every problem found is listed, followed by a
summary, and the script exits with status 1 without writing anything. Otherwise it writes
ROOT/lists/<split>/class<k>.txt (and counts.txt) for split "all" and every split list, and
prints the number of images per class.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from panet.data.folder import ALL_SPLIT, LIST_DIR
from panet.data.folder_prepare import check_folder, write_folder_lists

MIN_IMAGES = 2  # an episode needs a support and a query of the class


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
    splits = list(lists)
    print(f"images per class and split:\n  {'class':<28s}" + "".join(f"{s:>10s}" for s in splits))
    for class_id, name in check.class_names.items():
        print(f"  {f'{class_id} {name}':<28s}"
              + "".join(f"{len(lists[s][class_id]):10d}" for s in splits))
    scarce = [name for class_id, name in check.class_names.items()
              if len(lists[ALL_SPLIT][class_id]) < MIN_IMAGES]
    if scarce:
        print(f"note: {len(scarce)} classes have fewer than {MIN_IMAGES} images and never make "
              f"an episode (a support and a query): {', '.join(scarce)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
