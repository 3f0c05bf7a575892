"""Benchmark: PANet's cost beyond its encoder, as ratios measured in one run; or, with
--precision / --memory-format, what another precision or memory format gains against fp32 +
contiguous.

Default, 1-way 1-shot and 5-shot (1 query, 417 x 417, VGG-16 or --encoder): a training step
(forward, both losses, backward, SGD step) against the encoder's forward+backward over the same
images, inference against the encoder's forward, and their peak memory; targets <= 1.10, 1.10
and 1.25. With --precision and/or --memory-format (one --shots value): the same weights (random
init with seed 0, or --checkpoint's) in that mode against fp32 + contiguous on the same episode
(random noise, or with --data-root episode 0 of the checkpoint's test setting): the same ratios
(targets for bf16: <= 0.55 and 0.65), the largest logit difference and the share of pixels whose
argmax agrees (>= 99%).

Times: medians of --repeats runs after a warm-up, the operations alternating. Memory: on CUDA
peak allocated bytes; on CPU each step runs in a fresh process reporting its peak resident size
(VmHWM) above the size before the step, and the absolute peak.

    python scripts/bench_model.py [--device cpu|cuda] [--threads 2] [--repeats 3] [--shots 1 5]
        [--encoder vgg16|small|resnet50|resnet101] [--precision fp32|bf16|fp16]
        [--memory-format contiguous|channels_last] [--checkpoint CKPT [--data-root DIR]] [--json]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from functools import partial
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch

from panet.base.device import precision_reason
from panet.base.errors import one_line
from panet.base.process_memory import peak_resident_bytes, resident_bytes
from panet.data import collate_episodes, make_episode_dataset
from panet.models import ENCODERS, PANet, build_encoder
from panet.models.losses import panet_loss
from panet.models.numerics import MEMORY_FORMATS, PRECISIONS, Numerics
from panet.report.benchmarks import Ratio, json_of_run, median_times, ratio_table, verdict
from panet.run.folder import checkpoint_file
from panet.settings import EpisodeSetting
from panet.weights.model_files import build_trained, model_settings, read_model_file

REPO_ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"training step": 1.10, "inference": 1.10, "memory": 1.25}
# the targets for bf16 against fp32 (ratios of times; share of pixels)
NUMERICS_TARGETS = {"training step": 0.55, "inference": 0.65, "agreement": 0.99}
EPISODE_KEYS = ("support_images", "support_fg", "support_bg", "query_images", "query_labels")
GIB = 2 ** 30


def make_episode(shots: int, size: int, device: str) -> List[torch.Tensor]:
    """One 1-way episode of random images, a half-image support mask (the tensors of
    `EPISODE_KEYS`: 1 x 1 x S x 3 x H x W supports, their fg and bg, 1 x 1 x 3 x H x W query,
    1 x 1 x H x W labels)."""
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
    return PANet(build_encoder(encoder))


class Workloads:
    """The measured operations on one model (encoding with `numerics`) and one episode."""

    def __init__(self, model: PANet, episode: List[torch.Tensor],
                 numerics: Numerics = Numerics()):
        self.model = model.use_numerics(numerics)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=1e-9, momentum=0.9,
                                         weight_decay=5e-4)
        self.episode = episode
        self.images = torch.cat([episode[0].flatten(0, 2), episode[3].flatten(0, 1)])

    @classmethod
    def random(cls, shots: int, size: int, device: str, encoder: str = "vgg16",
               numerics: Numerics = Numerics()) -> "Workloads":
        """A random-init model (seed 0) on a random episode."""
        return cls(random_model(encoder).to(device), make_episode(shots, size, device), numerics)

    def train_step(self) -> None:
        support_images, fg, bg, query_images, labels = self.episode
        self.optimizer.zero_grad(set_to_none=True)
        out = self.model(support_images, fg, bg, query_images)
        panet_loss(out, labels, fg, bg, self.model.score).total.backward()
        self.optimizer.step()

    def encoder_train_step(self, optimizer_step: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.model.encode(self.images).sum().backward()
        if optimizer_step:
            self.optimizer.step()

    @torch.inference_mode()
    def logits(self) -> torch.Tensor:
        """The episode's B x Q x (1 + W) x H x W logits."""
        support_images, fg, bg, query_images, _ = self.episode
        return self.model(support_images, fg, bg, query_images).logits

    def inference(self) -> None:
        self.logits().argmax(dim=2)

    @torch.inference_mode()
    def encoder_forward(self) -> None:
        self.model.encode(self.images)


