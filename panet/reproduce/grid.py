"""The cells of a table computed from the test jobs' results, beside the paper's numbers:
`table_report(spec, results, paper, provenance, resampled)` gives the `Report` the renderers
print. `results`: test job name -> its results.json (with "code" {"commit", "dirty"} of the
checkout that made it: a reused result keeps its commit, and the table says so); `resampled`:
test job name -> {"mean_iou", "binary_iou": bootstrap resamples}, from episodes.npz.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np

from panet.models.factory import DEFAULT_FACTORY
from panet.report.render import MISSING, PARTIAL_NOTE, Measured, Number, Report
from panet.report.statistics import (EpisodeRecords, bootstrap_seed, percentile_interval,
                                     resampled_run_means)
from panet.reproduce.jobs import PAPER_SEED, Job, Variant
from panet.reproduce.specs import METRIC_NAMES, PAPER_RESULTS, Column, TableSpec, paper_value
from panet.run.folder import RunFolder

BOOTSTRAP_RESAMPLES = 1000  # test.py's default test.bootstrap
RESULT_KEYS = ("mean_iou", "binary_iou", "setting")
TOY_WARNING = ("Toy scale on the synthetic dataset", " (small encoder, few steps and episodes). "
               "The paper column is NOT comparable: it is shown only to exercise the pipeline "
               "from configs to this table.")


def read_result(path: Path) -> Optional[dict]:
    """test.py's results.json at `path`, None if it does not exist yet."""
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); delete it and rerun to redo "
                         "the test job") from None
    absent = [key for key in RESULT_KEYS if key not in result]
    if absent:
        raise ValueError(f"{path} lacks {absent}: not a results.json of test.py; delete it "
                         "and rerun to redo the test job")
    return result


def read_results(jobs: Iterable[Job]) -> Dict[str, dict]:
    """The results.json of every finished test job, by job name."""
    results = {job.name: read_result(job.output) for job in jobs if not job.trains}
    return {name: result for name, result in results.items() if result is not None}


def resampled_results(jobs: Iterable[Job], results: Mapping[str, dict],
                      n_resamples: int = BOOTSTRAP_RESAMPLES) -> Dict[str, Dict[str, np.ndarray]]:
    """Per finished test job with per-episode records: its bootstrap resamples of mean- and
    binary-IoU (`panet.report.statistics.resampled_run_means`, drawn from the fold's seed)."""
    resampled = {}
    for job in (job for job in jobs if job.name in results):
        records, result = RunFolder(job.folder).records, results[job.name]
        if records.is_file():
            classes = sorted(int(class_id) for class_id in result["class_iou"])
            resampled[job.name] = resampled_run_means(
                EpisodeRecords.load(records), classes, n_resamples,
                bootstrap_seed(result["setting"]["data"]["fold"]))
    return resampled


def code_label(code: Optional[Mapping]) -> str:
    """'<commit>' of a recorded {"commit", "dirty"}, '<commit> (dirty)' when it was modified."""
    if not code or not code.get("commit"):
        return "unknown (not recorded, or not a git checkout)"
    return code["commit"] + (" (dirty)" if code.get("dirty") else "")


def result_commits(results: Mapping[str, dict]) -> Dict[str, List[str]]:
    """The commits that made the results: label (`code_label`) -> test job names."""
    found = defaultdict(list)
    for name, result in sorted(results.items()):
        found[code_label(result.get("code"))].append(name)
    return dict(found)


def commit_note(results: Mapping[str, dict], current: str) -> Optional[str]:
    """The header's line when some results come from other commits than `current`, else None."""
    others = {label: names for label, names in result_commits(results).items()
              if label != current}
    return None if not others else (
        f"results from other commits than the current {current}: " + ", ".join(
            f"{label} ({len(names)} test{'s' * (len(names) > 1)})" for label, names in
            others.items()))


@dataclass(frozen=True)
class Provenance:
    """How a table's numbers were made: the current commit (`code_label`), whether the scale
    was the toy one, the training seeds, the encoder (None: the scale's), its parameter count
    (Table 1), the jobs (their commands, in the order run)."""

    commit: str
    synthetic_scale: bool = False
    seeds: Sequence[int] = (PAPER_SEED,)
    encoder: Optional[str] = None
    parameters: Optional[int] = None
    jobs: Sequence[Job] = ()
    method: Optional[str] = None  # the name of the method our runs are (None: PANet)
    # other methods' runs of the same table: name -> (their results, their resampled values)
    others: Mapping[str, tuple] = field(default_factory=dict)


