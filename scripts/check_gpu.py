"""Self-check of the CUDA paths on your machine: a few minutes, one line per check.

    python scripts/check_gpu.py [--device auto] [--keep DIR]

On a toy synthetic dataset, on `--device` (auto: the first GPU torch sees, else the CPU):
train.py, and the same run interrupted and resumed (equal weights: bitwise on the CPU, within
1e-4 on CUDA, whose upsampling and NLL backward are nondeterministic); test.py on both
evaluation paths (IoUs within the exactness contract's 0.1 points); scripts/predict.py; the
device in results.json (TF32 off); with GPUs, torchrun with more processes than GPUs refused in
one line, and with 2+ GPUs test.py on 2 processes agreeing with one. Each check prints `ok`,
`FAIL` (with the reason) or `skip`; the exit status is 1 when any failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import List, Optional

import torch

from panet.base.device import resolve_device
from panet.data.synthetic import EXAMPLE_CLASS, VOC_DIR, generate, write_predict_example
from panet.data.voc import CLASS_DIR, IMAGE_DIR, LIST_DIR, read_id_list
from panet.report.benchmarks import run_python
from panet.weights.checkpoint import load_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULT_ATOL = 1e-3  # the exactness contract: IoUs (fractions) within 0.1 points
CUDA_WEIGHT_RTOL = 1e-4  # resumed against uninterrupted weights on CUDA (nondeterministic kernels)
STEPS = 6
TOY = ["synthetic", "fast", "data.size=97", f"train.steps={STEPS}", "train.checkpoint_every=1"]
TEST = ["test.checkpoint=straight", "test.runs=1", "test.episodes=6"]


class Failed(Exception):
    """A check's reason for failing (one line)."""