def peak_memory(name: str, shots: int, args: argparse.Namespace, encoder: str,
                numerics: Numerics = Numerics()) -> Tuple[int, int]:
    """(peak bytes above the pre-step level, absolute peak bytes) of one operation."""
    if not args.device.startswith("cuda"):  # a fresh process: its peak is this operation's
        probe = json_of_run(REPO_ROOT, [
            __file__, "--memory-probe", name, "--shots", str(shots), "--size", str(args.size),
            "--threads", str(args.threads), "--encoder", encoder, "--precision",
            numerics.precision, "--memory-format", numerics.memory_format])
        return probe["step_peak"], probe["peak"]
    work = Workloads.random(shots, args.size, args.device, encoder, numerics)
    getattr(work, name)()  # allocate optimizer state outside the measured step
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    getattr(work, name)()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    return peak - before, peak


def memory_probe(name: str, shots: int, size: int, encoder: str, numerics: Numerics) -> None:
    """Subprocess side of `peak_memory` on CPU: prints a JSON line."""
    work = Workloads.random(shots, size, "cpu", encoder, numerics)
    for param in work.model.parameters():  # momentum buffers exist in both workloads alike
        work.optimizer.state[param]["momentum_buffer"] = torch.zeros_like(param)
    before = resident_bytes()
    getattr(work, name)()
    peak = peak_resident_bytes()
    print(json.dumps({"step_peak": peak - before, "peak": peak}))


def ratio_rows(prefix: str, times: Dict[str, Tuple[Callable, Callable]],
               peaks: Tuple[Tuple[int, int], Tuple[int, int]], targets: Dict[str, float],
               args: argparse.Namespace) -> List[Ratio]:
    """Measured against reference: the median times of each pair of operations of `times`
    (label -> measured, reference; its target under the same key), then the two peak memories
    of `peaks` (measured, reference: each above pre-step and process total; target "memory")."""
    work = {(label, side): run for label, pair in times.items() for side, run in enumerate(pair)}
    t = median_times(work, args.repeats, args.device)
    rows = [Ratio(f"{prefix}{label}", t[label, 0], t[label, 1], "s", targets.get(label))
            for label in times]
    return rows + [Ratio(f"{prefix}train-step peak memory ({kind})", peaks[0][index] / GIB,
                         peaks[1][index] / GIB, "GiB", targets.get("memory"))
                   for index, kind in enumerate(("above pre-step", "process total"))]


def overhead_rows(args: argparse.Namespace) -> List[Ratio]:
    """The default benchmark: PANet against its encoder alone, per --shots value."""
    rows = []
    for shots in args.shots:
        peaks = tuple(peak_memory(name, shots, args, args.encoder)
                      for name in ("train_step", "encoder_train_step"))
        work = Workloads.random(shots, args.size, args.device, args.encoder)
        rows += ratio_rows(f"{shots}-shot ", {
            "training step": (work.train_step, partial(work.encoder_train_step, False)),
            "inference": (work.inference, work.encoder_forward)}, peaks, TARGETS, args)
    return rows


def numerics_setup(args: argparse.Namespace) -> Tuple[PANet, str, List[torch.Tensor]]:
    """The compared model (random init, or --checkpoint's), its encoder and the episode."""
    episode = make_episode(args.shots[0], args.size, args.device)
    if args.checkpoint is None:
        return random_model(args.encoder).to(args.device), args.encoder, episode
    model_file = read_model_file(checkpoint_file(args.checkpoint))
    if args.data_root is not None:
        episode = data_episode(model_file, args.data_root, args.size, args.device)
    return build_trained(model_file).to(args.device), model_settings(model_file).encoder, episode


