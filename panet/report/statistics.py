"""Numbers you can cite: per-episode records of a test, bootstrap intervals, paired comparisons.

Shape letters: R runs, E episodes per run, N query records, W ways, S shots, K the test classes
of the fold (slot 0 of a class axis is the background), M models (training seeds) of a side,
n resamples, T the statistics a comparison reports.

*Records* keep every query's TP/FP/FN counts per episode label (PROTOCOL §9) with the episode's
class and image ids, so any IoU statistic is recomputed without the model. A *bootstrap*
resample draws, in every run, E of its episodes with replacement (fixed seed) and computes the
IoUs as the metric does (`iou_from_counts`); the 95% interval covers which episodes were
sampled, not training randomness. A *paired comparison* resamples tests of identical episodes
with the same draws, and each side's models with replacement among its own; the p-value of "no
difference" is twice the smaller share of resampled differences on either side of 0, counting
the observed draw ((k + 1) / (n + 1)), capped at 1 (docs/reporting.md).
"""

from __future__ import annotations

import warnings
import zipfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from panet.base.files import PathLike, atomic_write
from panet.evaluation.metrics import iou_from_counts

BOOTSTRAP_SEED = 0
SEED_DRAWS = 1  # the seed draws of a comparison come from default_rng((seed, SEED_DRAWS))
CONFIDENCE = 0.95
METRICS = ("mean_iou", "binary_iou")  # what a comparison reports, with each class's IoU


@dataclass
class EpisodeRecords:
    """The per-query counts of a test. N records, in any order.

    run, episode, query: N int64; class_ids: N x W int64 global ids of the episode's ways;
    counts: N x (1 + W) x 3 int64 TP, FP, FN of [background, way 1, ..., way W]; query_ids: N
    str; support_ids: N x W x S str (the ids the episode list sampled); query_paths,
    support_paths: the same images as paths relative to data.root (older records: the ids).
    """

    run: np.ndarray
    episode: np.ndarray
    query: np.ndarray
    class_ids: np.ndarray
    counts: np.ndarray
    query_ids: np.ndarray
    support_ids: np.ndarray
    query_paths: np.ndarray
    support_paths: np.ndarray

    def __post_init__(self):
        n = len(self.run)
        if any(len(getattr(self, f.name)) != n for f in fields(self)):
            raise ValueError("every field of EpisodeRecords needs one entry per query record")

    @classmethod
    def from_rows(cls, rows: Sequence[dict]) -> "EpisodeRecords":
        """From dicts with the field names as keys (one per query; paths default to ids)."""
        return cls(**{f.name: np.asarray([row.get(f.name, row.get(_ids_of(f.name)))
                                          for row in rows]) for f in fields(cls)})

    def sorted(self) -> "EpisodeRecords":
        """The records in (run, episode, query) order (DDP ranks record them interleaved)."""
        order = np.lexsort((self.query, self.episode, self.run))
        return EpisodeRecords(**{f.name: getattr(self, f.name)[order] for f in fields(self)})

    def save(self, path: PathLike) -> Path:
        """Write a compressed .npz (atomically, umask permissions)."""
        with atomic_write(path) as file:
            np.savez_compressed(file, **{f.name: getattr(self, f.name) for f in fields(self)})
        return Path(path)

    @classmethod
    def load(cls, path: PathLike) -> "EpisodeRecords":
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as stored:
                return cls(**{f.name: stored[f.name if f.name in stored else _ids_of(f.name)]
                              for f in fields(cls)})
        except (OSError, EOFError, zipfile.BadZipFile, KeyError, ValueError) as error:
            why = "empty" if isinstance(error, EOFError) else str(error)
            raise ValueError(f"{path} is not an episode-records file of test.py ({why}): run "
                             "its test again") from None

    @property
    def n_runs(self) -> int:
        return int(self.run.max()) + 1

    def class_counts(self, class_ids: Sequence[int]) -> np.ndarray:
        """R x E x (1 + K) x 3 counts per run, episode and class (slot 0 background, slot k the
        k-th of `class_ids`): each query's label rows added to its episode's class slots."""
        slot = {int(c): k + 1 for k, c in enumerate(class_ids)}
        slots = np.array([[0, *map(slot.__getitem__, way_classes)]
                          for way_classes in self.class_ids.tolist()], dtype=np.int64)  # N x (1+W)
        out = np.zeros((self.n_runs, int(self.episode.max()) + 1, 1 + len(slot), 3), dtype=np.int64)
        np.add.at(out, (self.run[:, None], self.episode[:, None], slots), self.counts)
        return out

    def episode_keys(self) -> List[tuple]:
        """Per record its run, episode, query, classes, query and supports."""
        return list(zip(self.run.tolist(), self.episode.tolist(), self.query.tolist(),
                        self.class_ids.tolist(), self.query_ids.tolist(),
                        self.support_ids.tolist()))


