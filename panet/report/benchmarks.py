"""What scripts/bench_*.py and scripts/check_gpu.py share: timing, judging a measured ratio
against its target, and running a checkout's script in a fresh process (its own peak memory)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Hashable, List, Optional, Sequence, Tuple, Union

import torch


def synchronize(device: Union[str, torch.device]) -> None:
    """Wait for the device's queued work (CUDA); nothing on the CPU."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def median_times(work: Dict[Hashable, Callable[[], object]], repeats: int,
                 device: Union[str, torch.device]) -> Dict[Hashable, float]:
    """Median seconds of each operation over `repeats` runs after a warm-up, the operations
    alternating so that drift hits all of them."""
    times: Dict[Hashable, List[float]] = {name: [] for name in work}
    for round_ in range(repeats + 1):
        for name, run in work.items():
            synchronize(device)
            start = time.perf_counter()
            run()
            synchronize(device)
            if round_:  # round 0 is the warm-up
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def verdict(value: float, target: Optional[float], at_least: bool = False) -> str:
    """'ok' when `value` meets `target` (at most; `at_least`), 'MISSED' if not, '' if no target."""
    if target is None:
        return ""
    return "ok" if (value >= target if at_least else value <= target) else "MISSED"


@dataclass(frozen=True)
class Ratio:
    """A measure against its reference (`unit` "s" or "GiB"); target: the ratio's maximum."""

    label: str
    measured: float
    reference: float
    unit: str
    target: Optional[float] = None

    @property
    def ratio(self) -> float:
        return self.measured / self.reference

    def as_dict(self) -> Dict[str, object]:
        return {"measure": self.label, "measured": self.measured, "reference": self.reference,
                "unit": self.unit, "ratio": self.ratio, "target": self.target}


def ratio_table(rows: Sequence[Ratio], columns: Tuple[str, str]) -> List[str]:
    """Table lines of `rows`; `columns` names the value and the reference."""
    width = max(len("measure"), *(len(row.label) for row in rows))
    value, reference = (max(10, len(name)) for name in columns)
    lines = [f"{'measure':{width}s} {columns[0]:>{value}s} {columns[1]:>{reference}s} "
             f"{'ratio':>7s} {'target':>7s}"]
    for row in rows:
        target = "" if row.target is None else f"<={row.target}"
        lines.append(f"{row.label:{width}s} {row.measured:{value - 1}.3f}{row.unit[0]} "
                     f"{row.reference:{reference - 1}.3f}{row.unit[0]} {row.ratio:7.3f} "
                     f"{target:>7s} {verdict(row.ratio, row.target)}".rstrip())
    return lines


def run_python(root: Path, args: Sequence[str], cwd: Optional[Path] = None,
               launcher: Optional[Sequence[str]] = None,
               timeout: Optional[float] = None) -> subprocess.CompletedProcess:
    """`python ARGS` (or `launcher ARGS`) from `cwd` in a fresh process that imports the panet
    of checkout `root`; output captured as text."""
    path = os.pathsep.join([str(root), *filter(None, [os.environ.get("PYTHONPATH")])])
    return subprocess.run([*(launcher or [sys.executable]), *args], cwd=cwd,
                          env={**os.environ, "PYTHONPATH": path}, capture_output=True,
                          text=True, timeout=timeout)


def json_of_run(root: Path, args: Sequence[str]) -> dict:
    """The JSON a `run_python` process prints last (CalledProcessError when it fails)."""
    result = run_python(root, args)
    result.check_returncode()
    return json.loads(result.stdout.strip().splitlines()[-1])