def compare_numerics(args: argparse.Namespace, setup: tuple) -> Dict[str, object]:
    """The --precision / --memory-format comparison (module docstring) of `numerics_setup`'s
    model, encoder and episode: its setting, the ratio rows and the logits' agreement."""
    model, encoder, episode = setup
    reference = Workloads(copy.deepcopy(model), episode)
    candidate = Workloads(model, episode, args.numerics)
    expected, got = reference.logits(), candidate.logits()  # the same weights: before training
    peaks = tuple(peak_memory("train_step", args.shots[0], args, encoder, numerics)
                  for numerics in (args.numerics, Numerics()))
    judged = NUMERICS_TARGETS if args.precision == "bf16" else {}  # the targets are bf16's
    rows = ratio_rows("", {"training step": (candidate.train_step, reference.train_step),
                           "inference": (candidate.inference, reference.inference)},
                      peaks, judged, args)
    difference = float((got - expected).abs().max())
    return {
        "encoder": encoder, "weights": str(args.checkpoint or "random init (seed 0)"),
        "episode": str(args.data_root or "random noise"), "device": str(args.device),
        "threads": args.threads, "size": args.size, "shots": args.shots[0],
        "repeats": args.repeats, "precision": args.precision,
        "memory_format": args.memory_format, "rows": rows,
        "logits_max_abs_diff": difference,
        "logits_max_rel_diff": difference / float(expected.abs().max()),
        "argmax_agreement": float((got.argmax(dim=2) == expected.argmax(dim=2)).double().mean()),
    }


def print_comparison(found: Dict[str, object]) -> None:
    mode = f"{found['precision']} + {found['memory_format']}"
    print(f"{mode} against fp32 + contiguous; weights: {found['weights']}; episode: "
          f"{found['episode']}")
    print("\n".join(ratio_table(found["rows"], (mode, "fp32"))))
    agreement, target = found["argmax_agreement"], NUMERICS_TARGETS["agreement"]
    print(f"logits (H x W): largest difference {found['logits_max_abs_diff']:.3g} "
          f"({found['logits_max_rel_diff']:.3g} of the largest |logit|); argmax agrees on "
          f"{100 * agreement:.2f}% of pixels (target >= {100 * target:.0f}%) "
          f"{verdict(agreement, target, at_least=True)}")


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
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
    parser.add_argument("--checkpoint", type=Path, help="comparison: a trained model "
                        "(checkpoint or run folder) instead of a random init")
    parser.add_argument("--data-root", type=Path, help="comparison with --checkpoint: episode "
                        "0 of its test setting on this data instead of random noise")
    parser.add_argument("--json", action="store_true",
                        help="end with one line of JSON holding the numbers")
    parser.add_argument("--memory-probe", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.numerics = Numerics(args.precision, args.memory_format)
    comparing = args.numerics != Numerics()
    args.shots = args.shots or ([1] if comparing or args.memory_probe else [1, 5])
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
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.memory_probe:
        memory_probe(args.memory_probe, args.shots[0], args.size, args.encoder, args.numerics)
        return 0
    print(f"{args.encoder if args.checkpoint is None else args.checkpoint}, device "
          f"{args.device}, {args.threads} threads, {args.size} x {args.size}, 1 way, 1 query, "
          f"medians of {args.repeats} runs; torch {torch.__version__}")
    if args.numerics != Numerics():
        try:
            setup = numerics_setup(args)
        except (ValueError, OSError) as error:  # the checkpoint or data given: one line
            print(f"bench_model.py: error: {one_line(error)}", file=sys.stderr)
            return 1
        found = compare_numerics(args, setup)
        print_comparison(found)
    else:
        found = {"rows": overhead_rows(args)}
        print("\n".join(ratio_table(found["rows"], ("PANet", "encoder"))))
    if args.json:
        print(json.dumps({**found, "rows": [row.as_dict() for row in found["rows"]]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
