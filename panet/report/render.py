"""Tables for people: a `Report` (a table as data, and what is said around it) rendered as
Markdown (tableN.md) and LaTeX (tableN.tex: a booktabs table for a paper).

Entries of a row are text, a `Number` (the paper's, a difference) or a `Measured` value of ours
(mean ± std over training seeds, 95% bootstrap interval over test episodes).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

from panet.base.files import atomic_write

MISSING = "—"  # an entry without a number (job not run yet, or not reported by the paper)
PARTIAL = "†"  # marks a number whose tests left classes unevaluated
PARTIAL_NOTE = (f"{PARTIAL}: a test of this cell left classes unevaluated (its episodes never "
                "drew them; results.json lists them under \"unevaluated\"), so its mean is over "
                "the other classes: run more episodes")


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
    """Our number of a table cell, in percent: `value` the mean over training seeds, `std` their
    sample std (None with one seed), `interval` the 95% bootstrap interval over the episodes
    (None without records); `partial`: a test left classes unevaluated (shown with `PARTIAL`)."""

    value: Optional[float]
    std: Optional[float] = None
    interval: Optional[Tuple[float, float]] = None
    partial: bool = False

    def holds(self, paper: Optional[float]) -> str:
        """Whether the paper's number lies in our interval: yes | no | MISSING."""
        if paper is None or self.interval is None:
            return MISSING
        return "yes" if self.interval[0] <= paper <= self.interval[1] else "no"


Entry = Union[str, Number, Measured]


@dataclass
class Report:
    """One table and what is said around it: warning (bold lead, rest) said first; notes
    before the table; groups: the rows that start a group (a rule in LaTeX); after: lines after
    it; provenance: how the numbers were made; commands: those that made them, in order;
    citation: how to cite a number; made_by: the script writing it (named in the LaTeX file).
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


COMMANDS_INTRO = "commands, in the order run (`python scripts/reproduce.py` runs them):"
CITATION_INTRO = "How to cite a number of this table (fill in the cell):"


def format_number(value, signed: bool = False) -> str:
    """One decimal (percent, distances); signed for differences; MISSING for None or NaN."""
    number = Number(value, signed)
    if number.missing:
        return MISSING
    return f"{value:+.1f}" if signed else f"{value:.1f}"


def markdown_entry(entry: Entry) -> str:
    if isinstance(entry, Number):
        return format_number(entry.value, entry.signed)
    if isinstance(entry, Measured):
        if entry.value is None:
            return MISSING
        std = "" if entry.std is None else f" ± {entry.std:.1f}"
        interval = "" if entry.interval is None else " [{:.1f}, {:.1f}]".format(*entry.interval)
        return format_number(entry.value) + PARTIAL * entry.partial + std + interval
    return entry


def render_markdown(report: Report) -> str:
    lines = [f"# {report.title}", ""]
    if report.warning is not None:
        lines += [f"**{report.warning[0]}**{report.warning[1]}", ""]
    lines += [f"- {note}" for note in report.notes]
    lines += ["", "| " + " | ".join(report.header) + " |",  # first column left-aligned
              "|" + "|".join([":---"] + ["---:"] * (len(report.header) - 1)) + "|"]
    lines += ["| " + " | ".join(map(markdown_entry, row)) + " |" for row in report.rows]
    if report.after:
        lines += ["", *report.after]
    if report.provenance:
        lines += ["", "## How these numbers were made", "",
                  *(f"- {line}" for line in report.provenance)]
        if report.commands:
            lines += [f"- {COMMANDS_INTRO}", "",
                      *(f"      {command}" for command in report.commands)]
    if report.citation is not None:
        lines += ["", CITATION_INTRO, "", f"> {report.citation}"]
    return "\n".join(lines) + "\n"


LATEX_SPECIAL = str.maketrans({  # `text.translate(LATEX_SPECIAL)`: LaTeX's specials escaped
    "\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "#": r"\#",
    "^": r"\^{}", "_": r"\_", "%": r"\%", "~": r"\~{}", "—": "--", "±": r"$\pm$"})


def latex_entry(entry: Entry, compact: bool = False) -> str:
    """A cell in LaTeX: numbers in math mode (intervals small, dropped when `compact`), text
    escaped, a missing value as --."""
    if isinstance(entry, str):
        return entry.translate(LATEX_SPECIAL) if entry != MISSING else "--"
    if isinstance(entry, Number) and not entry.missing:
        return f"${format_number(entry.value, entry.signed)}$"
    if isinstance(entry, Measured) and entry.value is not None:
        shown = format_number(entry.value) + r"^\dagger" * entry.partial
        if entry.std is not None:
            shown += rf" \pm {entry.std:.1f}"
        interval = entry.interval if not compact else None
        low_high = "" if interval is None else \
            r" {{\scriptsize $[{:.1f}, {:.1f}]$}}".format(*interval)
        return f"${shown}${low_high}"
    return "--"


def latex_label(title: str) -> str:
    """tab:<words of the title>, e.g. 'Table 1: PASCAL-5i ...' -> tab:table1-pascal-5i-..."""
    words = re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*", title.lower().replace("table ", "table"))
    return "tab:" + "-".join(words)[:48].rstrip("-")


def render_latex(report: Report, compact: bool = False) -> str:
    """A booktabs `table` for a paper (caption: the title without "Table N:", a \\label), with
    the notes, provenance and commands as comments above it. `compact`: no intervals."""
    columns = "l" + "r" * (len(report.header) - 1)
    said = ([f"{report.warning[0]}{report.warning[1]}"] if report.warning else [])
    said += [*report.notes, *report.after, *report.provenance]
    if report.commands:
        said += [COMMANDS_INTRO, *report.commands]
    caption = re.sub(r"^Table \w+: ", "", report.title).translate(LATEX_SPECIAL)
    header = " & ".join(title.translate(LATEX_SPECIAL) for title in report.header)
    lines = [f"% {report.title} -- written by panet-repro's {report.made_by}",
             *(f"% {line}" for text in said for line in text.splitlines()),
             r"\begin{table}[t]", r"\centering", r"\small",
             rf"\caption{{{caption}}}", rf"\label{{{latex_label(report.title)}}}",
             rf"\begin{{tabular}}{{{columns}}}", r"\toprule", header + r" \\", r"\midrule"]
    for index, row in enumerate(report.rows):
        if index in report.groups and index > 0:
            lines.append(r"\midrule")
        lines.append(" & ".join(latex_entry(entry, compact) for entry in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def write_report(report: Report, stem: Path, comment: Optional[str] = None) -> Path:
    """`stem`.md, `stem`.tex, `stem`-compact.tex (no intervals), `comment` atop the LaTeX."""
    for suffix, compact in ((".tex", False), ("-compact.tex", True)):
        with atomic_write(stem.parent / (stem.name + suffix), "w") as file:
            file.write((f"% {comment}\n" if comment else "") + render_latex(report, compact))
    with atomic_write(stem.with_suffix(".md"), "w") as file:
        file.write(render_markdown(report))
    return stem.with_suffix(".md")