def method_label(row: str, method: Optional[str]) -> str:
    """A row of the paper's table named for `method` ("PANet w/o PAR" -> "Ours w/o PAR")."""
    if method is None:
        return row
    return row.replace("PANet", method) if "PANet" in row else f"{method} ({row})"


def cell(spec: TableSpec, variant: Variant, column: Column, results: Mapping[str, dict],
         resampled: Mapping[str, Mapping[str, np.ndarray]], provenance: Provenance) -> Measured:
    """Our entry of a column for a method: per training seed the mean over the column's folds
    (and targets), then over seeds; the interval resamples each fold's episodes (the seeds'
    tests of a fold share their draws) and averages alike. None while any test is missing;
    partial when a test left classes unevaluated."""
    seeds = provenance.seeds[:1] if variant.init else provenance.seeds
    names = [[spec.setting(variant, column.shots, fold, seed, provenance.encoder, target)
              .test_name for fold in column.folds for target in column.targets]
             for seed in seeds]  # seed x (fold, target)
    if any(results.get(name, {}).get(column.metric) is None for row in names for name in row):
        return Measured(None)
    per_seed = [float(np.mean([100 * results[name][column.metric] for name in row]))
                for row in names]
    std = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else None
    interval = None
    if all(name in resampled for row in names for name in row):
        draws = np.mean([[resampled[name][column.metric] for name in row] for row in names],
                        axis=(0, 1))  # mean over seeds and folds, per resample
        interval = tuple(percentile_interval(100 * draws))
    partial = any(results[name].get("unevaluated") for row in names for name in row)
    return Measured(float(np.mean(per_seed)), std, interval, partial)


def _distinct(results: Iterable[dict], describe: Callable[[dict], str]) -> str:
    """The distinct descriptions of the results' settings, joined."""
    values = sorted({describe(result["setting"]) for result in results})
    return ", ".join(values) if values else "no results yet"


def describe_results(results: Mapping[str, dict]) -> List[str]:
    """Header lines stating how the finished tests were run (from their results.json)."""
    done = list(results.values())
    return [
        "data: " + _distinct(done, lambda s: f"{s['data']['name']}, test split "
                                             f"{s['data']['test_split']}, input "
                                             f"{s['data']['size']} px"),
        "model: " + _distinct(done, lambda s: s["model"].get("factory", DEFAULT_FACTORY)),
        "encoder: " + _distinct(done, lambda s: s["model"]["encoder"]),
        "metric: " + _distinct(done, lambda s: f"rule {s['rule']}, {s['resolution']} "
                                               "resolution"),
        "runs x episodes: " + _distinct(done, lambda s: f"{s['runs']} x {s['episodes']}"),
        "training steps: " + _distinct(
            done, lambda s: "none (PANet-init)" if s["trained_steps"] is None
            else str(s["trained_steps"])),
    ] + (["models: the authors' released snapshots (trained PANet models: their file's sha256 "
          "in each results.json)"]
         if any(r["setting"].get("checkpoint_format") == "released" for r in done) else [])


def _method_rows(spec: TableSpec, results, paper, resampled, provenance) -> tuple:
    """The rows of every method (ours, the paper's, difference, interval check) and the indices
    where each method's rows start."""
    rows, groups = [], []
    for method in spec.methods:
        groups.append(len(rows))
        paths = [column.paper for column in spec.columns] + [("params_M",)] * spec.params
        paper_cells = [paper_value(paper, spec, method.name, path) for path in paths]
        paper_row = [f"{method.name} (paper)"] + [Number(v) for v in paper_cells]
        if method.variant is None:
            rows.append(paper_row)
            continue

        def measured(found, draws, parameters=None) -> list:
            """Cells of runs of this method (and the encoder's parameter count, Table 1)."""
            return [*(cell(spec, method.variant, column, found, draws, provenance)
                      for column in spec.columns),
                    *[Measured(parameters and parameters / 1e6)] * spec.params]

        ours = measured(results, resampled, provenance.parameters)
        toy_init = provenance.synthetic_scale and method.variant.init
        label = method_label(method.name, provenance.method)
        others = [[f"{method_label(method.name, name)} (ours)", *measured(*runs)]
                  for name, runs in provenance.others.items()]
        rows += [[f"{label}{', random-init small encoder' * toy_init} (ours)", *ours],
                 *others, paper_row,
                 ["difference (ours - paper)"] + [
                     Number(None if c.value is None or p is None else c.value - p, signed=True)
                     for c, p in zip(ours, paper_cells)],
                 ["paper in our interval"] + [c.holds(p) for c, p in zip(ours, paper_cells)]]
    return rows, groups


