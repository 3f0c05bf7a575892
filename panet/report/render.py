"""A `Report` as text: Markdown (tableN.md) and LaTeX (tableN.tex: a booktabs table for a paper).

Both show the same entries: ours as mean ± std over training seeds with the 95% bootstrap
interval over test episodes, the paper's number, the difference, whether the paper's number lies
in our interval; the LaTeX table ends with a footnote holding the provenance, the commands and
the commit.
"""

from __future__ import annotations

from typing import Iterable, List, Sequence

from panet.report.document import MISSING, Entry, Measured, Number, Report

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
        shown = format_number(entry.value)
        if entry.std is not None:
            shown += f" ± {entry.std:.1f}"
        if entry.interval is not None:
            shown += f" [{entry.interval[0]:.1f}, {entry.interval[1]:.1f}]"
        return shown
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
    if isinstance(entry, Number):
        shown = format_number(entry.value, entry.signed)
        return "--" if shown == MISSING else f"${shown}$"
    if isinstance(entry, Measured):
        if entry.value is None:
            return "--"
        shown = format_number(entry.value)
        if entry.std is not None:
            shown += rf" $\pm$ {entry.std:.1f}"
        if entry.interval is not None:
            shown += rf" {{\scriptsize [{entry.interval[0]:.1f}, {entry.interval[1]:.1f}]}}"
        return shown
    return latex_text(entry)


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
