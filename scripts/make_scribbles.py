"""Write robot-drawn scribbles for a PASCAL VOC 2012 folder, in the released format.

    python scripts/make_scribbles.py VOC2012_DIR [--workers N]

For every SegmentationClassAug/{id}.png writes ScribbleAugAuto/{id}.png (0 background scribble,
k foreground scribble of instance k, 255 elsewhere) drawn by the DAVIS-challenge interaction
robot (`panet.data.voc.generate_scribbles`; the loader draws the same on the fly without them).
Resumable: existing files are kept, each new one written under a temporary name and renamed.
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import nullcontext
from multiprocessing import Pool
from pathlib import Path
from typing import Tuple

from panet.data.label_png import save_label_png
from panet.data.voc import CLASS_DIR, ORIGIN, SCRIBBLE_DIR, generate_scribbles
from panet.base.files import atomic_write
from panet.base.monitor import Progress


def write_scribbles(task: Tuple[Path, str]) -> float:
    """Generate and write the scribble PNG of one image; returns the generation time in s."""
    root, image_id = task
    start = time.perf_counter()
    scribbles = generate_scribbles(root, image_id)
    seconds = time.perf_counter() - start
    with atomic_write(root / SCRIBBLE_DIR / f"{image_id}.png") as file:  # no half-written PNG
        save_label_png(file, scribbles)
    return seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("voc_root", type=Path, help="the VOC2012 folder")
    parser.add_argument("--workers", type=int, default=1, help="processes drawing scribbles")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    masks = args.voc_root / CLASS_DIR
    if not masks.is_dir():
        print(f"Cannot make scribbles: missing folder {masks}; it comes from {ORIGIN[CLASS_DIR]}")
        return 2
    (args.voc_root / SCRIBBLE_DIR).mkdir(exist_ok=True)
    ids = sorted(path.stem for path in masks.glob("*.png"))
    todo = [i for i in ids if not (args.voc_root / SCRIBBLE_DIR / f"{i}.png").is_file()]
    print(f"{len(ids)} class masks, {len(ids) - len(todo)} scribble files kept, "
          f"{len(todo)} to draw")
    tasks = [(args.voc_root, image_id) for image_id in todo]
    times = []
    with Pool(args.workers) if args.workers > 1 else nullcontext() as pool, \
            Progress(len(tasks), desc="scribble image", every=max(1, len(tasks) // 20)) as bar:
        for seconds in (pool.imap_unordered(write_scribbles, tasks) if pool
                        else map(write_scribbles, tasks)):
            times.append(seconds)
            bar.update()
    if times:
        print(f"drew {len(times)} scribble maps into {args.voc_root / SCRIBBLE_DIR}: "
              f"{sum(times) / len(times):.3f} s per image on average, {max(times):.3f} s at most")
    return 0


if __name__ == "__main__":
    sys.exit(main())
