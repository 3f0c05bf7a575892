"""Per-episode records, bootstrap intervals and paired comparisons (panet/statistics.py) against
hand-made sets of episodes whose exact distribution is known."""

import itertools
import math
import warnings

import numpy as np
import pytest

from panet.evaluation.metrics import IoUMeter, episode_counts, iou_from_counts
from panet.report.statistics import (SEED_DRAWS, EpisodeRecords, bootstrap_intervals,
                                     bootstrap_seed, fold_averaged_comparison, mismatch,
                                     paired_comparison, resample_weights)

CLASSES = [1, 2, 3]


def record_rows(counts_per_episode, class_of_episode, run=0, query_prefix="q"):
    """One query per episode: counts (1 + 1) x 3 for a 1-way episode of the given class."""
    return [{"run": run, "episode": e, "query": 0, "class_ids": [class_of_episode[e]],
             "counts": counts, "query_ids": f"{query_prefix}{e}",
             "support_ids": [[f"s{e}"]]} for e, counts in enumerate(counts_per_episode)]


def test_records_add_up_to_the_meter_counts_and_its_summary():
    rng = np.random.default_rng(0)
    meter = IoUMeter(CLASSES, n_runs=2, rule="corrected")
    rows = []
    for run in range(2):
        for episode in range(6):
            ways = rng.choice(CLASSES, size=2, replace=False).tolist()
            for query in range(2):
                pred = rng.integers(0, 3, size=(7, 9))
                target = rng.integers(0, 3, size=(7, 9))
                target[0, :3] = 255
                meter.update(pred, target, ways, run=run)
                rows.append({"run": run, "episode": episode, "query": query, "class_ids": ways,
                             "counts": episode_counts(pred, target, 3, "corrected"),
                             "query_ids": f"q{run}{episode}{query}",
                             "support_ids": [["a"], ["b"]]})
    records = EpisodeRecords.from_rows(rows[::-1])  # order does not matter
    np.testing.assert_array_equal(records.class_counts(CLASSES).sum(axis=1), meter.counts)
    recomputed = iou_from_counts(records.class_counts(CLASSES).sum(axis=1))
    summary = meter.summary()
    assert recomputed["mean_iou"].tolist() == summary["mean_iou_runs"]
    assert recomputed["binary_iou"].tolist() == summary["binary_iou_runs"]


def test_records_file_round_trip(tmp_path):
    rows = record_rows([np.array([[5, 1, 2], [3, 2, 1]])] * 3, [1, 2, 3])
    records = EpisodeRecords.from_rows(rows)
    loaded = EpisodeRecords.load(records.save(tmp_path / "episodes.npz"))
    assert mismatch(records, loaded) is None
    np.testing.assert_array_equal(loaded.counts, records.counts)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not an episode-records file"):
        EpisodeRecords.load(tmp_path / "bad.npz")


def test_resample_weights_draw_each_run_with_replacement():
    weights = resample_weights(n_runs=3, n_episodes=10, n_resamples=50, seed=1)
    assert weights.shape == (50, 3, 10) and (weights.sum(axis=2) == 10).all()
    assert np.array_equal(weights, resample_weights(3, 10, 50, seed=1))  # fixed seed


def test_identical_episodes_give_a_zero_width_interval():
    counts = np.array([[40, 5, 3], [20, 3, 5]])
    records = EpisodeRecords.from_rows(record_rows([counts] * 12, [1, 2, 3] * 4))
    intervals = bootstrap_intervals(records, CLASSES, n_resamples=200)
    point = iou_from_counts(records.class_counts(CLASSES).sum(axis=1))
    for name in ("mean_iou", "binary_iou"):
        low, high = intervals[f"{name}_ci"]
        assert low == pytest.approx(high) == pytest.approx(float(point[name].mean()))


