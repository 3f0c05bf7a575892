"""A table as data, before it becomes text: what the renderers (`panet.report.render`: Markdown,
LaTeX) need, and nothing about where the numbers came from.

Entries of a row are text, a `Number` (the paper's, a difference) or a `Measured` value of ours
(mean over training seeds, their std, the 95% bootstrap interval over test episodes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple, Union

MISSING = "—"  # an entry without a number (job not run yet, or not reported by the paper)


@dataclass(frozen=True)
class Number:
    """A number shown with one decimal (percent, distances); `signed` for differences."""

    value: Optional[float]
    signed: bool = False

    @property
    def missing(self) -> bool:
        return self.value is None or math.isnan(self.value)


@dataclass(frozen=True)
class Measured:
    """Our number of a table cell, in percent: `value` is the mean over training seeds, `std`
    the sample standard deviation over seeds (None with one seed), `interval` the 95% bootstrap
    interval over the test episodes (None without per-episode records)."""

    value: Optional[float]
    std: Optional[float] = None
    interval: Optional[Tuple[float, float]] = None

    def holds(self, paper: Optional[float]) -> str:
        """Whether the paper's number lies in our interval: yes | no | MISSING."""
        if paper is None or self.interval is None:
            return MISSING
        return "yes" if self.interval[0] <= paper <= self.interval[1] else "no"


Entry = Union[str, Number, Measured]


@dataclass
class Report:
    """One table and what is said around it.

    title: the heading; warning: (bold lead, rest) said first (e.g. the toy scale), or None;
    notes: lines about the setting, before the table; header and rows: the table (first column
    text labels); groups: indices of the rows that start a new group of rows (a rule in LaTeX);
    after: lines after the table; provenance: how the numbers were made (lines); commands: the
    commands that made them, in order; citation: how to cite a number, or None; made_by: the
    script that writes the report (named in the LaTeX file).
    """

    title: str
    header: List[str]
    rows: List[List[Entry]]
    notes: List[str] = field(default_factory=list)
    warning: Optional[Tuple[str, str]] = None
    groups: List[int] = field(default_factory=list)
    after: List[str] = field(default_factory=list)
    provenance: List[str] = field(default_factory=list)
    commands: Sequence[str] = ()
    citation: Optional[str] = None
    made_by: str = "scripts/reproduce.py"
