"""Quick start on a CPU: synthetic data, a small PANet trained for a few minutes, tested against
the untrained model on the held-out classes, overlays written as PNG, and scripts/predict.py on
one held-out image.

    python scripts/demo.py [--steps 3000] [--episodes 200] [--data data/synthetic] [--out runs/demo]

Every step is a plain train.py / test.py command, printed before it runs, so the demo doubles as
a tour of the tools. Paths are relative to the current folder: the generated data goes to
data/synthetic (400 images, made once), the training run to runs/demo/train, each test to
runs/demo/{trained,untrained}_{1,5}shot, the overlays to runs/demo/qualitative_{1,5}.png.
Fold 0 of the synthetic set: training on classes 6-20, testing on 1-5 (shape x texture
combinations never seen in training). The encoder is the 0.6M-parameter
`small` one at 129 x 129 (`with synthetic small`), not the paper's VGG-16.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from panet.data.synthetic import EXAMPLE_CLASS, write_predict_example
from panet.data.voc import CLASS_DIR, IMAGE_DIR, LIST_DIR, read_id_list
from panet.report.figures import save_qualitative

REPO_ROOT = Path(__file__).resolve().parents[1]
SETTING = ["synthetic", "small", "data.fold=0"]


def run(command: list) -> None:
    """Print `command` as one would type it (`python ...`), then run it."""
    print("\n$ python " + " ".join(shlex.quote(part) for part in command[1:]), flush=True)
    subprocess.run(command, check=True)


def python(script: str, *args: str) -> list:
    """This interpreter on the repository's `script` (named relative to the current folder
    when it is inside it)."""
    path = REPO_ROOT / script
    if path.is_relative_to(Path.cwd()):
        path = path.relative_to(Path.cwd())
    return [sys.executable, str(path), *args]


def mean_iou(results: Path) -> dict:
    record = json.loads(results.read_text())
    return {key: 100 * record[key] for key in ("mean_iou", "mean_iou_std", "binary_iou")}


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
    data = [f"data.root={args.data}"]
    if not (args.data / "VOC2012").is_dir():
        run(python("scripts/make_synthetic.py", "--out", str(args.data)))

    checkpoint = args.out / "train" / "checkpoints" / "final.pt"
    if checkpoint.exists():
        print(f"\n{checkpoint} exists: skipping training (delete {args.out} to retrain)")
    elif checkpoint.with_name("last.pt").exists():  # an interrupted demo: continue it
        run(python("train.py", "with", f"train.resume={checkpoint.with_name('last.pt')}"))
    else:
        run(python("train.py", "with", *SETTING, *data, f"train.steps={args.steps}",
                   f"train.milestones=[{args.steps * 3 // 4}]",
                   f"train.checkpoint_every={max(1, args.steps // 10)}",
                   f"train.output_dir={args.out / 'train'}"))

    rows = []
    test = [f"test.runs={args.runs}", f"test.episodes={args.episodes}"]
    for shots in ("1shot", "5shot"):
        untrained, trained = args.out / f"untrained_{shots}", args.out / f"trained_{shots}"
        run(python("test.py", "with", *SETTING, *data, "notrain", shots, *test,
                   f"test.output_dir={untrained}"))
        run(python("test.py", "with", shots, *data, f"test.checkpoint={checkpoint}", *test,
                   f"test.output_dir={trained}"))
        rows.append((shots, mean_iou(untrained / "results.json"),
                     mean_iou(trained / "results.json")))

    figures = [save_qualitative(checkpoint, args.out / f"qualitative_{shots}.png", n_episodes=4,
                                root=str(args.data), shots=shots)
               for shots in (1, 5)]

    print(f"\nHeld-out classes 1-5 of the synthetic set, 1-way, {args.runs} x {args.episodes} "
          "test episodes (mean-IoU and binary-IoU in %):")
    print(f"{'setting':8s} {'untrained mean-IoU':>19s} {'trained mean-IoU':>17s} "
          f"{'untrained bin-IoU':>18s} {'trained bin-IoU':>16s}")
    for shots, before, after in rows:
        print(f"{shots:8s} {before['mean_iou']:19.1f} {after['mean_iou']:17.1f} "
              f"{before['binary_iou']:18.1f} {after['binary_iou']:16.1f}")
    print(f"\noverlays (support | query + prediction | query + ground truth): "
          f"{', '.join(str(f) for f in figures)}")

    # your own images: a support image and its 0/255 mask of a held-out class, one query
    voc = args.data / "VOC2012"
    support, mask, (query,) = write_predict_example(
        voc / IMAGE_DIR, voc / CLASS_DIR, read_id_list(voc / LIST_DIR / "val.txt"),
        EXAMPLE_CLASS, args.out / "example")
    run(python("scripts/predict.py", "--checkpoint", str(checkpoint), "--way", str(support),
               str(mask), "--query", str(query), "--out", str(args.out / "predict")))
    print(f"\nprediction for a held-out image (scripts/predict.py): "
          f"{args.out / 'predict' / (query.stem + '_overlay.png')}")
    print(f"demo finished in {(time.perf_counter() - start) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
