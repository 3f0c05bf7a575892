"""Comparing methods: tests of models A (one per training seed) against tests of models B, on the
same protocol and episodes (`scripts/compare.py`).

What may differ between the two sides is the model and its training, nothing else: every test
must record the same protocol (`PROTOCOL_KEYS`: dataset, splits, classes, episode shape,
supports, input size, metric rule and resolution, runs, episodes and their seed), which is
checked from results.json's "setting" and then, episode by episode, from the class and image ids
stored in episodes.npz (`panet.report.statistics.mismatch`). Within a side the tests are of one method
trained with different seeds: the same model and training settings, distinct trained models.

The result (`panet.report.statistics.paired_comparison`) becomes a `Report` (Markdown and LaTeX through
`panet.report.render`) or a JSON document, with each side's provenance: the code commit that
tested it, the checkpoint (path and SHA-256), the factory and the training seed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from panet.models.factory import DEFAULT_FACTORY
from panet.report.statistics import EpisodeRecords, interval_coverage
from panet.run.folder import RunFolder
from panet.report.render import format_number
from panet.report.document import MISSING, Measured, Report

# the protocol of a test: (key, where results.json's "setting" holds it)
PROTOCOL_KEYS = {
    **{f"data.{name}": ("data", name) for name in (
        "name", "test_split", "fold", "n_folds", "fold_style", "test_classes", "year", "ways",
        "shots", "queries", "weak", "bbox_instance", "scribble_dilation", "coco_labels", "size")},
    **{f"test.{name}": (name,) for name in ("rule", "resolution", "runs", "episodes")},
    "seed": ("seed",),
}
METRICS = (("mean_iou", "mean-IoU"), ("binary_iou", "binary-IoU"))
# what may differ between the models of one side: the training seed and where the data was read
SEED_KEYS = ("seed", "data.root")


@dataclass(frozen=True)
class TestResult:
    """One test.py run: its results.json record, its per-episode records and where they are;
    `label` names it in messages and reports (A1, A2, ..., B1, ...)."""

    __test__ = False  # not a test for pytest to collect
    label: str
    path: Path
    record: Dict[str, Any]
    records: EpisodeRecords

    @property
    def setting(self) -> Dict[str, Any]:
        return self.record["setting"]

    def protocol(self) -> Dict[str, Any]:
        """The value of every protocol key (None where an older results.json lacks it)."""
        found = {}
        for key, where in PROTOCOL_KEYS.items():
            value: Any = self.setting
            for part in where:
                value = value.get(part) if isinstance(value, dict) else None
            found[key] = value
        return found

    def model_identity(self) -> tuple:
        """What tells trained models apart: the checkpoint's bytes, or PANet-init's settings."""
        setting = self.setting
        if setting.get("checkpoint_sha256"):
            return ("checkpoint", setting["checkpoint_sha256"])
        return ("init", json.dumps(setting.get("model"), sort_keys=True), setting.get("seed"))

    def provenance(self) -> Dict[str, Any]:
        """Where the tested model came from and what tested it."""
        setting = self.setting
        return {"label": self.label, "results": str(self.path),
                "code": self.record.get("code"), "checkpoint": setting.get("checkpoint"),
                "checkpoint_sha256": setting.get("checkpoint_sha256"),
                "factory": (setting.get("model") or {}).get("factory", DEFAULT_FACTORY),
                "training_seed": setting.get("training_seed"),
                "trained_steps": setting.get("trained_steps"),
                "init": bool(setting.get("notrain")),
                "encode_used": setting.get("encode_used", setting.get("encode"))}


def load_test(path: Path, label: str) -> TestResult:
    """The test of a results.json or of the run folder holding it (episodes.npz beside it).
    Raises ValueError (one line) when either is missing or unreadable."""
    results = RunFolder(path).results if path.is_dir() else path
    if not results.is_file():
        raise ValueError(f"{label} {path}: no {RunFolder.RESULTS} (give test.py's {RunFolder.RESULTS} or "
                         "its folder)")
    try:
        record = json.loads(results.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{label} {results}: not readable as JSON ({error})") from None
    if not isinstance(record, dict) or "setting" not in record or "class_iou" not in record:
        raise ValueError(f"{label} {results}: not a {RunFolder.RESULTS} of test.py")
    records = RunFolder(results.parent).records
    if not records.is_file():
        raise ValueError(f"{label} {results}: no {RunFolder.RECORDS} beside it (tests from before "
                         "per-episode records cannot be compared: run test.py again)")
    return TestResult(label, results, record, EpisodeRecords.load(records))


def _values(tests: Sequence[TestResult], value: Callable[[TestResult], Any]) -> str:
    """'v1 (A1, A2), v2 (B1)': the distinct values of the tests, each with who has it."""
    groups: Dict[str, List[str]] = {}
    for test in tests:
        groups.setdefault(repr(value(test)), []).append(test.label)
    return ", ".join(f"{shown} ({', '.join(labels)})" for shown, labels in groups.items())


def protocol_differences(tests: Sequence[TestResult]) -> List[str]:
    """'key: value (tests), other value (tests)' for every protocol key the tests disagree on."""
    protocols = {test.label: test.protocol() for test in tests}
    return [f"{key}: {_values(tests, lambda t: protocols[t.label][key])}"
            for key in PROTOCOL_KEYS if len({repr(p[key]) for p in protocols.values()}) > 1]


def side_problems(side: Sequence[TestResult]) -> List[str]:
    """Why the tests of one side are not one method over distinct training seeds: model or
    training settings that differ (the seed and the data's folder aside), one trained model
    tested twice, or two models trained with the same seed."""
    problems = []
    recorded = [test for test in side if test.setting.get("training")]  # train.py checkpoints
    for key in sorted({key for t in recorded for key in t.setting["training"]} - set(SEED_KEYS)):
        value = lambda t, key=key: t.setting["training"].get(key)  # noqa: E731
        if len({json.dumps(value(t)) for t in recorded}) > 1:
            problems.append(f"the models of a side differ in {key} (only the training seed "
                            f"may): {_values(recorded, value)}")
    if len({json.dumps(test.setting.get("model"), sort_keys=True) for test in side}) > 1:
        problems.append("the models of a side differ in their model settings: "
                        f"{_values(side, lambda t: t.setting.get('model'))}")
    models: Dict[tuple, str] = {}
    seeds: Dict[int, str] = {}
    for test in side:
        seed = test.setting.get("training_seed")
        if test.model_identity() in models:
            problems.append(f"{models[test.model_identity()]} and {test.label} test the same "
                            "trained model: a side holds one test per training seed")
        elif seed is not None and seed in seeds:
            problems.append(f"{seeds[seed]} and {test.label} test models trained with the same "
                            f"seed ({seed}): a side holds one test per training seed")
        models.setdefault(test.model_identity(), test.label)
        if seed is not None:
            seeds.setdefault(seed, test.label)
    return problems


def comparison_problems(a: Sequence[TestResult], b: Sequence[TestResult]) -> List[str]:
    """Everything that makes the tests of sides `a` and `b` not comparable (module docstring):
    one line per protocol key that differs, naming the values and tests, and per side problem."""
    differences = protocol_differences([*a, *b])
    problems = [f"the protocols differ (only the model and its training may): {line}"
                for line in differences]
    classes = {test.label: sorted(int(c) for c in test.record["class_iou"]) for test in (*a, *b)}
    if not differences and len({tuple(c) for c in classes.values()}) > 1:
        problems.append(f"the tests report different classes: {classes}")
    return problems + side_problems(a) + side_problems(b)


def _percent_interval(interval: Sequence[Optional[float]]) -> str:
    low, high = (None if v is None else 100 * v for v in interval)
    if low is None or high is None or low != low or high != high:
        return MISSING
    return f"[{low:+.1f}, {high:+.1f}]"


def _side_entry(values: Sequence[float]) -> Measured:
    """A side's value in percent: the mean over its models, ± their sample std (2+ models)."""
    percents = [100 * v for v in values]
    mean = sum(percents) / len(percents)
    if mean != mean:  # NaN: a class no test evaluated
        return Measured(None)
    std = None
    if len(percents) > 1:
        std = (sum((v - mean) ** 2 for v in percents) / (len(percents) - 1)) ** 0.5
    return Measured(mean, std)


def _row(label: str, entry: Dict[str, Any]) -> List[Any]:
    difference = entry["difference"]
    p_value = MISSING if difference != difference else f"{entry['p_value']:.4f}"  # NaN
    return [label, _side_entry(entry["a_models"]), _side_entry(entry["b_models"]),
            format_number(100 * difference, signed=True), _percent_interval(entry["ci"]),
            p_value, _percent_interval(entry["ci_episodes"])]


def _describe_side(side: Sequence[TestResult]) -> str:
    first = side[0].provenance()
    if first["init"]:
        return f"{first['factory']}, PANet-init (no training)"
    seeds = ", ".join(str(t.provenance()["training_seed"]) for t in side)
    if len(side) == 1:
        return f"{first['factory']}, one trained model (training seed {seeds})"
    return f"{first['factory']}, {len(side)} trained models (training seeds {seeds})"


def _provenance_line(test: TestResult) -> str:
    made = test.provenance()
    code = made["code"] or {}
    commit = (code.get("commit") or "unknown")[:12] + (" (dirty)" if code.get("dirty") else "")
    model = ("PANet-init" if made["init"] else
             f"checkpoint {made['checkpoint']} (sha256 {str(made['checkpoint_sha256'])[:12]}, "
             f"{made['trained_steps']} steps, training seed {made['training_seed']})")
    return (f"{made['label']}: {made['results']}: {made['factory']}, {model}; tested at commit "
            f"{commit}, {made['encode_used']} path")


def comparison_report(a: Sequence[TestResult], b: Sequence[TestResult], result: Dict[str, Any],
                      n_resamples: int) -> Report:
    """The comparison as a `Report`: rows for mean- and binary-IoU (and each run's, with
    several runs) and each class; A and B as mean ± std over their models, A - B with the
    interval over seeds and episodes, its p-value, and the interval over episodes only."""
    protocol = a[0].protocol()
    rows: List[List[Any]] = []
    groups = []
    for name, title in METRICS:
        groups.append(len(rows))
        rows.append(_row(title, result["overall"][name]))
        if len(result["runs"]) > 1:
            rows += [_row(f"  run {run}", entry[name]) for run, entry in enumerate(result["runs"])]
    groups.append(len(rows))
    rows += [_row(f"class {class_id}", entry) for class_id, entry in result["classes"].items()]
    records = a[0].records
    notes = [f"A: {_describe_side(a)}", f"B: {_describe_side(b)}",
             f"protocol (the same for every test): {protocol['data.name']} "
             f"{protocol['data.test_split']} fold {protocol['data.fold']}, "
             f"{protocol['data.ways']}-way {protocol['data.shots']}-shot, "
             f"{protocol['data.weak']} supports, {protocol['data.size']} px, metric rule "
             f"{protocol['test.rule']} at {protocol['test.resolution']} resolution",
             f"identical episodes in every test: {records.n_runs} run(s), {len(records.run)} "
             f"queries (their class and image ids checked); {n_resamples} bootstrap resamples",
             interval_coverage(len(a), len(b), n_resamples)]
    header = ["(IoU in %)", "A", "B", "A - B", "95% interval (seeds and episodes)", "p-value",
              "95% interval (episodes only)"]
    return Report("A vs B", header, rows, notes=notes, groups=groups,
                  provenance=[_provenance_line(test) for test in (*a, *b)],
                  made_by="scripts/compare.py")


def comparison_document(a: Sequence[TestResult], b: Sequence[TestResult],
                        result: Dict[str, Any], n_resamples: int) -> Dict[str, Any]:
    """The comparison as JSON-ready data: each side's provenance, the protocol, what the
    interval covers, and `paired_comparison`'s result (fractions)."""
    return {"a": [test.provenance() for test in a], "b": [test.provenance() for test in b],
            "protocol": a[0].protocol(), "resamples": n_resamples,
            "interval_covers": interval_coverage(len(a), len(b), n_resamples),
            "comparison": result}
