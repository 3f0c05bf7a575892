"""Prepare a PASCAL VOC 2012 + SBD folder for the PASCAL-5i loader.

    python scripts/prepare_voc.py VOC2012_DIR [--sbd SBD_DIR/dataset] [--lists DIR] [--out DIR]

Writes {split}/class{k}.txt (the ids whose SegmentationClassAug mask holds class k) for every
{split}.txt of --lists (default VOC2012_DIR/ImageSets/Segmentation) into --out (default: the
lists folder; a read-only tree is then read with data.lists_dir=OUT) and prints the images per
class; with --sbd also SegmentationObjectAug/ instance PNGs (for box supports). A missing piece
of the layout (and where it comes from) or any bad mask (all listed) stops it with status 2
before anything is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List

from panet.data.folds import PASCAL_CLASS_NAMES
from panet.data.voc_prepare import (MaskProblems, convert_instances, images_missing,
                                    layout_problems, listed_ids, write_class_lists)
from panet.data.voc import LIST_DIR, ORIGIN, IMAGE_DIR


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("voc_root", type=Path, help="the VOC2012 folder")
    parser.add_argument("--sbd", type=Path, help="SBD's dataset/ folder (holding inst/*.mat)")
    parser.add_argument("--lists", type=Path, help="folder of the {split}.txt lists")
    parser.add_argument("--out", type=Path, help="where {split}/class{k}.txt go")
    parser.add_argument("--workers", type=int, default=2, help="threads reading masks")
    args = parser.parse_args(argv)
    lists_dir = args.lists or args.voc_root / LIST_DIR

    problems = layout_problems(args.voc_root, lists_dir)
    if args.sbd and not (args.sbd / "inst").is_dir():
        problems.append(f"missing folder {args.sbd / 'inst'}: --sbd must point at SBD's "
                        f"dataset/ folder ({ORIGIN['SegmentationObjectAug']})")
    if problems:
        print("Cannot prepare " + str(args.voc_root) + ":\n  " + "\n  ".join(problems))
        return 2

    try:
        lists = write_class_lists(args.voc_root, lists_dir, args.out, workers=args.workers)
    except MaskProblems as error:
        print(f"Cannot prepare {args.voc_root}: {error}\nReplace those masks with the official "
              f"ones ({ORIGIN['SegmentationClassAug']}) or remove their ids from the split lists.")
        return 2
    print(f"per-class lists written under {args.out or lists_dir}")
    if args.out and args.out.resolve() != lists_dir.resolve():
        print(f"the loaders read them with the config key data.lists_dir={args.out}")
    for split, per_class in lists.items():
        print(f"{split}: images per class")
        for class_id, ids in per_class.items():
            print(f"  {class_id:2d} {PASCAL_CLASS_NAMES[class_id - 1]:<12s} {len(ids)}")

    ids = listed_ids(lists_dir)
    no_image = images_missing(args.voc_root, ids)
    if no_image:
        print(f"note: {len(no_image)} listed ids have no {IMAGE_DIR}/<id>.jpg (e.g. "
              f"{no_image[:3]}); training and testing need them: {ORIGIN[IMAGE_DIR]}")
    if args.sbd:
        convert_sbd(args.voc_root, args.sbd, ids)
    return 0


def convert_sbd(voc_root: Path, sbd: Path, ids: List[str]) -> None:
    """Write the instance maps of `ids` from SBD, saying which ids have none."""
    missing = convert_instances(voc_root, sbd, ids)
    print(f"instance maps written to {voc_root / 'SegmentationObjectAug'} for "
          f"{len(ids) - len(missing)} ids")
    if missing:
        print(f"warning: {len(missing)} ids are neither in SegmentationObject/ nor in "
              f"{sbd / 'inst'} (e.g. {missing[:3]}); box supports fail on them")


if __name__ == "__main__":
    sys.exit(main())
