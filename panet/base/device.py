"""Which device a run computes on, in which float32 mode, and how to say so.

`device` (config key, script option): "auto" (CUDA when torch sees a GPU, else the CPU, saying
why), "cpu", "cuda" or "cuda:N". `use_device` makes a CUDA device the current one (pinned copies
and cuDNN handles land on it, not on GPU 0) and CUDA's float32 mode full IEEE unless `tf32`:
torch's default TF32 convolutions on Ampere and later are not the paper's float32 VGG-16.
`precision_problem` refuses a precision the device cannot run well; `describe_device` says what
ran (printed at start, recorded in the run record and results.json).
"""

from __future__ import annotations

import os
import platform
import warnings
from pathlib import Path
from typing import Dict, FrozenSet, Optional, Tuple

import torch

DEVICE_CHOICES = "'auto', 'cpu', 'cuda' or 'cuda:N'"


def is_device_name(value: object) -> bool:
    """Whether `value` is a device the config accepts (see DEVICE_CHOICES)."""
    if value in ("auto", "cpu", "cuda"):
        return True
    prefix, _, index = str(value).partition(":")
    return isinstance(value, str) and prefix == "cuda" and index.isdigit()


def cuda_unavailable_reason() -> Optional[str]:
    """Why torch cannot use a GPU here (None when it can): a CPU-only build, a driver torch
    cannot use (torch's own warning), or no visible device."""
    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) is a CPU-only build"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        available = torch.cuda.is_available()
    if available:
        return None
    told = " ".join(" ".join(str(w.message).split()) for w in caught)
    if told:
        return f"torch {torch.__version__} cannot use the GPU: {told}"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    where = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
    return (f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA device{where}")


def resolve_device(device: str) -> Tuple[torch.device, Optional[str]]:
    """(the torch device `device` names, why "auto" fell back to the CPU or None); a one-line
    RuntimeError for a CUDA device torch cannot use or that does not exist."""
    if device == "auto":
        reason = cuda_unavailable_reason()
        return torch.device("cpu" if reason else "cuda"), reason
    resolved = torch.device(device)
    if resolved.type == "cuda":
        reason = cuda_unavailable_reason()
        if reason:
            raise RuntimeError(f"device '{device}' was asked for, but {reason}; use device=cpu "
                               "or device=auto")
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise RuntimeError(f"device '{device}' does not exist: torch sees {count} GPU(s), "
                               f"cuda:0..cuda:{count - 1}")
    return resolved, None


def launched_processes() -> int:
    """How many processes torchrun started (WORLD_SIZE; 1 without it), before the process group
    exists: the one reading of WORLD_SIZE."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def torchrun_problem(device: str) -> Optional[str]:
    """Why processes launched by torchrun cannot each have a GPU of their own (process r of a
    machine computes on cuda:r, its LOCAL_RANK), or None."""
    world_size = launched_processes()
    if world_size == 1 or not is_device_name(device):
        return None
    if device.startswith("cuda:"):
        return (f"device={device}: under torchrun each process takes the GPU of its local rank; "
                "use device=cuda (or auto), or device=cpu")
    if device == "cpu" or cuda_unavailable_reason() is not None:
        return None  # "auto" without a GPU runs on the CPU; "cuda" fails in resolve_device
    processes = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    count = torch.cuda.device_count()
    if processes > count:
        return (f"device={device}: torchrun started {processes} processes on this machine but "
                f"torch sees {count} GPU(s); use --nproc_per_node={count} (one process per GPU), "
                "or device=cpu")
    return None


def set_tf32(allow: bool) -> None:
    """Full float32 (False, PANet's numbers) or TF32 (True) in CUDA convolutions and matmuls,
    through torch's per-backend settings only (mixing in allow_tf32 is an error in torch >= 2.9)."""
    mode = "tf32" if allow else "ieee"
    torch.backends.cudnn.conv.fp32_precision = mode
    torch.backends.cuda.matmul.fp32_precision = mode


def use_device(device: str, tf32: bool = False, quiet: bool = False) -> torch.device:
    """Resolve `device`, make a CUDA device current and set the float32 mode (`set_tf32`);
    unless `quiet`, print why "auto" fell back to the CPU."""
    resolved, fallback = resolve_device(device)
    if resolved.type == "cuda":
        if resolved.index is None:
            resolved = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(resolved)
    set_tf32(tf32)
    if fallback and not quiet:
        print(f"device=auto: running on the CPU because {fallback}", flush=True)
    return resolved


NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of bfloat16 arithmetic


def _cpuinfo(field: str) -> Optional[str]:
    """The value of the first `field` line of /proc/cpuinfo (Linux; None elsewhere)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith(field)), None)


def cpu_flags() -> FrozenSet[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo does not exist)."""
    return frozenset((_cpuinfo("flags") or "").split())


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), else what platform says."""
    return (_cpuinfo("model name") or platform.processor() or platform.machine()
            or "unknown CPU")


def cpu_has_native_bf16() -> bool:
    """Whether the CPU computes in bfloat16 natively (AVX512-BF16 or AMX-BF16)."""
    return any(flag in cpu_flags() for flag in NATIVE_BF16_FLAGS)


def precision_problem(precision: str, device: str) -> Optional[str]:
    """`precision_reason` as one line naming the config key, or None."""
    reason = precision_reason(precision, device)
    return None if reason is None else f"precision={precision!r}: {reason}"


def precision_reason(precision: str, device: str) -> Optional[str]:
    """Why `precision` should not run on `device` (as `resolve_device` takes it), or None: fp16
    off CUDA, bf16 without native bfloat16 (autocast emulates it, ~100x slower)."""
    if precision == "fp32" or not is_device_name(device):
        return None
    if device == "cpu" or (device == "auto" and cuda_unavailable_reason() is not None):
        if precision == "fp16":
            return (f"float16 autocast is for CUDA devices, and this run computes on the CPU "
                    f"(device={device}); use precision=bf16 (CPUs with AVX512-BF16 or AMX) or "
                    "fp32")
        if not cpu_has_native_bf16():
            return (f"this CPU ({cpu_model()}) has no native bfloat16 arithmetic (no "
                    f"{' or '.join(NATIVE_BF16_FLAGS)} flag), so bf16 would run about 100x "
                    "slower than fp32; use precision=fp32")
    elif precision == "bf16" and cuda_unavailable_reason() is None and \
            not torch.cuda.is_bf16_supported(including_emulation=False):
        return (f"this GPU ({torch.cuda.get_device_name()}) has no native bfloat16 arithmetic "
                "(compute capability 8.0 or later has); use precision=fp16 or fp32")
    return None


def describe_device(device: torch.device, tf32: bool) -> Dict[str, object]:
    """What computes: device, GPU name or CPU model, torch, CUDA and cuDNN versions, CPU
    threads and the TF32 setting (CUDA only)."""
    record: Dict[str, object] = {"device": str(device), "torch": torch.__version__,
                                 "cuda": torch.version.cuda, "threads": torch.get_num_threads()}
    if device.type == "cuda":
        record.update(name=torch.cuda.get_device_name(device),
                      cudnn=torch.backends.cudnn.version(), tf32=tf32)
    else:
        record.update(name=cpu_model(), cudnn=None, tf32=None)
    return record


def device_line(record: Dict[str, object]) -> str:
    """One line for people: `describe_device`'s record."""
    if record["cudnn"] is None:
        return (f"device: {record['device']} ({record['name']}, {record['threads']} threads), "
                f"torch {record['torch']}")
    return (f"device: {record['device']} ({record['name']}), torch {record['torch']}, CUDA "
            f"{record['cuda']}, cuDNN {record['cudnn']}, TF32 {'on' if record['tf32'] else 'off'}")
