"""Episode-loading throughput: episodes/s from a DataLoader with 2 workers, 1-way 1-shot at 417.

    python scripts/bench_data.py [--episodes 300] [--voc-root DIR] [--coco-root DIR --coco-year Y]

VOC: the PASCAL loader on 375 x 500 synthetic JPEGs in a temporary folder, or on --voc-root;
COCO: the COCO-20i loader on --coco-root (file names of year --coco-year) when given. Training
mode (training classes, flips) and test mode are timed apart after a warm-up of the workers;
targets >= 20 episodes/s (VOC) and >= 10 (COCO).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

from torch.utils.data import DataLoader

from panet.data import collate_episodes, make_episode_dataset
from panet.data.synthetic import VOC_DIR, generate
from panet.report.benchmarks import verdict
from panet.settings import EpisodeSetting

WARMUP_BATCHES = 10
TARGETS = {"VOC": 20, "COCO": 10}  # episodes/s


def episodes_per_second(setting: EpisodeSetting, train: bool, n_episodes: int) -> float:
    """Episodes/s of a 2-worker DataLoader over `n_episodes` episodes, after a warm-up."""
    with warnings.catch_warnings():  # small real sets leave classes out; not what is timed
        warnings.simplefilter("ignore")
        dataset = make_episode_dataset(setting, n_episodes + WARMUP_BATCHES, seed=1234,
                                       train=train)
    loader = DataLoader(dataset, batch_size=1, num_workers=2, collate_fn=collate_episodes)
    batches = iter(loader)
    for _ in range(WARMUP_BATCHES):
        next(batches)
    start = time.perf_counter()
    for _ in batches:
        pass
    return n_episodes / (time.perf_counter() - start)


def print_rates(name: str, setting: EpisodeSetting, n_episodes: int) -> None:
    """The rates of training and test mode against the dataset's target."""
    for train in (True, False):
        rate = episodes_per_second(setting, train, n_episodes)
        print(f"{name:4s} {'train' if train else 'test '}: {rate:6.1f} episodes/s (target >= "
              f"{TARGETS[name]}) {verdict(rate, TARGETS[name], at_least=True)}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument("--voc-root", type=Path, help="a VOC2012 folder (default: synthetic)")
    parser.add_argument("--coco-root", type=Path,
                        help="a COCO folder (annotations/, train<year>/); default: COCO skipped")
    parser.add_argument("--coco-year", type=int, default=2017,
                        help="the year in its file names (default 2017)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as scratch:
        voc_root = args.voc_root
        if voc_root is None:
            generate(scratch, n_images=200, size=(375, 500), seed=0)
            voc_root = Path(scratch) / VOC_DIR
            print(f"VOC layout: 200 synthetic 375 x 500 JPEGs in {voc_root}")
        print_rates("VOC", EpisodeSetting(name="pascal", root=str(voc_root)), args.episodes)
    if args.coco_root is None:
        print("COCO: skipped (no --coco-root)")
    else:
        print_rates("COCO", EpisodeSetting(name="coco", root=str(args.coco_root),
                                           year=args.coco_year), args.episodes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
