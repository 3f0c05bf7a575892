"""Benchmark: the cost of segmenting one query of your own against one encoder forward.

1 support and --queries 16 queries (375 x 500 JPEGs of the synthetic set, read from disk),
VGG-16 PANet with random weights at 417 x 417:
- segment: `Segmenter.segment` over the queries (read, resize, normalise, encode in batches,
  logits upsampled to the original size, argmax), per query;
- predict: the same plus writing each label PNG and overlay (scripts/predict.py's loop), per
  query;
- baseline: one encoder forward of one image (1 x 3 x 417 x 417).
Target: predict <= 1.10 x the baseline (the supports are encoded once per call, so N queries
cost about N encoder forwards). Batched forwards can cost less per image than one forward on its
own, so each per-query time is also given against the encoder's time per image in a batch of
--batch-size: what segmenting adds beyond encoding. Times are medians of --repeats runs after a
warm-up, all measures alternating so that drift hits all of them.

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
from bench_model import median_times  # scripts/bench_model.py, beside this file
from panet.data.synthetic import render_image
from panet.inference import DEFAULT_BATCH_SIZE, Segmenter
from panet.models import PANet, vgg16_encoder

TARGET = 1.10
IMAGE_SIZE = (375, 500)  # H x W, a typical PASCAL image


def write_inputs(folder: Path, n_queries: int):
    """A support image with the mask of its first object, and ``n_queries`` query images."""
    paths = []
    for index in range(1 + n_queries):
        pixels, class_map, _, objects = render_image(index, seed=0, size=IMAGE_SIZE)
        path = folder / f"image_{index:02d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
        if index == 0:
            mask = folder / "support_mask.png"
            Image.fromarray(objects[0][1].astype(np.uint8) * 255).save(mask)
    return [[(paths[0], mask)]], paths[1:]


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
    image = torch.randn(1, 3, 417, 417, device=segmenter.device)
    batch = image.expand(args.batch_size, -1, -1, -1).contiguous()

    with tempfile.TemporaryDirectory() as scratch:
        ways, queries = write_inputs(Path(scratch), args.queries)
        out = Path(scratch) / "out"

        @torch.inference_mode()
        def encoder_forward():
            segmenter.model.encoder(image)

        @torch.inference_mode()
        def encoder_batch():
            segmenter.model.encoder(batch)

        def segment():
            segmenter.segment(ways, queries)

        def predict():
            predict_script.predict(segmenter, ways, queries, out, progress=False)

        median = median_times({"encoder": encoder_forward, "batch": encoder_batch,
                               "segment": segment, "predict": predict}, args.repeats,
                              segmenter.device)
    print(f"device {segmenter.device}, {args.threads} threads, VGG-16 at 417 x 417, 1 support, "
          f"{args.queries} queries of {IMAGE_SIZE[0]} x {IMAGE_SIZE[1]}, batch size "
          f"{args.batch_size}, medians of {args.repeats} runs; torch {torch.__version__}")
    per_image = median["batch"] / args.batch_size
    print(f"{'measure':44s} {'time':>9s} {'ratio':>7s} {'vs batched':>10s}")
    print(f"{'encoder forward, one image (baseline)':44s} {median['encoder']:8.3f}s {1:7.3f}")
    print(f"{f'encoder forward per image, batch of {args.batch_size}':44s} {per_image:8.3f}s "
          f"{per_image / median['encoder']:7.3f}")
    for name, label in (("segment", "Segmenter.segment, per query"),
                        ("predict", "predict.py loop (+ PNG, overlay), per query")):
        per_query = median[name] / args.queries
        ratio = per_query / median["encoder"]
        verdict = "" if name != "predict" else (
            f"  target <= {TARGET}: {'ok' if ratio <= TARGET else 'MISSED'}")
        print(f"{label:44s} {per_query:8.3f}s {ratio:7.3f} {per_query / per_image:10.3f}"
              f"{verdict}")

if __name__ == "__main__":
    sys.exit(main())
