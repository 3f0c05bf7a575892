"""Benchmark: PANet's cost beyond its encoder, as ratios measured in one run; or, with
--precision / --memory-format, what another precision or memory format gains against the
default fp32 + contiguous.

Default: for 1-way 1-shot and 1-way 5-shot episodes (1 query, 417 x 417, VGG-16 or --encoder):
- training step (forward, both losses, backward, SGD step) / encoder forward+backward over the
  same images (target <= 1.10);
- inference (forward, no grad) / encoder forward over the same images (target <= 1.10);
- peak memory of a training step / that of an encoder-only training step (target <= 1.25).

--precision bf16 and/or --memory-format channels_last (one --shots value, default 1): the same
model (same weights) in that mode against fp32 + contiguous, on the same episode: training-step
and inference time ratios (targets, judged for bf16 only: <= 0.55 and <= 0.65), training-step
peak memory, the largest difference of the H x W logits (absolute, and relative to the largest
|logit| of fp32) and the share of pixels whose argmax agrees (target >= 99%). The weights are a
random init (seed 0) unless --checkpoint names a trained model; the episode is random noise
unless --data-root gives the data of that checkpoint's test setting (its episode 0, at --size).

Times are medians of --repeats runs after a warm-up, the measured operations alternating so
that drift hits all of them. Memory: on CUDA, peak allocated bytes; on CPU, each step runs in a
fresh subprocess and reports its peak resident set size (VmHWM, `panet.base.process_memory`) above
the resident size just before the step, plus the absolute peak. --json: the last line printed is
one JSON object of the numbers.

    python scripts/bench_model.py [--device cpu|cuda] [--threads 2] [--repeats 3] [--shots 1 5]
        [--encoder vgg16|small|resnet50|resnet101] [--precision fp32|bf16|fp16]
        [--memory-format contiguous|channels_last] [--checkpoint CKPT [--data-root DIR]] [--json]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

import torch

from panet.run.folder import checkpoint_file
from panet.data import collate_episodes, make_episode_dataset
from panet.base.device import precision_reason
from panet.models.losses import panet_loss
from panet.weights.model_files import build_trained, model_settings, read_model_file
from panet.models import PANet, build_encoder, resnet_encoder
from panet.models.numerics import MEMORY_FORMATS, PRECISIONS, Numerics
from panet.base.process_memory import peak_resident_bytes, resident_bytes
from panet.settings import EpisodeSetting

TARGETS = {"train": 1.10, "inference": 1.10, "memory": 1.25}
# the targets for bf16 against fp32 (ratios of times; share of pixels)
NUMERICS_TARGETS = {"train": 0.55, "inference": 0.65, "agreement": 0.99}
EPISODE_KEYS = ("support_images", "support_fg", "support_bg", "query_images", "query_labels")
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


def data_episode(model_file, root: Path, size: int, device: str) -> List[torch.Tensor]:
    """Episode 0 of a train.py checkpoint's test setting on the data under `root`, at
    size x size: the tensors of `make_episode`."""
    if model_file.config is None:
        raise ValueError(f"--data-root: {model_file.path} is a released snapshot, whose setting "
                         "is not stored; give a train.py checkpoint")
    setting = EpisodeSetting.from_config(model_file.config["data"]).replace(
        root=str(root), size=size, workers=0)
    batch = collate_episodes([make_episode_dataset(setting, 1, seed=1234, train=False)[0]])
    return [batch[key].to(device) for key in EPISODE_KEYS]


def random_model(encoder: str) -> PANet:
    """PANet with a randomly initialised `encoder` (seed 0)."""
    torch.manual_seed(0)
    return PANet(ENCODERS[encoder]())


class Workloads:
    """The measured operations on one model (encoding with `numerics`) and one episode."""

    def __init__(self, model: PANet, episode: List[torch.Tensor],
                 numerics: Numerics = Numerics()):
        self.model = model.use_numerics(numerics)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=1e-9, momentum=0.9,
                                         weight_decay=5e-4)
        self.episode = episode
        self.images = torch.cat([self.episode[0].flatten(0, 2), self.episode[3].flatten(0, 1)])

    @classmethod
    def random(cls, shots: int, size: int, device: str, encoder: str = "vgg16",
               numerics: Numerics = Numerics()) -> "Workloads":
        """A random-init model (seed 0) on a random episode."""
        return cls(random_model(encoder).to(device), make_episode(shots, size, device), numerics)

    def train_step(self):
        support_images, fg, bg, query_images, labels = self.episode
        self.optimizer.zero_grad(set_to_none=True)
        out = self.model(support_images, fg, bg, query_images)
        panet_loss(out, labels, fg, bg).total.backward()
        self.optimizer.step()

    def encoder_train_step(self, with_optimizer_step=True):
        self.optimizer.zero_grad(set_to_none=True)
        self.model.encode(self.images).sum().backward()
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
        self.model.encode(self.images)

    @torch.inference_mode()
    def logits(self) -> torch.Tensor:
        """The episode's B x Q x (1 + W) x H x W logits."""
        support_images, fg, bg, query_images, _ = self.episode
        return self.model(support_images, fg, bg, query_images).logits


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


