"""Test results: the record written to results.json and the table printed for people."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from panet.base.files import atomic_write

CODE_ROOT = Path(__file__).resolve().parents[2]  # the checkout panet runs from


def _git(*args: str) -> Optional[str]:
    try:
        return subprocess.run(["git", *args], cwd=CODE_ROOT, capture_output=True, text=True,
                              check=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def code_version() -> Dict[str, Any]:
    """The code that ran: `commit` (hex; None outside a git checkout) and `dirty` (tracked
    files differ from it; None when unknown)."""
    commit = _git("rev-parse", "HEAD")
    status = None if commit is None else _git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def describe_setting(data) -> str:
    """One line naming the benchmark and episode setting (`panet.settings.EpisodeSetting`), e.g.
    'pascal fold 0, 1-way 1-shot, test split trainaug, dense supports' (explicit test classes
    replace the fold: 'folder test classes [3, 7], ...')."""
    classes = (f"test classes {list(data.test_classes)}" if data.test_classes
               else f"fold {data.fold}")
    return (f"{data.name} {classes}, {data.ways}-way {data.shots}-shot, "
            f"test split {data.split(False)}, {data.weak} supports")


def format_table(summary: Dict[str, Any], class_name: Callable[[int], str], title: str) -> str:
    """IoUs in percent, mean +- std over runs: one line per class, then mean-IoU, binary-IoU and
    the binary-IoU's background and foreground halves; mean- and binary-IoU with their 95%
    bootstrap interval over episodes when the summary has one (`<name>_ci`)."""
    def cell(mean: float, std: float) -> str:
        return f"{100 * mean:6.1f} +- {100 * std:4.1f}"

    def interval(key: str) -> str:
        if key + "_ci" not in summary:
            return ""
        low, high = summary[key + "_ci"]
        return f"   95% interval [{100 * low:.1f}, {100 * high:.1f}]"

    lines = [title, f"{'class':28s} {'IoU (%)':>14s}"]
    for class_id, mean in summary["class_iou"].items():
        lines.append(f"{class_name(class_id):28s} {cell(mean, summary['class_iou_std'][class_id])}")
    for key, name in (("mean_iou", "mean-IoU"), ("binary_iou", "binary-IoU"),
                      ("background_iou", "  background IoU"),
                      ("foreground_iou", "  foreground IoU")):
        lines.append(f"{name:28s} {cell(summary[key], summary[key + '_std'])}{interval(key)}")
    return "\n".join(lines)


def _strict(value: Any) -> Any:
    """NaN (a class never evaluated) -> None, so the file is standard JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _strict(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(item) for item in value]
    return value


def json_text(record: Dict[str, Any]) -> str:
    """`record` as standard JSON text (class ids become string keys, NaN null)."""
    return json.dumps(_strict(record), indent=2, sort_keys=True, allow_nan=False) + "\n"


def write_json(path: Path, record: Dict[str, Any]) -> Path:
    """Write `record` as standard JSON (`json_text`), atomically."""
    with atomic_write(path, "w") as file:
        file.write(json_text(record))
    return path
