"""Benchmark: PANet's cost beyond its encoder, as ratios measured in one run.

For 1-way 1-shot and 1-way 5-shot episodes (1 query, 417 x 417, VGG-16 or --encoder):
- training step (forward, both losses, backward, SGD step) / encoder forward+backward over the
  same images (target <= 1.10);
- inference (forward, no grad) / encoder forward over the same images (target <= 1.10);
- peak memory of a training step / that of an encoder-only training step (target <= 1.25).

Times are medians of --repeats runs after a warm-up, the model and its baseline alternating so
that drift hits both. Memory: on CUDA, peak allocated bytes; on CPU, each step runs in a fresh
subprocess and reports its peak resident set size (ru_maxrss) above the resident size just
before the step, plus the absolute peak.

    python scripts/bench_model.py [--device cpu|cuda] [--threads 2] [--repeats 3] [--shots 1 5]
        [--encoder vgg16|small|resnet50|resnet101]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from functools import partial
from typing import Callable, Dict, Union

import torch

from panet.losses import panet_loss
from panet.models import PANet, build_encoder, resnet_encoder

TARGETS = {"train": 1.10, "inference": 1.10, "memory": 1.25}
ENCODERS = {  # randomly initialised: speed does not depend on the weights
    "vgg16": partial(build_encoder, "vgg16"),
    "small": partial(build_encoder, "small"),
    "resnet50": partial(resnet_encoder, 50),
    "resnet101": partial(resnet_encoder, 101),
}


def make_episode(shots: int, size: int, device: str):
    """One 1-way episode with a random image content and a half-image support mask."""
    g = torch.Generator().manual_seed(0)
    support_images = torch.randn(1, 1, shots, 3, size, size, generator=g)
    query_images = torch.randn(1, 1, 3, size, size, generator=g)
    support_fg = torch.zeros(1, 1, shots, size, size)
    support_fg[..., : size // 2] = 1
    query_labels = torch.zeros(1, 1, size, size, dtype=torch.long)
    query_labels[..., size // 3:] = 1
    tensors = (support_images, support_fg, 1 - support_fg, query_images, query_labels)
    return [t.to(device) for t in tensors]


class Workloads:
    """The four measured operations on one model and one episode."""

    def __init__(self, shots: int, size: int, device: str, encoder: str = "vgg16"):
        torch.manual_seed(0)
        self.model = PANet(ENCODERS[encoder]()).to(device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=1e-9, momentum=0.9,
                                         weight_decay=5e-4)
        self.episode = make_episode(shots, size, device)
        self.images = torch.cat([self.episode[0].flatten(0, 2), self.episode[3].flatten(0, 1)])

    def train_step(self):
        support_images, fg, bg, query_images, labels = self.episode
        self.optimizer.zero_grad(set_to_none=True)
        out = self.model(support_images, fg, bg, query_images)
        panet_loss(out, labels, fg, bg).total.backward()
        self.optimizer.step()

    def encoder_train_step(self, with_optimizer_step=True):
        self.optimizer.zero_grad(set_to_none=True)
        self.model.encoder(self.images).sum().backward()
        if with_optimizer_step:
            self.optimizer.step()

    def encoder_forward_backward(self):
        self.encoder_train_step(with_optimizer_step=False)

    @torch.inference_mode()
    def inference(self):
        support_images, fg, bg, query_images, _ = self.episode
        self.model(support_images, fg, bg, query_images).logits.argmax(dim=2)

    @torch.inference_mode()
    def encoder_forward(self):
        self.model.encoder(self.images)


def synchronize(device: Union[str, torch.device]):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def median_times(work: Dict[str, Callable[[], object]], repeats: int,
                 device: Union[str, torch.device]) -> Dict[str, float]:
    """Median seconds of each named operation, alternating them (so that drift hits all of
    them), after one warm-up each. Also used by scripts/bench_predict.py."""
    times = {name: [] for name in work}
    for round_ in range(repeats + 1):
        for name, run in work.items():
            synchronize(device)
            start = time.perf_counter()
            run()
            synchronize(device)
            if round_:  # round 0 is the warm-up
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def peak_memory(name: str, shots: int, size: int, device: str, threads: int, encoder: str):
    """(peak bytes above the pre-step level, absolute peak bytes) of one operation."""
    if device.startswith("cuda"):
        work = Workloads(shots, size, device, encoder)
        getattr(work, name)()  # allocate optimizer state outside the measured step
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        getattr(work, name)()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
        return peak - before, peak
    # CPU: a fresh process per measurement, so that ru_maxrss is this operation's own peak
    result = subprocess.run(
        [sys.executable, __file__, "--memory-probe", name, "--shots", str(shots),
         "--size", str(size), "--threads", str(threads), "--encoder", encoder],
        check=True, capture_output=True, text=True)
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    return probe["step_peak"], probe["peak"]


def memory_probe(name: str, shots: int, size: int, encoder: str):
    """Subprocess side of `peak_memory` on CPU: prints a JSON line."""
    work = Workloads(shots, size, "cpu", encoder)
    for param in work.model.parameters():  # momentum buffers exist in both workloads alike
        work.optimizer.state[param]["momentum_buffer"] = torch.zeros_like(param)
    before = rss_bytes()
    getattr(work, name)()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"step_peak": peak - before, "peak": peak}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=417)
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--encoder", default="vgg16", choices=list(ENCODERS))
    parser.add_argument("--memory-probe", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_probe:
        return memory_probe(args.memory_probe, args.shots[0], args.size, args.encoder)

    print(f"{args.encoder}, device {args.device}, {args.threads} threads, {args.size} x "
          f"{args.size}, 1 way, 1 query, medians of {args.repeats} runs; torch {torch.__version__}")
    rows = []
    for shots in args.shots:
        work = Workloads(shots, args.size, args.device, args.encoder)
        t = median_times({name: getattr(work, name) for name in (
            "encoder_forward_backward", "train_step", "encoder_forward", "inference")},
            args.repeats, args.device)
        memory = {name: peak_memory(name, shots, args.size, args.device, args.threads,
                                    args.encoder)
                  for name in ("encoder_train_step", "train_step")}
        del work
        rows += [
            (f"{shots}-shot training step", t["train_step"], t["encoder_forward_backward"],
             "s", "train"),
            (f"{shots}-shot inference", t["inference"], t["encoder_forward"], "s", "inference"),
            (f"{shots}-shot train-step peak memory (above pre-step)",
             memory["train_step"][0] / 2**30, memory["encoder_train_step"][0] / 2**30, "GiB",
             "memory"),
            (f"{shots}-shot train-step peak memory (process total)",
             memory["train_step"][1] / 2**30, memory["encoder_train_step"][1] / 2**30, "GiB",
             "memory"),
        ]
    print(f"{'measure':52s} {'PANet':>9s} {'encoder':>9s} {'ratio':>7s} {'target':>7s}")
    for label, ours, base, unit, kind in rows:
        ratio = ours / base
        verdict = "ok" if ratio <= TARGETS[kind] else "MISSED"
        print(f"{label:52s} {ours:8.3f}{unit[0]} {base:8.3f}{unit[0]} {ratio:7.3f} "
              f"{'<=' + str(TARGETS[kind]):>7s} {verdict}")


if __name__ == "__main__":
    main()