def peak_memory(name: str, shots: int, size: int, device: str, threads: int, encoder: str,
                numerics: Numerics = Numerics()):
    """(peak bytes above the pre-step level, absolute peak bytes) of one operation."""
    if device.startswith("cuda"):
        work = Workloads.random(shots, size, device, encoder, numerics)
        getattr(work, name)()  # allocate optimizer state outside the measured step
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        getattr(work, name)()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
        return peak - before, peak
    # CPU: a fresh process per measurement, so that its peak is this operation's own
    result = subprocess.run(
        [sys.executable, __file__, "--memory-probe", name, "--shots", str(shots),
         "--size", str(size), "--threads", str(threads), "--encoder", encoder,
         "--precision", numerics.precision, "--memory-format", numerics.memory_format],
        check=True, capture_output=True, text=True)
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    return probe["step_peak"], probe["peak"]


def memory_probe(name: str, shots: int, size: int, encoder: str, numerics: Numerics):
    """Subprocess side of `peak_memory` on CPU: prints a JSON line."""
    work = Workloads.random(shots, size, "cpu", encoder, numerics)
    for param in work.model.parameters():  # momentum buffers exist in both workloads alike
        work.optimizer.state[param]["momentum_buffer"] = torch.zeros_like(param)
    before = resident_bytes()
    getattr(work, name)()
    peak = peak_resident_bytes()
    print(json.dumps({"step_peak": peak - before, "peak": peak}))


def overhead_rows(args: argparse.Namespace) -> List[Tuple[str, float, float, str, str]]:
    """The default benchmark: (label, PANet, encoder alone, unit, target kind) rows."""
    rows = []
    for shots in args.shots:
        work = Workloads.random(shots, args.size, args.device, args.encoder)
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
    return rows


def print_overhead(rows: List[Tuple[str, float, float, str, str]], as_json: bool) -> None:
    print(f"{'measure':52s} {'PANet':>9s} {'encoder':>9s} {'ratio':>7s} {'target':>7s}")
    for label, ours, base, unit, kind in rows:
        ratio = ours / base
        verdict = "ok" if ratio <= TARGETS[kind] else "MISSED"
        print(f"{label:52s} {ours:8.3f}{unit[0]} {base:8.3f}{unit[0]} {ratio:7.3f} "
              f"{'<=' + str(TARGETS[kind]):>7s} {verdict}")
    if as_json:
        print(json.dumps({"rows": [{"measure": label, "panet": ours, "encoder": base,
                                    "unit": unit, "ratio": ours / base,
                                    "target": TARGETS[kind]}
                                   for label, ours, base, unit, kind in rows]}))


def compare_numerics(args: argparse.Namespace, numerics: Numerics) -> Dict[str, object]:
    """The --precision / --memory-format comparison (module docstring): the numbers."""
    model_file = (None if args.checkpoint is None
                  else read_model_file(checkpoint_file(args.checkpoint)))
    if model_file is None:
        model, encoder = random_model(args.encoder), args.encoder
    else:
        model, encoder = build_trained(model_file), model_settings(model_file).encoder
    model = model.to(args.device)
    shots = args.shots[0]
    episode = (make_episode(shots, args.size, args.device) if args.data_root is None
               else data_episode(model_file, args.data_root, args.size, args.device))
    reference = Workloads(copy.deepcopy(model), episode)
    candidate = Workloads(model, episode, numerics)
    expected, got = reference.logits(), candidate.logits()  # the same weights: before training
    difference = float((got - expected).abs().max())
    times = median_times({"train_fp32": reference.train_step, "train": candidate.train_step,
                          "inference_fp32": reference.inference,
                          "inference": candidate.inference}, args.repeats, args.device)
    peaks = {name: peak_memory("train_step", shots, args.size, args.device, args.threads,
                               encoder, chosen)
             for name, chosen in (("fp32", Numerics()), ("candidate", numerics))}
    return {
        "encoder": encoder, "weights": str(args.checkpoint or "random init (seed 0)"),
        "episode": str(args.data_root or "random noise"), "device": str(args.device),
        "threads": args.threads, "size": args.size, "shots": shots, "repeats": args.repeats,
        "precision": numerics.precision, "memory_format": numerics.memory_format,
        "train_seconds": {"fp32": times["train_fp32"], "candidate": times["train"]},
        "inference_seconds": {"fp32": times["inference_fp32"], "candidate": times["inference"]},
        "train_ratio": times["train"] / times["train_fp32"],
        "inference_ratio": times["inference"] / times["inference_fp32"],
        "train_peak_gib": {name: peak[0] / 2**30 for name, peak in peaks.items()},
        "process_peak_gib": {name: peak[1] / 2**30 for name, peak in peaks.items()},
        "memory_ratio": peaks["candidate"][0] / peaks["fp32"][0],
        "logits_max_abs_diff": difference,
        "logits_max_rel_diff": difference / float(expected.abs().max()),
        "argmax_agreement": float((got.argmax(dim=2) == expected.argmax(dim=2)).double().mean()),
    }


