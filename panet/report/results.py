"""Test results: the record written to results.json (`test_record`) and the table printed."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from panet.base.files import atomic_write
from panet.base.safe_load import plain_data
from panet.report.statistics import bootstrap_seed
from panet.run.identity import code_version, fingerprint, test_identity


@dataclass(frozen=True)
class TestFacts:
    """What a test ran on besides its settings: the device record, the model's identity, its
    file (None: PANet-init), the evaluation path that ran and why not the one asked (None when
    it was), and whether the test classes include trained ones."""

    device: Dict[str, Any]
    model: Dict[str, Any]
    model_file: Optional[Any]
    encode_used: str
    encode_why: Optional[str]
    seen_in_training: bool


def checkpoint_record(composition, model_file) -> Dict[str, Any]:
    """What results.json says of the evaluated weights: the file, its format, SHA-256 and step,
    a train.py checkpoint's training seed, fingerprint and stored identity, and where each
    setting given or taken from the checkpoint came from."""
    stored = None if model_file is None else model_file.config  # None: released, PANet-init
    keys = [*composition.base, *(key for key in composition.given_keys()
                                 if key.startswith(("data.", "model.")))]
    return {"checkpoint": None if model_file is None else str(model_file.path),
            "checkpoint_format": None if model_file is None else model_file.format,
            "checkpoint_sha256": None if model_file is None else model_file.sha256,
            "trained_steps": None if model_file is None else model_file.step,
            "training_seed": None if stored is None else stored.get("seed"),
            "training": None if stored is None else fingerprint(stored, "train"),
            "trained": None if model_file is None else model_file.identity,
            "sources": {key: composition.sources[key] for key in sorted(set(keys))}}


def test_record(summary: Dict[str, Any], composition, facts: TestFacts) -> Dict[str, Any]:
    """The record of a test (results.json): its numbers (`IoUMeter.summary` with the bootstrap
    intervals), the whole config, its identity, the device, the code, and its setting."""
    settings = composition.settings
    data, test = settings.data, settings.test
    sha256 = None if facts.model_file is None else facts.model_file.sha256
    return {
        **summary,
        "test_classes_seen_in_training": facts.seen_in_training,
        "device": facts.device,
        "bootstrap": {"resamples": test.bootstrap, "seed": bootstrap_seed(data.fold),
                      "over": "the test episodes, given the trained model"},
        "config": plain_data(composition.config, "config"),  # every setting, as read
        "code": code_version(),
        "model": facts.model,
        "identity": test_identity(composition.config, sha256, facts.encode_used),
        "setting": {"data": {**data.as_config(), "train_split": data.split(True),
                             "test_split": data.split(False)},
                    "model": settings.model.as_config(), "seed": settings.run.seed,
                    "precision": settings.run.precision,
                    "memory_format": settings.run.memory_format,
                    **{key: getattr(test, key) for key in ("runs", "episodes", "rule",
                                                           "resolution", "notrain", "encode")},
                    "encode_used": facts.encode_used, "encode_why": facts.encode_why,
                    **checkpoint_record(composition, facts.model_file)},
    }


def format_table(summary: Dict[str, Any], class_name: Callable[[int], str], title: str) -> str:
    """IoUs in percent, mean +- std over runs: per class, then mean-IoU, binary-IoU and its
    background and foreground halves, with their 95% interval when the summary has one."""
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
    if "reference" in summary:
        reference = summary["reference"]
        lines.append(f"{reference['protocol']}'s metric: mIoU {reference['miou'][0]:.1f}, "
                     f"FB-IoU {reference['fb_iou'][0]:.1f} (first run)")
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
    with atomic_write(path, "w") as file:
        file.write(json_text(record))
    return path
