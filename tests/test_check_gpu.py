"""scripts/check_gpu.py, the GPU self-check, as the suite runs it: on the CPU of a machine without
a GPU every check runs on the CPU and the GPU-only ones say they were skipped; on a GPU machine
they run on the GPU."""

import subprocess
import sys

import torch

from conftest import REPO_ROOT

CHECKS = ("train", "checkpoint and resume", "both evaluation paths within the contract",
          "the device in results.json", "predict.py")


def test_check_gpu_passes_and_says_what_it_skipped():
    result = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "check_gpu.py")],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    lines = result.stdout.splitlines()
    for check in CHECKS:
        assert any(line.startswith(f"ok    {check}") for line in lines), (check, result.stdout)
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    refused = "torchrun with more processes than GPUs is refused"
    assert any(line.startswith(f"{'ok' if gpus else 'skip'}  {refused}") for line in lines)
    assert not any(line.startswith("FAIL") for line in lines)
    assert lines[-1] == "passed: 0 check(s) failed"


def test_check_gpu_refuses_a_device_torch_cannot_use():
    if torch.cuda.is_available():
        device = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU
    else:
        device = "cuda"
    result = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "check_gpu.py"),
                             "--device", device], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and f"device '{device}'" in result.stderr