def print_comparison(found: Dict[str, object], as_json: bool) -> None:
    mode = f"{found['precision']} + {found['memory_format']}"
    print(f"{mode} against fp32 + contiguous; weights: {found['weights']}; episode: "
          f"{found['episode']}")
    print(f"{'measure':40s} {'fp32':>9s} {mode:>22s} {'ratio':>7s} {'target':>7s}")
    for label, kind, unit, values, ratio in (
            ("training step", "train", "s", found["train_seconds"], found["train_ratio"]),
            ("inference", "inference", "s", found["inference_seconds"],
             found["inference_ratio"]),
            ("train-step peak memory (above pre-step)", None, "GiB", found["train_peak_gib"],
             found["memory_ratio"]),
            ("train-step peak memory (process total)", None, "GiB", found["process_peak_gib"],
             found["process_peak_gib"]["candidate"] / found["process_peak_gib"]["fp32"])):
        judged = kind is not None and found["precision"] == "bf16"  # the targets are bf16's
        target = f"<={NUMERICS_TARGETS[kind]}" if judged else ""
        verdict = (" ok" if ratio <= NUMERICS_TARGETS[kind] else " MISSED") if judged else ""
        print(f"{label:40s} {values['fp32']:8.3f}{unit[0]} {values['candidate']:21.3f}{unit[0]} "
              f"{ratio:7.3f} {target:>7s}{verdict}")
    agreement = found["argmax_agreement"]
    verdict = "ok" if agreement >= NUMERICS_TARGETS["agreement"] else "MISSED"
    print(f"logits (H x W): largest difference {found['logits_max_abs_diff']:.3g} "
          f"({found['logits_max_rel_diff']:.3g} of the largest |logit|); argmax agrees on "
          f"{100 * agreement:.2f}% of pixels (target >= "
          f"{100 * NUMERICS_TARGETS['agreement']:.0f}%) {verdict}")
    if as_json:
        print(json.dumps(found))


def main(argv: Optional[List[str]] = None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=417)
    parser.add_argument("--shots", type=int, nargs="+",
                        help="shots of the measured episodes (default 1 5; a comparison: 1)")
    parser.add_argument("--encoder", default="vgg16", choices=list(ENCODERS))
    parser.add_argument("--precision", default="fp32", choices=list(PRECISIONS),
                        help="compare this precision against fp32 (default fp32)")
    parser.add_argument("--memory-format", default="contiguous", choices=list(MEMORY_FORMATS),
                        help="compare this memory format against contiguous")
    parser.add_argument("--checkpoint", type=Path,
                        help="comparison: a trained model (checkpoint or run folder), its "
                             "encoder and weights, instead of a random init")
    parser.add_argument("--data-root", type=Path,
                        help="comparison with --checkpoint: episode 0 of its test setting on "
                             "this data instead of random noise")
    parser.add_argument("--json", action="store_true",
                        help="end with one line of JSON holding the numbers")
    parser.add_argument("--memory-probe", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    numerics = Numerics(args.precision, args.memory_format)
    comparing = numerics != Numerics()
    if args.shots is None:
        args.shots = [1] if comparing or args.memory_probe else [1, 5]
    if args.memory_probe:
        return memory_probe(args.memory_probe, args.shots[0], args.size, args.encoder, numerics)
    if comparing and len(args.shots) != 1:
        parser.error("--shots: a comparison measures one episode setting; give one value")
    if (args.checkpoint or args.data_root) and not comparing:
        parser.error("--checkpoint and --data-root are for a comparison: add --precision or "
                     "--memory-format")
    if args.data_root and not args.checkpoint:
        parser.error("--data-root draws the episode of a checkpoint's test setting: add "
                     "--checkpoint")
    refused = precision_reason(args.precision, args.device)  # the rule of the config key
    if refused:
        parser.error(f"--precision {args.precision}: {refused}")

    print(f"{args.encoder if args.checkpoint is None else args.checkpoint}, device "
          f"{args.device}, {args.threads} threads, {args.size} x {args.size}, 1 way, 1 query, "
          f"medians of {args.repeats} runs; torch {torch.__version__}")
    if comparing:
        print_comparison(compare_numerics(args, numerics), args.json)
    else:
        print_overhead(overhead_rows(args), args.json)


if __name__ == "__main__":
    main()