def test_two_models_differing_on_one_episode_match_the_exact_distribution():
    """A equals B except on episode j, so A - B depends only on k, the number of times j is
    drawn: k ~ Binomial(E, 1/E). The interval's ends are the quantiles of that distribution."""
    n_episodes, n_resamples = 20, 20000
    same = np.array([[50, 10, 10], [30, 10, 10]])
    better = np.array([[58, 2, 2], [38, 2, 2]])  # episode j: fewer errors for model A
    b = EpisodeRecords.from_rows(record_rows([same] * n_episodes, [1] * n_episodes))
    a = EpisodeRecords.from_rows(record_rows([better] + [same] * (n_episodes - 1),
                                             [1] * n_episodes))

    def difference(k):  # exact A - B mean-IoU (one class) when j is drawn k times
        total_a = (n_episodes - k) * same + k * better
        return (iou_from_counts(total_a[None])["mean_iou"]
                - iou_from_counts(n_episodes * same[None])["mean_iou"]).item()

    pmf = [math.comb(n_episodes, k) * (1 / n_episodes) ** k * (1 - 1 / n_episodes) ** (
        n_episodes - k) for k in range(n_episodes + 1)]
    cdf = np.cumsum(pmf)
    low_k, high_k = int(np.searchsorted(cdf, 0.025)), int(np.searchsorted(cdf, 0.975))
    result = paired_comparison(a, b, [1], n_resamples)["overall"]["mean_iou"]
    assert result["difference"] == pytest.approx(difference(1))
    assert result["ci"] == pytest.approx([difference(low_k), difference(high_k)])
    # p-value: resamples with A - B <= 0 are those with k = 0
    expected_p = 2 * (pmf[0] * n_resamples + 1) / (n_resamples + 1)
    assert result["p_value"] == pytest.approx(expected_p, abs=4 * math.sqrt(
        pmf[0] * (1 - pmf[0]) / n_resamples) * 2)


def test_comparison_refuses_different_episode_lists():
    counts = np.array([[5, 1, 2], [3, 2, 1]])
    a = EpisodeRecords.from_rows(record_rows([counts] * 4, [1, 2, 3, 1]))
    b = EpisodeRecords.from_rows(record_rows([counts] * 4, [1, 2, 3, 1], query_prefix="x"))
    with pytest.raises(ValueError, match="did not see identical episodes.*query q0 / x0"):
        paired_comparison(a, b, CLASSES, 10)
    c = EpisodeRecords.from_rows(record_rows([counts] * 3, [1, 2, 3]))
    assert "4 query records against 3" in mismatch(a, c)


# ---- several models per side (training seeds) -------------------------------------------------

def naive_mean_iou(episode_counts, classes_of_episodes, drawn):
    """Mean-IoU of the episodes `drawn` (indices, with repeats), by loops: per class, TP / (TP +
    FP + FN) of its foreground rows summed over the drawn episodes of that class; classes no drawn
    episode holds are left out."""
    ious = []
    for class_id in sorted(set(classes_of_episodes)):
        rows = [episode_counts[e][1] for e in drawn if classes_of_episodes[e] == class_id]
        tp, fp, fn = (sum(row[i] for row in rows) for i in range(3))
        if tp + fp + fn:
            ious.append(tp / (tp + fp + fn))
    return sum(ious) / len(ious)


def model_records(episode_counts, classes_of_episodes):
    return EpisodeRecords.from_rows(record_rows([np.array(c) for c in episode_counts],
                                                classes_of_episodes))


def episode_counts_of(tp_fg):
    """1-way episodes whose foreground has the given TPs (and fixed errors)."""
    return [[[60, 4, 4], [tp, 10, 6]] for tp in tp_fg]


