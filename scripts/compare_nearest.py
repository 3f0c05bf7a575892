"""Compare the labels' nearest-neighbour resize with PIL's NEAREST (what the release used).

    python scripts/compare_nearest.py VOC2012_DIR [--size 417]

``panet.data.transforms.resize_nearest`` takes input row/column floor((i + 0.5) * in / out).
Over the side lengths of the ``SegmentationClassAug`` masks, prints how many output rows/columns
read another input than PIL, by how much, and how many are exact ties ((i + 0.5) * in / out an
integer); then the share of differing pixels over all masks.
"""

from __future__ import annotations

import argparse
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from panet.data.label_png import load_label_png
from panet.data.transforms import resize_nearest
from panet.data.voc import CLASS_DIR, ORIGIN


def pil_nearest_index(n_in: int, n_out: int) -> np.ndarray:
    """The input index PIL's NEAREST resize reads for each of ``n_out`` outputs."""
    ramp = Image.fromarray(np.arange(n_in, dtype=np.int32)[None, :], mode="I")
    return np.asarray(ramp.resize((n_out, 1), Image.NEAREST))[0].astype(np.int64)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("voc_root", type=Path, help="the VOC2012 folder")
    parser.add_argument("--size", type=int, default=417, help="output side length")
    args = parser.parse_args(argv)
    masks = sorted((args.voc_root / CLASS_DIR).glob("*.png"))
    if not masks:
        print(f"no masks under {args.voc_root / CLASS_DIR}; they come from {ORIGIN[CLASS_DIR]}")
        return 2
    lengths, n_pixels, n_differ = set(), 0, 0
    for path in tqdm(masks, unit="mask"):
        labels = load_label_png(path)
        lengths.update(labels.shape)
        pil = np.asarray(Image.fromarray(labels).resize((args.size, args.size), Image.NEAREST))
        n_differ += int((resize_nearest(labels, (args.size, args.size)) != pil).sum())
        n_pixels += args.size * args.size
    differ, ties, largest = 0, 0, 0
    for n_in in sorted(lengths):
        ours = resize_nearest(np.arange(n_in)[None, :], (1, args.size))[0]
        pil = pil_nearest_index(n_in, args.size)
        for i in np.flatnonzero(ours != pil):
            differ += 1
            ties += (Fraction(2 * int(i) + 1, 2) * Fraction(n_in, args.size)).denominator == 1
            largest = max(largest, abs(int(ours[i]) - int(pil[i])))
    print(f"{len(lengths)} side lengths ({min(lengths)}..{max(lengths)}) -> {args.size}: "
          f"{differ} of {len(lengths) * args.size} output rows/columns read another input "
          f"row/column than PIL (at most {largest} apart; {ties} of them exact ties)")
    print(f"{len(masks)} masks: {n_differ} of {n_pixels} pixels differ "
          f"({100 * n_differ / n_pixels:.4f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
