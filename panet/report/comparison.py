"""Comparing methods for `scripts/compare.py`: tests of models A (one per training seed) against
tests of models B, on the same protocol (`panet.run.identity.PROTOCOL_KEYS`) and episodes. The
sides compare two methods' models, or one set of models in two numerics (`recorded_numerics`);
one model on both sides is refused otherwise. `paired_comparison`'s result becomes a `Report`
or a JSON document, with each side's numerics and each test's provenance.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from panet.models.factory import DEFAULT_FACTORY
from panet.report.render import MISSING, Measured, Report, format_number
from panet.report.statistics import METRICS, EpisodeRecords, interval_coverage
from panet.run.folder import RunFolder
from panet.run.identity import PROTOCOL_KEYS, protocol, recorded_model, recorded_numerics

METRIC_TITLES = {"mean_iou": "mean-IoU", "binary_iou": "binary-IoU"}
# what may differ between the models of one side: the training seed and where the data was read
SEED_KEYS = ("seed", "data.root")
FOLD_KEYS = ("data.fold", "data.test_classes")  # what may differ between the folds compared


def header(names: Sequence[str] = ("A", "B")) -> List[str]:
    a, b = names
    return ["(IoU in %)", a, b, f"{a} - {b}", "95% interval (seeds and episodes)", "p-value",
            "95% interval (episodes only)"]


@dataclass(frozen=True)
class TestResult:
    """One test.py run: its results.json record and per-episode records; `label` (A1, B1, ...)
    names it in messages and reports."""

    __test__ = False  # not a test for pytest to collect
    label: str
    path: Path
    record: Dict[str, Any]
    records: EpisodeRecords

    @property
    def setting(self) -> Dict[str, Any]:
        return self.record["setting"]

    @property
    def model(self) -> tuple:
        return recorded_model(self.record)

    @property
    def numerics(self) -> Dict[str, Any]:
        return recorded_numerics(self.record)

    def protocol(self) -> Dict[str, Any]:
        """The protocol keys of the test's settings fingerprint (older records: its "setting")."""
        settings = (self.record.get("identity") or {}).get("settings")
        if settings is None:
            setting = self.setting
            settings = {**{f"test.{key}": value for key, value in setting.items()},
                        **{f"data.{key}": value for key, value in setting["data"].items()},
                        "seed": setting.get("seed")}
        return protocol(settings)

    def provenance(self) -> Dict[str, Any]:
        """Where the tested model came from, what tested it and how it computed."""
        setting = self.setting
        return {"label": self.label, "results": str(self.path),
                "code": self.record.get("code"), "checkpoint": setting.get("checkpoint"),
                "checkpoint_sha256": setting.get("checkpoint_sha256"),
                "model_sha256": (self.record.get("model") or {}).get("model_sha256"),
                "factory": (setting.get("model") or {}).get("factory", DEFAULT_FACTORY),
                "training_seed": setting.get("training_seed"),
                "trained_steps": setting.get("trained_steps"),
                "init": bool(setting.get("notrain")), "numerics": self.numerics}