def _ids_of(field: str) -> str:
    """The id field standing in for a path field that older records lack."""
    return field.replace("_paths", "_ids")


Side = Union[EpisodeRecords, Sequence[EpisodeRecords]]  # one test, or one per training seed


def records_of_test(query_records: Sequence, episode_lists: Sequence[Sequence],
                    path_of: Callable[[str], str] = str) -> EpisodeRecords:
    """EpisodeRecords from an `IoUMeter`'s kept `records` and each run's episode list
    (`panet.data.Episode`s); `path_of`: an image id's file relative to data.root."""
    rows = []
    for run, episode, query, class_ids, counts in query_records:
        sampled = episode_lists[run][episode]
        query_id = sampled.queries()[query][1]
        rows.append({"run": run, "episode": episode, "query": query, "class_ids": class_ids,
                     "counts": counts, "query_ids": query_id, "support_ids": sampled.support_ids,
                     "query_paths": path_of(query_id),
                     "support_paths": [[path_of(i) for i in way] for way in sampled.support_ids]})
    return EpisodeRecords.from_rows(rows).sorted()


def mismatch(a: EpisodeRecords, b: EpisodeRecords) -> Optional[str]:
    """Why two records are not over identical episodes (None when they are)."""
    keys_a, keys_b = a.sorted().episode_keys(), b.sorted().episode_keys()
    if len(keys_a) != len(keys_b):
        return f"{len(keys_a)} query records against {len(keys_b)}"
    for key_a, key_b in zip(keys_a, keys_b):
        if key_a != key_b:
            return (f"run {key_a[0]} episode {key_a[1]} query {key_a[2]} differs: classes "
                    f"{key_a[3]} / {key_b[3]}, query {key_a[4]} / {key_b[4]}, supports "
                    f"{key_a[5]} / {key_b[5]}")
    return None


