"""Generate the synthetic few-shot dataset (see panet/data/synthetic.py and data/README.md).

    python scripts/make_synthetic.py [--out data/synthetic] [--n-images 400] [--size 375 500]
                                     [--seed 0] [--coco] [--year 2014]
                                     [--layout voc|folder|cdfss]

--layout voc: OUT/VOC2012 (PASCAL layout: dataset "synthetic", or "pascal" on OUT/VOC2012) and,
with --coco, OUT/coco (COCO layout, year --year). folder: the folder layout in OUT (dataset
"folder" after scripts/prepare_folder.py), plus OUT/examples/ (a support image, its 0/255 mask,
queries) for scripts/predict.py. cdfss: PATNet's four cross-domain test sets in their real
layouts, OUT/Deepglobe, OUT/ISIC, OUT/LungSegmentation and OUT/FSS-1000 (fixed counts;
panet/data/synthetic_cdfss.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from panet.data.synthetic import DEFAULT_N_IMAGES, generate, generate_folder
from panet.data.synthetic_cdfss import DEEPGLOBE_DIR, FSS_DIR, ISIC_DIR, LUNG_DIR, generate_cdfss

SIZES = {"voc": (375, 500), "folder": (375, 500), "cdfss": (96, 96)}  # default --size per layout


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data", "synthetic"),
                        help="output folder (configs/synthetic.yaml reads data/synthetic)")
    parser.add_argument("--n-images", type=int, default=None,
                        help=f"images of the voc and folder layouts (default {DEFAULT_N_IMAGES})")
    parser.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="image size (default 375 500; 96 96 for cdfss)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--coco", action="store_true", help="also write the COCO-json variant")
    parser.add_argument("--year", type=int, default=2014, help="year in the COCO file names")
    parser.add_argument("--layout", choices=tuple(SIZES), default="voc",
                        help="voc: OUT/VOC2012 (+ OUT/coco); folder: the folder layout in OUT; "
                             "cdfss: the four cross-domain test sets in OUT")
    args = parser.parse_args(argv)
    if args.layout != "voc" and args.coco:
        parser.error("--coco belongs to the voc layout")
    if args.layout == "cdfss" and args.n_images is not None:
        parser.error("--n-images belongs to the voc and folder layouts (cdfss has fixed counts)")
    n_images = DEFAULT_N_IMAGES if args.n_images is None else args.n_images
    size = tuple(args.size or SIZES[args.layout])
    start = time.perf_counter()
    written = f"{n_images} images"
    if args.layout == "cdfss":
        generate_cdfss(args.out, seed=args.seed, size=size)
        written = f"{DEEPGLOBE_DIR}, {ISIC_DIR}, {LUNG_DIR} and {FSS_DIR}"
    elif args.layout == "folder":
        generate_folder(args.out, n_images=n_images, size=size, seed=args.seed,
                        val_fraction=args.val_fraction)
    else:
        generate(args.out, n_images=n_images, size=size, seed=args.seed,
                 val_fraction=args.val_fraction, coco=args.coco, coco_year=args.year)
    print(f"wrote {written} ({size[0]} x {size[1]}) to {args.out} in "
          f"{time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
