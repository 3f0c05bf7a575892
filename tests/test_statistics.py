"""Per-episode records, bootstrap intervals and paired comparisons (panet/statistics.py) against
hand-made sets of episodes whose exact distribution is known."""

import math

import numpy as np
import pytest

from panet.metrics import IoUMeter, episode_counts, iou_from_counts
from panet.statistics import (EpisodeRecords, bootstrap_intervals, mismatch, paired_comparison,
                              resample_weights)

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
