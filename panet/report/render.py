"""Tables for people: a `Report` (a table as data, and what is said around it) rendered as
Markdown (tableN.md) and LaTeX (tableN.tex: a booktabs table for a paper).

Entries of a row are text, a `Number` (the paper's, a difference) or a `Measured` value of ours:
mean ± std over training seeds with the 95% bootstrap interval over test episodes. The LaTeX
table ends with a footnote holding the notes, the provenance and the commands.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, List, Optional, Sequence, Tuple, Union

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


COMMANDS_INTRO = "commands, in the order run (`python scripts/reproduce.py` runs them):"
CITATION_INTRO = "How to cite a number of this table (fill in the cell):"


def format_number(value, signed: bool = False) -> str:
    """One decimal (percent, distances); signed for differences; MISSING for None or NaN."""
    number = Number(value, signed)
    if number.missing:
        return MISSING
    return f"{value:+.1f}" if signed else f"{value:.1f}"


def _measured_text(entry: Measured, plus_minus: str, interval: str) -> str:
    """`entry` (with a value) as 'value plus_minus std interval', each part when known;
    `interval` formats the interval's two ends."""
    shown = format_number(entry.value)
    if entry.std is not None:
        shown += f" {plus_minus} {entry.std:.1f}"
    if entry.interval is not None:
        shown += " " + interval.format(*entry.interval)
    return shown


def markdown_entry(entry: Entry) -> str:
    if isinstance(entry, Number):
        return format_number(entry.value, entry.signed)
    if isinstance(entry, Measured):
        return MISSING if entry.value is None else _measured_text(entry, "±", "[{:.1f}, {:.1f}]")
    return entry


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> List[str]:
    """A markdown table: the first column left-aligned, the others right-aligned."""
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def render_markdown(report: Report) -> str:
    lines = [f"# {report.title}", ""]
    if report.warning is not None:
        lines += [f"**{report.warning[0]}**{report.warning[1]}", ""]
    lines += [f"- {note}" for note in report.notes]
    lines += [""] + markdown_table(report.header, [[markdown_entry(e) for e in row]
                                                   for row in report.rows])
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


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&",
                 "#": r"\#", "^": r"\^{}", "_": r"\_", "%": r"\%", "~": r"\~{}", "—": "--",
                 "±": r"$\pm$"}


def latex_text(text: str) -> str:
    """`text` with LaTeX's special characters escaped."""
    return "".join(LATEX_SPECIAL.get(character, character) for character in text)


def latex_entry(entry: Entry) -> str:
    if isinstance(entry, str):
        return latex_text(entry)
    if isinstance(entry, Number) and not entry.missing:
        return f"${format_number(entry.value, entry.signed)}$"
    if isinstance(entry, Measured) and entry.value is not None:
        return _measured_text(entry, r"$\pm$", r"{{\scriptsize [{:.1f}, {:.1f}]}}")
    return "--"


def render_latex(report: Report) -> str:
    """A booktabs `table` environment (needs \\usepackage{booktabs}); the notes, provenance and
    commands go into a footnote-size paragraph under the tabular."""
    columns = "l" + "r" * (len(report.header) - 1)
    lines = [f"% {latex_text(report.title)} -- written by panet-repro's {report.made_by}",
             r"\begin{table}[t]", r"\centering",
             rf"\caption{{{latex_text(report.title)}}}", rf"\begin{{tabular}}{{{columns}}}",
             r"\toprule", " & ".join(latex_text(title) for title in report.header) + r" \\",
             r"\midrule"]
    for index, row in enumerate(report.rows):
        if index in report.groups and index > 0:
            lines.append(r"\midrule")
        lines.append(" & ".join(latex_entry(entry) for entry in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", "", r"\par\smallskip\footnotesize"]
    said = ([f"{report.warning[0]}{report.warning[1]}"] if report.warning else [])
    said += [*report.notes, *report.after, *report.provenance]
    lines += [latex_text(line) + r"\\" for line in said]
    if report.commands:
        lines.append(latex_text(COMMANDS_INTRO) + r"\\")
        lines += [r"\texttt{" + latex_text(command) + r"}\\" for command in report.commands]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"
