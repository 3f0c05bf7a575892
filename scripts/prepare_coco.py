"""Check a COCO folder for the COCO-20i loader and build its annotation cache.

    python scripts/prepare_coco.py ROOT [--year 2014] [--splits train val] [--cache-dir DIR]

ROOT holds cocodataset.org's zips unpacked: annotations/instances_{split}{year}.json and
{split}{year}/. A missing piece is reported with where it comes from (exit status 2), a damaged
annotation file or missing images with status 1; otherwise it builds (or reuses) the cache
`panet.data.coco.CocoSource` reads (default: $XDG_CACHE_HOME/panet or ~/.cache/panet, a folder
per data root; nothing is written under ROOT) and prints the images per class.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from panet.data.coco import SPLITS, CocoSource, layout_problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="folder holding annotations/ and {split}{year}/")
    parser.add_argument("--year", type=int, default=2014, help="COCO release (2014 for PANet)")
    parser.add_argument("--splits", nargs="+", choices=SPLITS, default=list(SPLITS))
    parser.add_argument("--cache-dir", type=Path, help="where the cache goes (default: see above)")
    args = parser.parse_args(argv)

    problems = [p for split in args.splits for p in layout_problems(args.root, split, args.year)]
    if problems:
        print(f"Cannot prepare {args.root}:\n  " + "\n  ".join(problems))
        return 2

    class_lists = {}
    for split in args.splits:
        start = time.perf_counter()
        try:
            source = CocoSource(args.root, split, args.year, cache_dir=args.cache_dir)
        except (OSError, ValueError) as err:
            print(f"Cannot prepare {split}{args.year}: {err}")
            return 1
        print(f"{split}{args.year}: {len(source.image_ids)} images, cache {source.cache_file} "
              f"ready in {time.perf_counter() - start:.2f} s")
        class_lists[f"{split}{args.year}"] = source.class_images()

    print("images per class:" + " " * 17 + " ".join(class_lists))
    for class_id, name in source.class_names.items():
        counts = " ".join(f"{len(lists[class_id]):>{len(split)}d}"
                          for split, lists in class_lists.items())
        print(f"  {class_id:2d} {name:<28s} {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