def test_seed_and_episode_interval_matches_the_exact_distribution():
    """3 models of A (training seeds) against 1 of B over 3 episodes: each resample draws 3 of
    A's models and 3 episodes with replacement, 27 x 27 equally likely outcomes. The interval's
    ends are the exact distribution's quantiles, the p-value its share of A - B <= 0."""
    classes = [1, 2, 1]
    a_models = [episode_counts_of(tp) for tp in ([29, 29, 28], [36, 37, 7], [4, 5, 29])]
    b_model = episode_counts_of([15, 15, 15])
    outcomes = []
    for picks in itertools.product(range(3), repeat=3):
        for drawn in itertools.product(range(3), repeat=3):
            a_value = np.mean([naive_mean_iou(a_models[m], classes, drawn) for m in picks])
            outcomes.append(a_value - naive_mean_iou(b_model, classes, drawn))
    outcomes = np.sort(outcomes)
    cdf = np.arange(1, len(outcomes) + 1) / len(outcomes)
    low, high = (outcomes[np.searchsorted(cdf, q)] for q in (0.025, 0.975))
    for q, atom in ((0.025, low), (0.975, high)):  # no atom's cdf close to q: percentiles settle
        assert (outcomes < atom).mean() < q - 0.005 and (outcomes <= atom).mean() > q + 0.005

    n = 20000
    result = paired_comparison([model_records(m, classes) for m in a_models],
                               model_records(b_model, classes), [1, 2], n)["overall"]["mean_iou"]
    everything = tuple(range(3))
    observed = [naive_mean_iou(m, classes, everything) for m in a_models]
    assert result["a_models"] == pytest.approx(observed)
    assert result["difference"] == pytest.approx(
        np.mean(observed) - naive_mean_iou(b_model, classes, everything))
    assert result["ci"] == pytest.approx([low, high])
    share = min((outcomes <= 0).mean(), (outcomes >= 0).mean())
    assert result["p_value"] == pytest.approx(2 * share, abs=8 * math.sqrt(share / n))
    assert result["ci_episodes"][1] - result["ci_episodes"][0] < high - low  # seeds add width


EPISODE_CLASSES = [1, 2, 2, 1]  # two runs of two episodes, the class of each


def random_side(rng, n_models):
    """`n_models` models' counts: 4 episodes, background and foreground TP, FP, FN each."""
    return [[[rng.integers(1, 40, 3).tolist(), rng.integers(0, 40, 3).tolist()]
             for _ in range(4)] for _ in range(n_models)]


def side_records(side):
    return [EpisodeRecords.from_rows(
        record_rows([np.array(c) for c in m[:2]], EPISODE_CLASSES[:2])
        + record_rows([np.array(c) for c in m[2:]], EPISODE_CLASSES[2:], run=1)) for m in side]


def loop_differences(sides, n, seed):
    """n x 4 resampled A - B of [overall binary-IoU, each run's, ..., class 1, class 2],
    recomputed by loops from the draws the docstring names: episodes from
    resample_weights(seed), models from default_rng((seed, SEED_DRAWS))."""
    classes = EPISODE_CLASSES

    def run_ious(model, run, drawn):
        """[binary-IoU, IoU of class 1, IoU of class 2] of one run's drawn episodes."""
        counts = np.zeros((3, 3))  # background, class 1, class 2
        for e in drawn:
            counts[0] += model[2 * run + e][0]
            counts[classes[2 * run + e]] += model[2 * run + e][1]
        ious = [c[0] / c.sum() if c.sum() else np.nan for c in counts]
        foreground = counts[1:].sum(axis=0)
        return [(ious[0] + foreground[0] / foreground.sum()) / 2, *ious[1:]]

    def statistics(model, drawn):  # overall binary-IoU, each run's, each class's
        runs = np.array([run_ious(model, run, drawn[run]) for run in range(2)])
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a class no drawn episode holds
            return [runs[:, 0].mean(), *runs[:, 0], *np.nanmean(runs[:, 1:], axis=0)]

    weights = resample_weights(2, 2, n, seed)
    picks_rng = np.random.default_rng((seed, SEED_DRAWS))
    picks = [picks_rng.integers(0, len(side), size=(n, len(side))) for side in sides]
    differences = []
    for i in range(n):
        drawn = [[e for e in range(2) for _ in range(weights[i, run, e])] for run in range(2)]
        value = [np.mean([statistics(side[m], drawn) for m in picks[s][i]], axis=0)
                 for s, side in enumerate(sides)]
        differences.append(value[0] - value[1])
    return np.array(differences)