def load_test(path: Path, label: str) -> TestResult:
    """The test of a results.json or of its run folder (episodes.npz beside it); ValueError (one
    line) when either is missing or unreadable."""
    results = RunFolder(path).results if path.is_dir() else path
    if not results.is_file():
        raise ValueError(f"{label} {path}: no {RunFolder.RESULTS} (give test.py's "
                         f"{RunFolder.RESULTS} or its folder)")
    try:
        record = json.loads(results.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{label} {results}: not readable as JSON ({error})") from None
    if not isinstance(record, dict) or "setting" not in record or "class_iou" not in record:
        raise ValueError(f"{label} {results}: not a {RunFolder.RESULTS} of test.py")
    records = RunFolder(results.parent).records
    if not records.is_file():
        raise ValueError(f"{label} {results}: no {RunFolder.RECORDS} beside it (tests from "
                         "before per-episode records cannot be compared: run test.py again)")
    return TestResult(label, results, record, EpisodeRecords.load(records))


def _differing(tests: Sequence[TestResult], value: Callable[[TestResult], Any],
               shown: Callable[[Any], str] = repr) -> Optional[str]:
    """'v1 (A1, A2), v2 (B1)': the tests' distinct values with who has each; None if one."""
    groups: Dict[str, List[str]] = {}
    for test in tests:
        groups.setdefault(shown(value(test)), []).append(test.label)
    if len(groups) < 2:
        return None
    return ", ".join(f"{text} ({', '.join(labels)})" for text, labels in groups.items())


def numerics_text(numerics: Dict[str, Any]) -> str:
    """'bf16, channels_last, image path': a test's numerics in words."""
    return f"{numerics['precision']}, {numerics['memory_format']}, {numerics['encode']} path"


def side_numerics(side: Sequence[TestResult]) -> str:
    """The numerics of a side's tests in words; each with its tests when they differ."""
    return (_differing(side, lambda test: test.numerics, numerics_text)
            or numerics_text(side[0].numerics))


def protocol_differences(tests: Sequence[TestResult]) -> List[str]:
    """'key: value (tests), other value (tests)' for every protocol key the tests disagree on."""
    protocols = {test.label: test.protocol() for test in tests}
    found = {key: _differing(tests, lambda t: protocols[t.label][key]) for key in PROTOCOL_KEYS}
    return [f"{key}: {values}" for key, values in found.items() if values]


def side_problems(side: Sequence[TestResult]) -> List[str]:
    """Why the tests of one side are not one method over distinct training seeds."""
    recorded = [test for test in side if test.setting.get("training")]  # train.py checkpoints
    keys = sorted({key for t in recorded for key in t.setting["training"]} - set(SEED_KEYS))
    differing = {key: _differing(recorded, lambda t: t.setting["training"].get(key))
                 for key in keys}
    problems = [f"the models of a side differ in {key} (only the training seed may): {values}"
                for key, values in differing.items() if values]
    models = _differing(side, lambda t: t.setting.get("model"), partial(json.dumps, sort_keys=True))
    if models:
        problems.append(f"the models of a side differ in their model settings: {models}")
    models: Dict[tuple, str] = {}  # the first test of each model, of each training seed
    seeds: Dict[int, str] = {}
    for test in side:
        seed = test.setting.get("training_seed")
        if test.model in models:
            problems.append(f"{models[test.model]} and {test.label} test the same trained "
                            "model: a side holds one test per training seed")
        elif seed in seeds:
            problems.append(f"{seeds[seed]} and {test.label} test models trained with the same "
                            f"seed ({seed}): a side holds one test per training seed")
        models.setdefault(test.model, test.label)
        if seed is not None:
            seeds.setdefault(seed, test.label)
    return problems


def compares_numerics(a: Sequence[TestResult], b: Sequence[TestResult]) -> bool:
    """Whether A and B test the same models, each side in one numerics, and these differ."""
    return (len(a) == len(b) and {t.model for t in a} == {t.model for t in b}
            and len({side_numerics(a), side_numerics(b)}) == 2
            and not any(_differing(side, lambda t: t.numerics, numerics_text) for side in (a, b)))


def shared_model_problems(a: Sequence[TestResult], b: Sequence[TestResult]) -> List[str]:
    """'A1 and B1 test the same model: why', for each model on both sides (outside a
    comparison of numerics)."""
    in_b = {test.model: test.label for test in b}
    if compares_numerics(a, b) or not in_b.keys() & {test.model for test in a}:
        return []
    if len(a) != len(b) or in_b.keys() != {test.model for test in a}:
        why = "only a comparison of numerics may, with every model of A tested once in B"
    elif side_numerics(a) == side_numerics(b):
        why = (f"both sides compute in {side_numerics(a)}; a comparison of numerics needs other "
               "numerics on each side (precision, memory format, evaluation path)")
    else:
        why = (f"a comparison of numerics needs one numerics per side (A: {side_numerics(a)}; "
               f"B: {side_numerics(b)})")
    return [f"{test.label} and {in_b[test.model]} test the same model: {why}"
            for test in a if test.model in in_b]


def comparison_problems(a: Sequence[TestResult], b: Sequence[TestResult]) -> List[str]:
    """Everything that makes the tests of sides `a` and `b` not comparable, one line each."""
    differences = protocol_differences([*a, *b])
    problems = [f"the protocols differ (only the model and its training may): {line}"
                for line in differences]
    classes = {test.label: sorted(int(c) for c in test.record["class_iou"]) for test in (*a, *b)}
    if not differences and len({tuple(c) for c in classes.values()}) > 1:
        problems.append(f"the tests report different classes: {classes}")
    return problems + side_problems(a) + side_problems(b) + shared_model_problems(a, b)


def by_fold(a: Sequence[TestResult], b: Sequence[TestResult]
            ) -> Dict[Any, Tuple[List[TestResult], List[TestResult]]]:
    """The tests of each fold: fold -> (A's, B's), folds in order."""
    groups: Dict[Any, Tuple[List[TestResult], List[TestResult]]] = {}
    for side, tests in enumerate((a, b)):
        for test in tests:
            groups.setdefault(test.protocol()["data.fold"], ([], []))[side].append(test)
    return dict(sorted(groups.items(), key=lambda item: str(item[0])))


def folds_problems(a: Sequence[TestResult], b: Sequence[TestResult]) -> List[str]:
    """`comparison_problems` of each fold's tests, once the folds share the rest of their
    protocol and each holds tests of both sides."""
    groups = by_fold(a, b)
    if len(groups) == 1:
        return comparison_problems(a, b)
    beyond = [line for line in protocol_differences([*a, *b]) if not line.startswith(FOLD_KEYS)]
    problems = [f"the protocols differ beyond the fold: {line}" for line in beyond]
    problems += [f"fold {fold} has no test of {'A' if not x else 'B'}"
                 for fold, (x, y) in groups.items() if not (x and y)]
    return problems or [f"fold {fold}: {line}" for fold, (x, y) in groups.items()
                        for line in comparison_problems(x, y)]


def _percent_interval(interval: Sequence[Optional[float]]) -> str:
    if any(v is None or v != v for v in interval):  # NaN: a class no test evaluated
        return MISSING
    return "[{:+.1f}, {:+.1f}]".format(*(100 * v for v in interval))


def _side_entry(values: Sequence[float]) -> Measured:
    """A side's value in percent: the mean over its models, ± their sample std (2+ models)."""
    percents = [100 * v for v in values]
    if any(v != v for v in percents):  # NaN: a class no test evaluated
        return Measured(None)
    return Measured(statistics.mean(percents),
                    statistics.stdev(percents) if len(percents) > 1 else None)


def _row(label: str, entry: Dict[str, Any]) -> List[Any]:
    difference = entry["difference"]
    p_value = MISSING if difference != difference else f"{entry['p_value']:.4f}"  # NaN
    return [label, _side_entry(entry["a_models"]), _side_entry(entry["b_models"]),
            format_number(100 * difference, signed=True), _percent_interval(entry["ci"]),
            p_value, _percent_interval(entry["ci_episodes"])]


def _rows(result: Dict[str, Any]) -> Tuple[List[List[Any]], List[int]]:
    """The table's rows (each metric, each run's, each class) and the group starts."""
    rows: List[List[Any]] = []
    groups = []
    for name in METRICS:
        groups.append(len(rows))
        rows.append(_row(METRIC_TITLES[name], result["overall"][name]))
        if len(result["runs"]) > 1:
            rows += [_row(f"  run {run}", entry[name]) for run, entry in enumerate(result["runs"])]
    groups.append(len(rows))
    rows += [_row(f"class {class_id}", entry) for class_id, entry in result["classes"].items()]
    return rows, groups


def _describe_side(side: Sequence[TestResult], folds: int = 1) -> str:
    """'<factory>, N trained models (training seeds ...)[ per fold, over F folds]; numerics'."""
    first = side[0].provenance()
    seeds = list(dict.fromkeys(str(t.provenance()["training_seed"]) for t in side))
    per_fold = len(side) // folds
    models = ("PANet-init (no training)" if first["init"] else
              f"one trained model (training seed {', '.join(seeds)})" if per_fold == 1 else
              f"{per_fold} trained models (training seeds {', '.join(seeds)})")
    over = f" per fold, over {folds} folds" if folds > 1 else ""
    return f"{first['factory']}, {models}{over}; {side_numerics(side)}"


def _report(title: str, a: Sequence[TestResult], b: Sequence[TestResult], rows: List[List[Any]],
            groups: List[int], notes: List[str], names: Sequence[str]) -> Report:
    return Report(title, header(names), rows, notes=notes, groups=groups,
                  provenance=[_provenance_line(test) for test in (*a, *b)],
                  made_by="scripts/compare.py")


def _provenance_line(test: TestResult) -> str:
    made = test.provenance()
    code = made["code"] or {}
    commit = (code.get("commit") or "unknown")[:12] + (" (dirty)" if code.get("dirty") else "")
    model = ("PANet-init" if made["init"] else
             f"checkpoint {made['checkpoint']} (sha256 {str(made['checkpoint_sha256'])[:12]}, "
             f"{made['trained_steps']} steps, training seed {made['training_seed']})")
    return (f"{made['label']}: {made['results']}: {made['factory']}, {model}; tested at commit "
            f"{commit} in {numerics_text(made['numerics'])}")


def _protocol_note(test: TestResult) -> str:
    found = test.protocol()
    return (f"protocol (the same for every test): {found['data.name']} "
            f"{found['data.test_split']} fold {found['data.fold']}, {found['data.ways']}-way "
            f"{found['data.shots']}-shot, {found['data.weak']} supports, {found['data.size']} "
            f"px, metric rule {found['test.rule']} at {found['test.resolution']} resolution")


def folds_report(a: Sequence[TestResult], b: Sequence[TestResult],
                 results: Dict[Any, Dict[str, Any]], averaged: Dict[str, Dict[str, Any]],
                 n_resamples: int, names: Sequence[str] = ("A", "B")) -> Report:
    """A comparison over folds as a `Report`: per metric, each fold's row (its
    `paired_comparison`) and the row of the mean over folds (`fold_averaged_comparison`)."""
    rows, groups = [], []
    for name in METRICS:
        groups.append(len(rows))
        rows += [_row(f"{METRIC_TITLES[name]}, fold {fold}", result["overall"][name])
                 for fold, result in results.items()]
        rows.append(_row(f"{METRIC_TITLES[name]}, mean over {len(results)} folds",
                         averaged[name]))
    notes = [f"{names[0]}: {_describe_side(a, len(results))}",
             f"{names[1]}: {_describe_side(b, len(results))}",
             _protocol_note(a[0]).replace(f"fold {a[0].protocol()['data.fold']}",
                                          f"folds {', '.join(map(str, results))}"),
             interval_coverage(len(a) // len(results), len(b) // len(results), n_resamples),
             "The mean over folds treats the folds as independent: each fold's episodes and "
             "models are drawn with its own seed, and the resampled differences are averaged "
             "over the folds; its A and B columns are ± over folds."]
    return _report(f"{names[0]} vs {names[1]} over folds", a, b, rows, groups, notes, names)


def comparison_report(a: Sequence[TestResult], b: Sequence[TestResult], result: Dict[str, Any],
                      n_resamples: int, names: Sequence[str] = ("A", "B")) -> Report:
    """The comparison as a `Report`: rows for mean- and binary-IoU (each run's too) and each
    class; A and B as mean ± std over their models, A - B with its intervals and p-value. A
    comparison of numerics says so in its title and first note."""
    rows, groups = _rows(result)
    records = a[0].records
    notes = [f"{names[0]}: {_describe_side(a)}", f"{names[1]}: {_describe_side(b)}",
             _protocol_note(a[0]),
             f"identical episodes in every test: {records.n_runs} run(s), {len(records.run)} "
             f"queries (their class and image ids checked); {n_resamples} bootstrap resamples",
             interval_coverage(len(a), len(b), n_resamples)]
    title = f"{names[0]} vs {names[1]}"
    if compares_numerics(a, b):
        title += f": numerics ({side_numerics(a)} vs {side_numerics(b)})"
        notes.insert(0, f"a comparison of numerics: the same model(s) on both sides, A in "
                        f"{side_numerics(a)}; B in {side_numerics(b)}. A - B is what the "
                        "numerics change, not a difference between models")
    return _report(title, a, b, rows, groups, notes, names)


def comparison_document(a: Sequence[TestResult], b: Sequence[TestResult],
                        result: Dict[str, Any], n_resamples: int) -> Dict[str, Any]:
    """The comparison as JSON-ready data: what it compares ("models" | "numerics"), each side's
    numerics and provenance, the protocol, what the interval covers, and `result`."""
    return {"compares": "numerics" if compares_numerics(a, b) else "models",
            "numerics": {"a": side_numerics(a), "b": side_numerics(b)},
            "a": [test.provenance() for test in a], "b": [test.provenance() for test in b],
            "protocol": a[0].protocol(), "resamples": n_resamples,
            "interval_covers": interval_coverage(len(a), len(b), n_resamples),
            "comparison": result}
