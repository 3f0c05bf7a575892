"""Segment query images given support images and their masks, with a trained PANet.

    python scripts/predict.py --checkpoint CKPT --way IMG MASK [IMG MASK ...] [--way IMG MASK ...] \
        --query Q [Q ...] --out DIR [--device auto] [--batch-size 4] [--ignore-value 255] \
        [--precision fp32|bf16|fp16] [--memory-format contiguous|channels_last]

Each --way is a class to find, its (image, mask) pairs its shots, as many for every way; masks
are foreground where non-zero. A released snapshot (<step>.pth) is read at 417 x 417; --weights
segments with PANet-init, the ImageNet encoder without episode training.

Per query: DIR/<stem>.png, the label map at the query's size as an indexed-colour PNG (0
background, c way c), and DIR/<stem>_overlay.png, the prediction over the image with a legend.
Nothing is written over an input, nor over an existing file unless --overwrite. Bad input stops
the script before any output, with a one-line reason and exit status 1.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np

from panet.data.label_png import save_label_png
from panet.base.device import precision_reason, resolve_device
from panet.inference import DEFAULT_BATCH_SIZE, Segmenter, Shot, load_image
from panet.models.numerics import MEMORY_FORMATS, PRECISIONS
from panet.base.monitor import Progress
from panet.report.figures import label_palette, prediction_overlay
from panet.base.errors import OneLineParser, one_line

QUERY_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
OVERLAY_SUFFIX = "_overlay"


def number(text: str) -> float:
    """A mask value from the command line: int when integral ("255" -> 255)."""
    value = float(text)
    return int(value) if value.is_integer() else value


def parse_ways(groups: Sequence[Sequence[str]]) -> List[List[Shot]]:
    """--way groups of IMG MASK pairs -> a list of ways, each a list of (image, mask) shots;
    ValueError for an odd group or a missing file."""
    for w, group in enumerate(groups, start=1):
        if len(group) % 2:
            raise ValueError(f"--way {w} has an odd number of paths ({len(group)}); it takes "
                             f"IMG MASK pairs")
        for path in map(Path, group):
            if not path.is_file():
                raise ValueError(f"--way {w}: {path} does not exist")
    return [list(zip(map(Path, group[::2]), map(Path, group[1::2]))) for group in groups]


def query_files(entries: Iterable[str]) -> List[Path]:
    """Query paths: files as given, folders expanded to their images (sorted by name)."""
    queries = []
    for entry in map(Path, entries):
        if entry.is_dir():
            found = sorted(p for p in entry.iterdir()
                           if p.is_file() and p.suffix.lower() in QUERY_SUFFIXES)
            if not found:
                raise ValueError(f"--query folder {entry} holds no "
                                 f"{'/'.join(QUERY_SUFFIXES)} image")
            queries += found
        elif entry.is_file():
            queries.append(entry)
        else:
            raise ValueError(f"--query {entry} does not exist")
    return queries


def output_stems(queries: Sequence[Path], out: Path, inputs: Sequence[Path] = (),
                 overwrite: bool = False) -> List[str]:
    """The stem of each query, once writing `out/<stem>.png` and `out/<stem>_overlay.png` loses
    nothing; ValueError naming the file two queries would write, an input (a query or one of
    `inputs`) it would replace, or (unless `overwrite`) an existing one."""
    written = {}
    protected = {path.resolve() for path in (*queries, *inputs)}
    for query in queries:
        for name in (query.stem, query.stem + OVERLAY_SUFFIX):
            target = out / f"{name}.png"
            if name in written:
                raise ValueError(f"queries {written[name]} and {query} would both write "
                                 f"{target}; rename one or predict them separately")
            if target.resolve() in protected:
                raise ValueError(f"{target} is an input: --out must be another folder than "
                                 "the queries' and the supports'")
            if target.exists() and not overwrite:
                raise ValueError(f"{target} exists: choose another --out, or add --overwrite "
                                 "to replace it")
            written[name] = query
    return [query.stem for query in queries]


def predict(segmenter: Segmenter, ways: Sequence[Sequence[Shot]], queries: Sequence[Path],
            out: Path, ignore_value: Optional[float] = None, progress: bool = True,
            overwrite: bool = False) -> List[Path]:
    """Segment ``queries`` and write each one's label PNG and overlay into ``out`` (by a second
    thread, while the next queries are encoded), checked first by `output_stems`; returns the
    overlays."""
    stems = output_stems(queries, out, [path for way in ways for shot in way for path in shot],
                         overwrite)
    results = segmenter.iter_segment(ways, queries, ignore_value=ignore_value)
    names = [way[0][0].name + (f" + {len(way) - 1} more" if len(way) > 1 else "")
             for way in ways]
    out.mkdir(parents=True, exist_ok=True)
    palette = label_palette()

    def write(query: Path, stem: str, labels: np.ndarray) -> Path:
        save_label_png(out / f"{stem}.png", labels, palette)
        picture = np.asarray(load_image(query, f"query {query}"))
        overlay = out / f"{stem}{OVERLAY_SUFFIX}.png"
        prediction_overlay(picture, labels, names).save(overlay, compress_level=1)
        return overlay

    jobs = []
    with ThreadPoolExecutor(max_workers=1) as writer, \
            Progress(len(queries), desc="predict query", every=max(1, len(queries) // 10),
                     enabled=progress) as bar:
        for query, stem, result in zip(queries, stems, results):
            jobs.append(writer.submit(write, query, stem, result.labels))
            bar.update()
    return [job.result() for job in jobs]


def parse_args(argv) -> Tuple[OneLineParser, argparse.Namespace]:
    """The parser and the arguments, every option checked (a bad one: one line, status 2)."""
    parser = OneLineParser(prog=Path(__file__).name, description=__doc__.split("\n\n")[0])
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", type=Path,
                       help="a train.py checkpoint or a released PANet snapshot (.pth)")
    model.add_argument("--weights", type=Path,
                       help="torchvision's ImageNet VGG-16 (vgg16-397923af.pth): PANet-init")
    parser.add_argument("--factory", metavar="PACKAGE.MODULE:CALLABLE",
                        help="the model.factory of a --checkpoint of your own method (a "
                             "checkpoint names no code to run)")
    parser.add_argument("--way", nargs="+", action="append", required=True,
                        metavar="IMG MASK", help="one way: its support images and masks")
    parser.add_argument("--query", nargs="+", action="extend", required=True,
                        help=f"query images or folders of {'/'.join(QUERY_SUFFIXES)} images")
    parser.add_argument("--out", type=Path, required=True,
                        help="output folder (another than the queries')")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace label maps and overlays already in --out (never inputs)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, ...")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help="images per encoder forward")
    parser.add_argument("--ignore-value", type=number,
                        help="mask value of pixels to ignore (e.g. 255)")
    parser.add_argument("--precision", default="fp32", choices=list(PRECISIONS),
                        help="the encoder's precision (default fp32; bf16: CPUs with "
                             "AVX512-BF16 or AMX, recent GPUs; fp16: CUDA)")
    parser.add_argument("--memory-format", default="contiguous", choices=list(MEMORY_FORMATS),
                        help="the encoder's memory format (default contiguous)")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch-size must be >= 1, got {args.batch_size}")
    try:
        resolve_device(args.device)
    except RuntimeError as error:
        parser.error(f"--device {args.device}: {error}")
    refused = precision_reason(args.precision, args.device)
    if refused:
        parser.error(f"--precision {args.precision}: {refused}")
    return parser, args


def main(argv=None) -> int:
    parser, args = parse_args(argv)
    try:
        ways = parse_ways(args.way)
        queries = query_files(args.query)
        output_stems(queries, args.out, [path for way in ways for shot in way for path in shot],
                     args.overwrite)
        numerics = {"precision": args.precision, "memory_format": args.memory_format}
        segmenter = (Segmenter.from_checkpoint(args.checkpoint, args.device, args.batch_size,
                                               factory=args.factory, **numerics)
                     if args.checkpoint else
                     Segmenter.from_weights(args.weights, args.device, batch_size=args.batch_size,
                                            **numerics))
        overlays = predict(segmenter, ways, queries, args.out, args.ignore_value,
                           overwrite=args.overwrite)
    except (ValueError, OSError) as error:
        print(f"{parser.prog}: error: {one_line(error)}", file=sys.stderr)
        return 1
    print(f"{len(queries)} label maps (<stem>.png) and overlays (<stem>{OVERLAY_SUFFIX}.png) "
          f"written to {args.out}")
    if len(overlays) == 1:
        print(f"overlay: {overlays[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
