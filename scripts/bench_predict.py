"""Benchmark: the cost of segmenting one query of your own against one encoder forward.

1 support and --queries queries (375 x 500 JPEGs), a random VGG-16 PANet at 417 x 417, per
query: `Segmenter.segment` (read, resize, encode in batches, upsample, argmax) and predict.py's
loop (plus writing each label PNG and overlay), against one encoder forward of one image
(target for predict: <= 1.10) and against the encoder's time per image in a batch of
--batch-size. Medians of --repeats runs.

    python scripts/bench_predict.py [--device cpu|cuda] [--threads 2] [--repeats 3]
                                    [--queries 16] [--batch-size 4]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import predict as predict_script  # scripts/predict.py, beside this file
from panet.data.synthetic import render_image
from panet.inference import DEFAULT_BATCH_SIZE, Segmenter
from panet.models import PANet, vgg16_encoder
from panet.report.benchmarks import Ratio, median_times, ratio_table

TARGET = 1.10
IMAGE_SIZE = (375, 500)  # H x W, a typical PASCAL image


def write_inputs(folder: Path, n_queries: int):
    """A support image with the mask of its first object, and `n_queries` query images: the
    `ways` and `queries` of `Segmenter.segment`."""
    paths = []
    for index in range(1 + n_queries):
        pixels, _, _, objects = render_image(index, seed=0, size=IMAGE_SIZE)
        paths.append(folder / f"image_{index:02d}.jpg")
        Image.fromarray(pixels).save(paths[-1], quality=90)
        if index == 0:
            mask = folder / "support_mask.png"
            Image.fromarray(objects[0][1].astype(np.uint8) * 255).save(mask)
    return [[(paths[0], mask)]], paths[1:]


def measure(segmenter: Segmenter, args: argparse.Namespace) -> dict:
    """Median seconds of one encoder forward (1 x 3 x 417 x 417), of one batch of
    --batch-size, of segmenting and of predicting all --queries."""
    image = torch.randn(1, 3, 417, 417, device=segmenter.device)
    batch = image.expand(args.batch_size, -1, -1, -1).contiguous()

    @torch.inference_mode()
    def encode(images: torch.Tensor) -> None:
        segmenter.model.encoder(images)

    with tempfile.TemporaryDirectory() as scratch:
        ways, queries = write_inputs(Path(scratch), args.queries)
        return median_times({
            "encoder": lambda: encode(image), "batch": lambda: encode(batch),
            "segment": lambda: segmenter.segment(ways, queries),
            "predict": lambda: predict_script.predict(segmenter, ways, queries,
                                                      Path(scratch) / "out", progress=False,
                                                      overwrite=True)},
            args.repeats, segmenter.device)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--queries", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    segmenter = Segmenter(PANet(vgg16_encoder()), 417, args.device, args.batch_size)
    median = measure(segmenter, args)
    print(f"device {segmenter.device}, {args.threads} threads, VGG-16 at 417 x 417, 1 support, "
          f"{args.queries} queries of {IMAGE_SIZE[0]} x {IMAGE_SIZE[1]}, batch size "
          f"{args.batch_size}, medians of {args.repeats} runs; torch {torch.__version__}")
    one, per_image = median["encoder"], median["batch"] / args.batch_size
    segment, predict = (median[name] / args.queries for name in ("segment", "predict"))
    batched = "vs the encoder per image in a batch"
    print("\n".join(ratio_table([
        Ratio(f"encoder forward per image, batch of {args.batch_size}", per_image, one, "s"),
        Ratio("Segmenter.segment, per query", segment, one, "s"),
        Ratio(f"  {batched}", segment, per_image, "s"),
        Ratio("predict.py loop (+ PNG, overlay), per query", predict, one, "s", TARGET),
        Ratio(f"  {batched}", predict, per_image, "s")], ("time", "reference"))))


if __name__ == "__main__":
    sys.exit(main())