def table_report(spec: TableSpec, results: Mapping[str, dict], paper: Mapping,
                 provenance: Provenance,
                 resampled: Optional[Mapping[str, Mapping[str, np.ndarray]]] = None) -> Report:
    """tableN: for each method we run, our row (mean over training seeds ± their std, and the
    95% bootstrap interval over test episodes), the paper's row, their difference (ours minus
    paper, percentage points) and whether the paper's number lies in our interval; other
    methods' rows from the paper. Ends with how the numbers were made (commits, seeds, the exact
    commands) and how to cite them."""
    seeds = provenance.seeds
    warning = None
    if provenance.synthetic_scale:
        has_init = any(m.variant is not None and m.variant.init for m in spec.methods)
        warning = (TOY_WARNING[0], TOY_WARNING[1] + (
            " PANet-init here is the randomly initialised small encoder." if has_init else ""))
    seed_text = (f"{len(seeds)} training seeds ({', '.join(map(str, seeds))}); cells are mean "
                 "± sample std over seeds" if len(seeds) > 1 else f"training seed {seeds[0]}")
    other_commits = commit_note(results, provenance.commit)
    notes = [*describe_results(results), f"{seed_text}; [low, high]: 95% bootstrap interval "
             "over the test episodes (panet/report/statistics.py)",
             f"commit: {provenance.commit}", *([other_commits] if other_commits else []),
             f"paper: results/{PAPER_RESULTS.name} ({spec.paper_key})"]
    header = ["method"] + [column.title for column in spec.columns] + ["params (M)"] * spec.params
    rows, groups = _method_rows(spec, results, paper, resampled or {}, provenance)
    expected = {setting.test_name for setting in spec.settings(seeds, provenance.encoder)}
    pending = sorted(expected - set(results))
    after = [f"{len(pending)} of {len(expected)} test jobs have no results yet ({MISSING}): "
             f"{', '.join(pending)}" if pending else
             f"All {len(expected)} test jobs done; their results.json are under runs/."]
    if any(isinstance(entry, Measured) and entry.partial for row in rows for entry in row):
        after.append(PARTIAL_NOTE)
    provenance_lines, citation = _citation(spec, results, provenance)
    return Report(f"{spec.heading}: {spec.title}", header, rows, notes, warning, groups,
                  after, provenance_lines, [job.command for job in provenance.jobs], citation)


def _citation(spec: TableSpec, results: Mapping[str, dict], provenance: Provenance) -> tuple:
    """(how the numbers were made, how to cite one of them)."""
    seeds, commits = provenance.seeds, result_commits(results) or {provenance.commit: []}
    protocol = _distinct(results.values(), lambda s: (
        f"{s['data']['name']} test split {s['data']['test_split']}, {s['runs']} runs x "
        f"{s['episodes']} episodes from seed {s.get('seed', PAPER_SEED)} + run, metric rule "
        f"{s['rule']}, "
        f"{s['resolution']} resolution ({s['data']['size']} px)"))
    column = spec.columns[-1]
    method = next(m.name for m in spec.methods if m.variant is not None and not m.variant.init)
    commit = next(iter(commits)) if len(commits) == 1 else "<the commit of its results>"
    example = (f"{method} (PANet), {column.title} {METRIC_NAMES[column.metric]}: <value> % "
               f"(95% bootstrap interval over test episodes [<low>, <high>]"
               + (f"; ± std over {len(seeds)} training seeds" if len(seeds) > 1 else "")
               + f"), panet-repro commit {commit}, {protocol}")
    made_by = ([f"commit {provenance.commit}"] if list(commits) == [provenance.commit] else
               [f"results of commit {label}: {', '.join(names)}"
                for label, names in commits.items()])
    episode_seeds = _distinct(results.values(), lambda s: str(s.get("seed", PAPER_SEED)))
    lines = [*made_by, f"training seeds {', '.join(map(str, seeds))}; test episodes from seed "
             f"{episode_seeds} + run (the same episodes for every model and seed)",
             f"protocol: {protocol}",
             "the interval covers the sampling of test episodes given the trained models, not "
             "the randomness of training (that is the ± over seeds)"]
    return lines, example