class Checks:
    """The checks, in order, on one device and one scratch folder."""

    def __init__(self, device: str, scratch: Path):
        self.device, self.scratch = device, scratch
        self.gpus = torch.cuda.device_count() if device.startswith("cuda") else 0
        self.data = scratch / "data"

    def script(self, name: str, *args: str, launcher: Optional[List[str]] = None,
               expect_failure: bool = False) -> str:
        """The output of the checkout's script `name` run with `args` (under `launcher`) from
        the scratch folder; Failed with its last lines on an unexpected exit status."""
        result = run_python(REPO_ROOT, [str(REPO_ROOT / name), *args], self.scratch, launcher,
                            timeout=900)
        output = result.stdout + result.stderr
        if (result.returncode != 0) != expect_failure:
            tail = " | ".join(output.strip().splitlines()[-3:])
            raise Failed(f"`{name} {' '.join(args[:1])} ...` exited with {result.returncode}: "
                         f"{tail}")
        return output

    def torchrun_test(self, processes: int, output_dir: str, **options) -> str:
        """test.py on the GPUs under torchrun with `processes` processes."""
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc_per_node={processes}"]
        return self.script("test.py", "with", *TEST, "device=cuda",
                           f"test.output_dir={output_dir}", launcher=launcher, **options)

    def results(self, run: str) -> dict:
        """The results.json of the test run folder `run`."""
        return json.loads((self.scratch / run / "results.json").read_text())

    def with_config(self, *args: str) -> List[str]:
        return ["with", *TOY, f"data.root={self.data}", f"device={self.device}", *args]

    def train(self) -> Optional[str]:
        generate(self.data, n_images=60, size=(96, 128), seed=7)
        self.script("train.py", *self.with_config("train.output_dir=straight"))
        return f"{STEPS} steps on {self.device}"

    def resume(self) -> Optional[str]:
        self.script("train.py", *self.with_config("train.output_dir=resumed",
                                                  f"train.steps={STEPS // 2}"))
        self.script("train.py", "with", "train.resume=resumed", f"train.steps={STEPS}",
                    f"device={self.device}")
        straight, resumed = (load_checkpoint(self.scratch / run / "checkpoints" / "final.pt")
                             for run in ("straight", "resumed"))
        exact = not self.device.startswith("cuda")
        for key, value in straight["model"].items():
            same = (torch.equal(value, resumed["model"][key]) if exact else
                    torch.allclose(value, resumed["model"][key], rtol=CUDA_WEIGHT_RTOL, atol=1e-7))
            if not same:
                raise Failed(f"{key} differs between the resumed and the uninterrupted run")
        return "bitwise" if exact else f"within rtol {CUDA_WEIGHT_RTOL}"

    def test_paths(self) -> Optional[str]:
        results = {}
        for encode in ("image", "episode"):
            self.script("test.py", "with", *TEST, f"test.encode={encode}",
                        f"test.output_dir=test-{encode}", f"device={self.device}")
            results[encode] = self.results(f"test-{encode}")
        difference = max(abs(results["image"][key] - results["episode"][key])
                         for key in ("mean_iou", "binary_iou"))
        if difference > RESULT_ATOL:
            raise Failed(f"the two paths differ by {difference:.2e} > {RESULT_ATOL}")
        return f"IoUs differ by {difference:.1e}"

    def device_record(self) -> Optional[str]:
        record = self.results("test-image")["device"]
        if record["device"].split(":")[0] != self.device.split(":")[0]:
            raise Failed(f"results.json says {record['device']}, expected {self.device}")
        if self.device.startswith("cuda") and record["tf32"] is not False:
            raise Failed("TF32 is not recorded as off (the default, tf32=False)")
        return f"{record['device']}: {record['name']}"

    def predict(self) -> Optional[str]:
        voc = self.data / VOC_DIR
        support, mask, queries = write_predict_example(
            voc / IMAGE_DIR, voc / CLASS_DIR, read_id_list(voc / LIST_DIR / "val.txt"),
            EXAMPLE_CLASS, self.scratch / "example")
        self.script("scripts/predict.py", "--checkpoint", "straight/checkpoints/final.pt",
                    "--way", str(support), str(mask), "--query", *map(str, queries),
                    "--out", "predictions", "--device", self.device)
        written = sorted((self.scratch / "predictions").glob("*.png"))
        if len(written) != 2 * len(queries):
            raise Failed(f"{len(written)} files written for {len(queries)} queries")
        return f"{len(queries)} quer{'y' if len(queries) == 1 else 'ies'}"

    def torchrun_refused(self) -> Optional[str]:
        output = self.torchrun_test(self.gpus + 1, "refused", expect_failure=True)
        if "torchrun started" not in output:
            raise Failed("torchrun failed, but not with the one-line refusal")
        return f"{self.gpus + 1} processes, {self.gpus} GPU(s)"

    def sharded(self) -> Optional[str]:
        self.torchrun_test(2, "test-ddp")
        difference = abs(self.results("test-ddp")["mean_iou"] -
                         self.results("test-image")["mean_iou"])
        if difference > RESULT_ATOL:
            raise Failed(f"2 processes and 1 differ by {difference:.2e} in mean-IoU")
        return f"mean-IoU differs by {difference:.1e}"

    def run_all(self) -> int:
        """Each check in order (those needing more GPUs than there are skipped); 1 when any
        failed, else 0."""
        failures = 0
        for name, check, gpus in (
                ("train", self.train, 0), ("checkpoint and resume", self.resume, 0),
                ("both evaluation paths within the contract", self.test_paths, 0),
                ("the device in results.json", self.device_record, 0),
                ("predict.py", self.predict, 0),
                ("torchrun with more processes than GPUs is refused", self.torchrun_refused, 1),
                ("test.py on 2 GPUs agrees with 1", self.sharded, 2)):
            if self.gpus < gpus:
                print(f"skip  {name}: {f'{self.gpus} GPU(s)' if self.gpus else 'no GPU'} here",
                      flush=True)
                continue
            try:
                detail = check()
            except Failed as failure:
                failures += 1
                print(f"FAIL  {name}: {failure}", flush=True)
                continue
            print(f"ok    {name}" + (f" ({detail})" if detail else ""), flush=True)
        print(f"{'FAILED' if failures else 'passed'}: {failures} check(s) failed")
        return 1 if failures else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto (a GPU if torch sees one), cpu, "
                                                         "cuda, cuda:N")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = parser.parse_args(argv)
    try:
        device, fallback = resolve_device(args.device)
    except RuntimeError as error:
        parser.error(str(error))
    if fallback:
        print(f"no GPU: {fallback}; running the checks on the CPU")
    device_name = "cpu" if device.type == "cpu" else str(device)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        return Checks(device_name, args.keep.resolve()).run_all()
    with tempfile.TemporaryDirectory(prefix="panet-check-") as scratch:
        return Checks(device_name, Path(scratch)).run_all()


if __name__ == "__main__":
    sys.exit(main())
