"""What a run reports while it runs: progress on the console, scalars for sacred and TensorBoard.

On a terminal, progress is a tqdm bar; redirected, a plain line every `every` steps, at the last
one and after `QUIET_SECONDS` of silence ("train step 1200/30000  loss 0.4121 ... lr 0.001
0.351 s/step  ETA 2:48:31"). The terminal is detected at import, before sacred redirects output.
"""

from __future__ import annotations

import datetime
import sys
import time
from pathlib import Path
from typing import Mapping, Optional

from tqdm import tqdm

INTERACTIVE = sys.stderr.isatty()
QUIET_SECONDS = 60.0  # the longest silence off a terminal, but within a step


def format_value(value: float) -> str:
    """Four significant digits, e.g. 0.4121, 1e-05, 1234."""
    return f"{value:.4g}"


class Progress:
    """Progress through steps `initial + 1 .. total`: `update(values)` after each step."""

    def __init__(self, total: int, *, desc: str, every: int, initial: int = 0,
                 enabled: bool = True, interactive: bool = INTERACTIVE,
                 clock=time.perf_counter):
        self.total, self.desc, self.every = total, desc, max(1, every)
        self.step, self.enabled, self.clock = initial, enabled, clock
        self._start, self._start_step = clock(), initial
        self._printed = self._start
        self._bar = (tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True)
                     if enabled and interactive else None)

    def update(self, values: Optional[Mapping[str, float]] = None) -> None:
        self.step += 1
        values = values or {}
        if self._bar is not None:
            self._bar.set_postfix({k: format_value(v) for k, v in values.items()}, refresh=False)
            self._bar.update()
        elif self.enabled and (self.step % self.every == 0 or self.step == self.total
                               or self.clock() - self._printed >= QUIET_SECONDS):
            print(self.line(values), flush=True)
            self._printed = self.clock()

    def line(self, values: Mapping[str, float]) -> str:
        """The plain report of the current step."""
        done = self.step - self._start_step
        seconds = (self.clock() - self._start) / max(done, 1)
        remaining = datetime.timedelta(seconds=round(seconds * (self.total - self.step)))
        shown = "  ".join(f"{key} {format_value(value)}" for key, value in values.items())
        return (f"{self.desc} {self.step}/{self.total}  {shown + '  ' if shown else ''}"
                f"{seconds:.3g} s/step  ETA {remaining}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ScalarLog:
    """Scalars of a run, to sacred's metrics and to TensorBoard in `<run folder>/tensorboard`;
    `purge_step` (a resumed run) drops the interrupted attempt's events from that step on."""

    def __init__(self, run, run_dir: Optional[Path], purge_step: Optional[int] = None):
        self.run = run
        self.writer = None
        if run_dir is not None:
            from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: slow

            self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=purge_step)

    def log(self, values: Mapping[str, float], step: int, prefix: str = "") -> None:
        for name, value in values.items():
            if self.run is not None:
                self.run.log_scalar(prefix + name, value, step)
            if self.writer is not None:
                self.writer.add_scalar(prefix + name, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
