"""Quick start on a CPU: synthetic data, a small PANet trained for a few minutes, tested against
the untrained model on the held-out classes, overlays written as PNG, and scripts/predict.py on
one held-out image.

    python scripts/demo.py [--steps 3000] [--episodes 200] [--data data/synthetic] [--out runs/demo]

Each step is a train.py / test.py command, printed before it runs. Writes the data to --data
(made once), the training run to OUT/train, each test to OUT/{trained,untrained}_{1,5}shot, the
overlays to OUT/qualitative_{1,5}.png. Fold 0 of the synthetic set (training on classes 6-20,
testing on 1-5), with the 0.6M-parameter `small` encoder at 129 x 129.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import List

from panet.data.synthetic import EXAMPLE_CLASS, write_predict_example
from panet.data.voc import CLASS_DIR, IMAGE_DIR, LIST_DIR, read_id_list
from panet.report.figures import save_qualitative

REPO_ROOT = Path(__file__).resolve().parents[1]
SETTING = ["synthetic", "small", "data.fold=0"]
SHOTS = ("1shot", "5shot")


def run(script: str, *args: str) -> None:
    """Print `python script args` as one would type it (relative to the current folder when
    inside it), then run it with this interpreter."""
    path = REPO_ROOT / script
    if path.is_relative_to(Path.cwd()):
        path = path.relative_to(Path.cwd())
    print("\n$ python " + " ".join(shlex.quote(part) for part in (str(path), *args)), flush=True)
    subprocess.run([sys.executable, str(path), *args], check=True)


def train(args: argparse.Namespace, checkpoint: Path) -> None:
    """Train the demo's model, continue an interrupted training, or keep a finished one."""
    if checkpoint.exists():
        print(f"\n{checkpoint} exists: skipping training (delete {args.out} to retrain)")
    elif checkpoint.with_name("last.pt").exists():
        run("train.py", "with", f"train.resume={checkpoint.with_name('last.pt')}")
    else:
        run("train.py", "with", *SETTING, f"data.root={args.data}", f"train.steps={args.steps}",
            f"train.milestones=[{args.steps * 3 // 4}]",
            f"train.checkpoint_every={max(1, args.steps // 10)}",
            f"train.output_dir={args.out / 'train'}")


def test(args: argparse.Namespace, checkpoint: Path) -> List[tuple]:
    """(shots, untrained, trained) rows of mean-IoU and binary-IoU in percent, 1- and 5-shot."""
    rows = []
    test_settings = [f"data.root={args.data}", f"test.runs={args.runs}",
                     f"test.episodes={args.episodes}"]
    for shots in SHOTS:
        untrained, trained = args.out / f"untrained_{shots}", args.out / f"trained_{shots}"
        run("test.py", "with", *SETTING, "notrain", shots, *test_settings,
            f"test.output_dir={untrained}")
        run("test.py", "with", shots, f"test.checkpoint={checkpoint}", *test_settings,
            f"test.output_dir={trained}")
        rows.append((shots, *(ious(folder / "results.json") for folder in (untrained, trained))))
    return rows


def ious(results: Path) -> dict:
    record = json.loads(results.read_text())
    return {key: 100 * record[key] for key in ("mean_iou", "binary_iou")}


def print_table(rows: List[tuple], args: argparse.Namespace) -> None:
    print(f"\nHeld-out classes 1-5 of the synthetic set, 1-way, {args.runs} x {args.episodes} "
          "test episodes (mean-IoU and binary-IoU in %):")
    print(f"{'setting':8s} {'untrained mean-IoU':>19s} {'trained mean-IoU':>17s} "
          f"{'untrained bin-IoU':>18s} {'trained bin-IoU':>16s}")
    for shots, before, after in rows:
        print(f"{shots:8s} {before['mean_iou']:19.1f} {after['mean_iou']:17.1f} "
              f"{before['binary_iou']:18.1f} {after['binary_iou']:16.1f}")


def predict_example(args: argparse.Namespace, checkpoint: Path) -> None:
    """scripts/predict.py on a support image, its 0/255 mask of a held-out class, one query."""
    voc = args.data / "VOC2012"
    support, mask, (query,) = write_predict_example(
        voc / IMAGE_DIR, voc / CLASS_DIR, read_id_list(voc / LIST_DIR / "val.txt"),
        EXAMPLE_CLASS, args.out / "example")
    run("scripts/predict.py", "--checkpoint", str(checkpoint), "--way", str(support), str(mask),
        "--query", str(query), "--out", str(args.out / "predict"))
    print(f"\nprediction for a held-out image (scripts/predict.py): "
          f"{args.out / 'predict' / (query.stem + '_overlay.png')}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3000, help="training steps (episodes)")
    parser.add_argument("--episodes", type=int, default=200, help="test episodes per run")
    parser.add_argument("--runs", type=int, default=1, help="test runs (seeds 1234 + r)")
    parser.add_argument("--data", type=Path, default=Path("data", "synthetic"),
                        help="the synthetic dataset (generated there when absent)")
    parser.add_argument("--out", type=Path, default=Path("runs", "demo"),
                        help="where the runs and figures go")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if not (args.data / "VOC2012").is_dir():
        run("scripts/make_synthetic.py", "--out", str(args.data))
    checkpoint = args.out / "train" / "checkpoints" / "final.pt"
    train(args, checkpoint)
    rows = test(args, checkpoint)
    figures = [save_qualitative(checkpoint, args.out / f"qualitative_{shots}.png", n_episodes=4,
                                root=str(args.data), shots=shots) for shots in (1, 5)]
    print_table(rows, args)
    print(f"\noverlays (support | query + prediction | query + ground truth): "
          f"{', '.join(str(f) for f in figures)}")
    predict_example(args, checkpoint)
    print(f"demo finished in {(time.perf_counter() - start) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