def resample_weights(n_runs: int, n_episodes: int, n_resamples: int,
                     seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """n_resamples x R x E: how often each episode of each run is drawn in each resample
    (E draws with replacement per run)."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_episodes, size=(n_resamples, n_runs, n_episodes))
    weights = np.zeros((n_resamples, n_runs, n_episodes), dtype=np.int64)
    np.add.at(weights, (np.arange(n_resamples)[:, None, None], np.arange(n_runs)[None, :, None],
                        draws), 1)
    return weights


def resampled_ious(episode_counts: np.ndarray, weights: np.ndarray) -> Dict[str, np.ndarray]:
    """`iou_from_counts` of each resample: episode_counts ... x R x E x (1 + K) x 3 (e.g. one
    per model), weights n x R x E -> arrays ... x n x R (class_iou ... x n x R x (1 + K))."""
    return iou_from_counts(np.einsum("nre,...rekc->...nrkc", weights, episode_counts))


def percentile_interval(values: np.ndarray) -> List[float]:
    """The 95% percentile interval [low, high] of `values` (NaNs left out)."""
    return _intervals(np.asarray(values)[:, None])[0].tolist()


def _intervals(values: np.ndarray) -> np.ndarray:
    """n x T values -> T x 2: the 95% percentile interval of each column (NaNs left out)."""
    tail = 100 * (1 - CONFIDENCE) / 2
    with warnings.catch_warnings():  # a class no resampled episode holds: NaN, left out
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanpercentile(values, [tail, 100 - tail], axis=0).T


def bootstrap_seed(fold: int) -> int:
    """The resampling seed of a test of `fold`: each fold's episodes are resampled with their
    own draws, so intervals of a mean over folds treat the folds as independent."""
    return BOOTSTRAP_SEED + fold


def resampled_run_means(records: EpisodeRecords, class_ids: Sequence[int], n_resamples: int,
                        seed: int) -> Dict[str, np.ndarray]:
    """Mean-IoU and binary-IoU (mean over runs) of `n_resamples` bootstrap resamples of the
    episodes: arrays of n_resamples values. Tests of the same episodes resampled with the same
    `seed` get the same draws (paired)."""
    episode_counts = records.class_counts(class_ids)
    ious = resampled_ious(episode_counts, resample_weights(*episode_counts.shape[:2],
                                                           n_resamples, seed))
    return {name: ious[name].mean(axis=-1) for name in METRICS}


def bootstrap_intervals(records: EpisodeRecords, class_ids: Sequence[int], n_resamples: int,
                        seed: int = BOOTSTRAP_SEED) -> Dict[str, List[float]]:
    """`mean_iou_ci` and `binary_iou_ci`: 95% bootstrap intervals over episodes of the mean over
    runs."""
    resampled = resampled_run_means(records, class_ids, n_resamples, seed)
    return {f"{name}_ci": percentile_interval(values) for name, values in resampled.items()}


def p_value(differences: np.ndarray) -> np.ndarray:
    """Two-sided bootstrap p-value of 'no difference' (module docstring) of each column of
    n x T resampled differences (NaNs left out): T values."""
    n = np.count_nonzero(~np.isnan(differences), axis=0)
    below, above = (differences <= 0).sum(axis=0), (differences >= 0).sum(axis=0)
    return np.minimum(1.0, 2 * (np.minimum(below, above) + 1) / (n + 1))


def _statistics(ious: Dict[str, np.ndarray]) -> np.ndarray:
    """What a comparison reports, from `iou_from_counts` arrays ... x R: ... x T columns, in
    order: mean- and binary-IoU (mean over runs), each run's mean-IoU, each run's binary-IoU,
    each class's IoU (mean over the runs that evaluated it)."""
    classes = np.nanmean(ious["class_iou"][..., 1:], axis=-2)  # ... x K
    overall = [ious[name].mean(axis=-1, keepdims=True) for name in METRICS]
    return np.concatenate([*overall, *(ious[name] for name in METRICS), classes], axis=-1)


def _entries(a: np.ndarray, b: np.ndarray, drawn: np.ndarray, fixed: np.ndarray
             ) -> List[Dict[str, Any]]:
    """One entry per statistic column: a, b (models x T observed), drawn and fixed (n x T
    resampled differences, with models drawn / with every model)."""
    ci, ci_episodes, p_values = _intervals(drawn), _intervals(fixed), p_value(drawn)
    return [{"a": float(a[:, s].mean()), "b": float(b[:, s].mean()),
             "difference": float(a[:, s].mean() - b[:, s].mean()), "ci": ci[s].tolist(),
             "p_value": float(p_values[s]), "ci_episodes": ci_episodes[s].tolist(),
             "a_models": a[:, s].tolist(), "b_models": b[:, s].tolist()}
            for s in range(a.shape[1])]


def _resampled_differences(a: Side, b: Side, class_ids: Sequence[int], n_resamples: int,
                           seed: int) -> Tuple[List[np.ndarray], np.ndarray, np.ndarray]:
    """(each side's observed statistics, models x T; the n x T resampled differences A - B of
    the drawn models' means; the n x T differences with every model) of `paired_comparison`."""
    sides = [[side] if isinstance(side, EpisodeRecords) else list(side) for side in (a, b)]
    if not (sides[0] and sides[1]):
        raise ValueError("each side of a comparison needs at least one test")
    for letter, side in zip("AB", sides):
        for index, records in enumerate(side):
            why = mismatch(sides[0][0], records)
            if why is not None:
                raise ValueError(f"the tests did not see identical episodes ({letter}{index + 1} "
                                 f"against A1): {why}")
    counts = [np.stack([records.class_counts(class_ids) for records in side])
              for side in sides]  # per side M x R x E x (1 + K) x 3
    weights = resample_weights(*counts[0].shape[1:3], n_resamples, seed)  # n x R x E, shared
    rng = np.random.default_rng((seed, SEED_DRAWS))
    picks = [rng.integers(0, len(side), size=(n_resamples, len(side))) for side in sides]
    with warnings.catch_warnings():  # a class no resampled episode holds: NaN, left out
        warnings.simplefilter("ignore", RuntimeWarning)
        observed = [_statistics(iou_from_counts(c.sum(axis=2))) for c in counts]  # M x T
        resampled = [_statistics(resampled_ious(c, weights)) for c in counts]  # M x n x T
    drawn = [r[p, np.arange(n_resamples)[:, None]].mean(axis=1)  # n x T
             for r, p in zip(resampled, picks)]
    return observed, drawn[0] - drawn[1], resampled[0].mean(axis=0) - resampled[1].mean(axis=0)


def fold_averaged_comparison(folds: Sequence[Tuple[Side, Side, Sequence[int], int]],
                             n_resamples: int) -> Dict[str, Dict[str, Any]]:
    """A - B of the mean over folds (overall mean- and binary-IoU), `folds` one (a, b, class
    ids, bootstrap seed) per fold, each resampled with its own draws and the resampled
    differences averaged over the folds. Returns {metric: entry} (`paired_comparison`'s
    entries; `a_models` / `b_models`: each fold's mean over its models)."""
    per_fold = [_resampled_differences(a, b, classes, n_resamples, seed)
                for a, b, classes, seed in folds]
    means = [np.array([observed[side].mean(axis=0)[:2] for observed, _, _ in per_fold])
             for side in (0, 1)]  # per side: folds x 2
    drawn = np.mean([d[:, :2] for _, d, _ in per_fold], axis=0)  # n x 2
    fixed = np.mean([f[:, :2] for _, _, f in per_fold], axis=0)
    return dict(zip(METRICS, _entries(means[0], means[1], drawn, fixed)))


def paired_comparison(a: Side, b: Side, class_ids: Sequence[int], n_resamples: int,
                      seed: int = BOOTSTRAP_SEED) -> Dict[str, Any]:
    """Differences A - B over identical episodes (a side: one test, or one per training seed,
    its value their mean), overall (mean over runs), per run and per class. Each resample draws
    the episodes (`resample_weights(seed)`, shared) and each side's models with replacement
    (`default_rng((seed, SEED_DRAWS))`): `ci` and `p_value` come from the differences of the
    drawn models' means, `ci_episodes` keeps every model.

    Returns {"overall": {metric: entry}, "runs": [{metric: entry}, ...], "classes": {class id:
    entry}}, entries {"a", "b", "difference", "ci", "p_value", "ci_episodes", "a_models",
    "b_models"} (fractions). ValueError when a side is empty or the episodes differ.
    """
    observed, drawn, fixed = _resampled_differences(a, b, class_ids, n_resamples, seed)
    entries = _entries(*observed, drawn, fixed)
    runs = (len(entries) - 2 - len(class_ids)) // 2
    return {"overall": dict(zip(METRICS, entries[:2])),
            "runs": [{"mean_iou": entries[2 + r], "binary_iou": entries[2 + runs + r]}
                     for r in range(runs)],
            "classes": dict(zip(map(int, class_ids), entries[2 + 2 * runs:]))}


def interval_coverage(n_a: int, n_b: int, n_resamples: int) -> str:
    """What the interval of `paired_comparison` covers, in words, for n_a and n_b models
    (training seeds) per side."""
    if n_a == n_b == 1:
        return (f"The 95% interval covers the test episodes only ({n_resamples} resamples of "
                "each run's episodes with replacement, the same draws for both sides). It does "
                "not cover training randomness: give each side the tests of several training "
                "seeds (A1 A2 ... --vs B1 B2 ...) to cover it.")
    single = [letter for letter, n in (("A", n_a), ("B", n_b)) if n == 1]
    caveat = (f" Side {single[0]} has one model: its training randomness is not covered."
              if single else "")
    return (f"The 95% interval covers training seeds and test episodes: each of the "
            f"{n_resamples} resamples draws each side's models ({n_a} of A, {n_b} of B: its "
            "training seeds) and each run's episodes with replacement (the same episodes for "
            "every model) and takes the difference of the drawn models' means; with few seeds "
            f"the seed part is coarse.{caveat} The interval over episodes only keeps every model.")