def test_seed_and_episode_interval_follows_its_documented_draws():
    """Every statistic of every resample (overall, per run, per class) recomputed by loops."""
    rng = np.random.default_rng(4)
    sides = [random_side(rng, 3), random_side(rng, 2)]
    n, seed = 300, 7
    result = paired_comparison(*map(side_records, sides), [1, 2], n, seed)
    differences = loop_differences(sides, n, seed)
    expected = np.nanpercentile(differences, [2.5, 97.5], axis=0).T
    entries = [result["overall"]["binary_iou"], *(run["binary_iou"] for run in result["runs"]),
               result["classes"][1], result["classes"][2]]
    assert np.isnan(differences).any()  # some resample holds no episode of a class
    for entry, interval in zip(entries, expected):
        assert entry["ci"] == pytest.approx(interval.tolist())


def test_the_mean_over_folds_averages_each_folds_own_draws():
    """Two folds, each resampled with its own seed (bootstrap_seed(fold)): the fold-averaged
    difference is the mean of the folds' differences, its interval the percentiles of the mean
    of the folds' loop-recomputed resampled differences; one fold gives paired_comparison's."""
    rng = np.random.default_rng(11)
    folds = {fold: [random_side(rng, 2), random_side(rng, 2)] for fold in (0, 3)}
    n = 200
    averaged = fold_averaged_comparison(
        [(*map(side_records, sides), [1, 2], bootstrap_seed(fold))
         for fold, sides in folds.items()], n)["binary_iou"]
    singles = {fold: paired_comparison(*map(side_records, sides), [1, 2], n,
                                       bootstrap_seed(fold))["overall"]["binary_iou"]
               for fold, sides in folds.items()}
    assert averaged["difference"] == pytest.approx(
        np.mean([entry["difference"] for entry in singles.values()]))
    assert averaged["a_models"] == pytest.approx([entry["a"] for entry in singles.values()])
    mean_draws = np.mean([loop_differences(sides, n, bootstrap_seed(fold))[:, 0]
                          for fold, sides in folds.items()], axis=0)
    assert averaged["ci"] == pytest.approx(np.percentile(mean_draws, [2.5, 97.5]).tolist())
    one = fold_averaged_comparison([(*map(side_records, folds[3]), [1, 2], bootstrap_seed(3))],
                                   n)["binary_iou"]
    assert one["ci"] == pytest.approx(singles[3]["ci"])
    assert one["p_value"] == pytest.approx(singles[3]["p_value"])


def test_identical_models_add_nothing_over_seeds_and_sides_refuse_other_episodes():
    classes = [1, 2, 1, 2]
    a = model_records(episode_counts_of([30, 5, 12, 9]), classes)
    b = model_records(episode_counts_of([10, 15, 11, 20]), classes)
    result = paired_comparison([a, a, a], [b, b], [1, 2], 500)["overall"]["mean_iou"]
    assert result["ci"] == pytest.approx(result["ci_episodes"])
    single = paired_comparison(a, b, [1, 2], 500)["overall"]["mean_iou"]
    assert single["ci"] == pytest.approx(result["ci"]) and single["ci"] == single["ci_episodes"]
    other = EpisodeRecords.from_rows(record_rows([np.array(c) for c in
                                                  episode_counts_of([1, 2, 3, 4])], [2, 1, 1, 2]))
    with pytest.raises(ValueError, match=r"identical episodes \(A2 against A1\)"):
        paired_comparison([a, other], [b], [1, 2], 10)
