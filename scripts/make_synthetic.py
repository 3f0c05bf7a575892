"""Generate the synthetic few-shot dataset (see panet/data/synthetic.py and data/README.md).

    python scripts/make_synthetic.py [--out data/synthetic] [--n-images 400] [--size 375 500]
                                     [--seed 0] [--coco] [--year 2014] [--layout voc|folder]

Writes OUT/VOC2012 (PASCAL layout: dataset name "synthetic", or "pascal" on OUT/VOC2012) and,
with --coco, OUT/coco (COCO layout, year --year); with --layout folder, the folder layout of
your own datasets into OUT instead (dataset name "folder" after scripts/prepare_folder.py), plus
OUT/examples/ (a support image, its 0/255 mask, query images) for scripts/predict.py.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from panet.data.synthetic import DEFAULT_N_IMAGES, generate, generate_folder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data", "synthetic"),
                        help="output folder (default data/synthetic, where configs/synthetic.yaml "
                             "reads it)")
    parser.add_argument("--n-images", type=int, default=DEFAULT_N_IMAGES)
    parser.add_argument("--size", type=int, nargs=2, default=(375, 500), metavar=("H", "W"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--coco", action="store_true", help="also write the COCO-json variant")
    parser.add_argument("--year", type=int, default=2014, help="year in the COCO file names")
    parser.add_argument("--layout", choices=("voc", "folder"), default="voc",
                        help="voc: OUT/VOC2012 (+ OUT/coco); folder: the folder layout in OUT")
    args = parser.parse_args(argv)
    if args.layout == "folder" and args.coco:
        parser.error("--coco belongs to the voc layout")
    start = time.perf_counter()
    if args.layout == "folder":
        generate_folder(args.out, n_images=args.n_images, size=tuple(args.size), seed=args.seed,
                        val_fraction=args.val_fraction)
    else:
        generate(args.out, n_images=args.n_images, size=tuple(args.size), seed=args.seed,
                 val_fraction=args.val_fraction, coco=args.coco, coco_year=args.year)
    print(f"wrote {args.n_images} images ({args.size[0]} x {args.size[1]}) to {args.out} in "
          f"{time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
