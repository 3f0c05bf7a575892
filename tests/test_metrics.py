"""The IoU meter (PROTOCOL §9) against the released metric's pixel-set definition."""

import json
import statistics

import numpy as np
import pytest
import torch

import reference
from panet.evaluation.metrics import IoUMeter
from panet.report.results import format_table

CLASSES = [6, 7, 8, 9, 10]


def random_queries(n, n_ways, rng, size=(9, 11)):
    """(pred, target, episode class ids) triples; some ways absent from the target."""
    queries = []
    for _ in range(n):
        class_ids = rng.choice(CLASSES, size=n_ways, replace=False).tolist()
        pred = rng.integers(0, n_ways + 1, size)
        target = rng.integers(0, n_ways + 1, size)
        if rng.random() < 0.4:  # a way absent from the ground truth
            target[target == n_ways] = 0
        target[rng.random(size) < 0.15] = 255
        queries.append((pred, target, class_ids))
    return queries


def brute_force(runs, rule):
    """Per run: summed (TP, FP, FN) per global id from pixel sets, then the IoUs by hand."""
    per_run = []
    for queries in runs:
        sums = {}
        for pred, target, class_ids in queries:
            for class_id, counts in reference.iou_counts(pred, target, class_ids, rule).items():
                sums[class_id] = [a + b for a, b in zip(sums.get(class_id, [0, 0, 0]), counts)]
        iou = {c: sums[c][0] / sum(sums[c]) for c in [0] + CLASSES}
        fg = [sum(sums[c][i] for c in CLASSES if c in sums) for i in range(3)]
        per_run.append({"class": iou, "mean": statistics.fmean(iou[c] for c in CLASSES),
                        "binary": (iou[0] + fg[0] / sum(fg)) / 2, "background": iou[0],
                        "foreground": fg[0] / sum(fg)})
    return per_run


@pytest.mark.parametrize("rule", ["released", "corrected"])
@pytest.mark.parametrize("n_ways", [1, 2])
def test_meter_matches_brute_force(rule, n_ways):
    rng = np.random.default_rng(n_ways)
    runs = [random_queries(60, n_ways, rng) for _ in range(3)]
    meter = IoUMeter(CLASSES, n_runs=3, rule=rule)
    for run, queries in enumerate(runs):
        for pred, target, class_ids in queries:
            meter.update(pred, target, class_ids, run=run)
    summary = meter.summary()
    expected = brute_force(runs, rule)
    means = [r["mean"] for r in expected]
    binaries = [r["binary"] for r in expected]
    assert summary["mean_iou_runs"] == pytest.approx(means, rel=1e-12)
    assert summary["mean_iou"] == pytest.approx(statistics.fmean(means), rel=1e-12)
    assert summary["mean_iou_std"] == pytest.approx(statistics.pstdev(means), rel=1e-9)
    assert summary["binary_iou"] == pytest.approx(statistics.fmean(binaries), rel=1e-12)
    assert summary["binary_iou_std"] == pytest.approx(statistics.pstdev(binaries), rel=1e-9)
    for half in ("background", "foreground"):
        values = [r[half] for r in expected]
        assert summary[f"{half}_iou_runs"] == pytest.approx(values, rel=1e-12)
        assert summary[f"{half}_iou"] == pytest.approx(statistics.fmean(values), rel=1e-12)
        assert summary[f"{half}_iou_std"] == pytest.approx(statistics.pstdev(values), rel=1e-9)
    for c in CLASSES:
        values = [r["class"][c] for r in expected]
        assert summary["class_iou"][c] == pytest.approx(statistics.fmean(values), rel=1e-12)
        assert summary["class_iou_std"][c] == pytest.approx(statistics.pstdev(values), rel=1e-9,
                                                            abs=1e-15)


def test_rules_differ_only_by_false_positives_of_absent_ways():
    # 2-way episode, way 2 (class 9) absent from the ground truth but predicted on 4 pixels
    target = np.zeros((4, 4), dtype=np.int64)
    target[:2, :2] = 1
    target[3, 3] = 255
    pred = target.copy()
    pred[3] = 2  # three labelled pixels + the ignored one predicted as the absent way
    released, corrected = IoUMeter([7, 9]), IoUMeter([7, 9], rule="corrected")
    for meter in (released, corrected):
        meter.update(pred, target, [7, 9])
    # background: 16 - 4 (class 7) - 1 (ignored) = 11 pixels, 3 of them predicted as way 2
    assert released.counts[0].tolist() == [[8, 0, 3], [4, 0, 0], [0, 0, 0]]
    assert corrected.counts[0].tolist() == [[8, 0, 3], [4, 0, 0], [0, 3, 0]]
    with pytest.warns(UserWarning, match="never evaluated"):
        summary = released.summary()
    assert summary["class_iou"][7] == 1.0
    assert np.isnan(summary["class_iou"][9])  # never in any ground truth: 0 / 0
    assert corrected.summary()["class_iou"][9] == 0.0


def test_hand_checked_binary_iou():
    target = np.array([[0, 0, 1, 1], [0, 0, 1, 1]])
    pred = np.array([[0, 1, 1, 1], [0, 0, 0, 1]])
    meter = IoUMeter([3])
    meter.update(pred, target, [3])
    # background: TP 3, FP 1, FN 1 -> 3/5; class 3: TP 3, FP 1, FN 1 -> 3/5
    summary = meter.summary()
    assert summary["class_iou"][3] == pytest.approx(0.6)
    assert summary["mean_iou"] == pytest.approx(0.6)
    assert summary["binary_iou"] == pytest.approx(0.6)
    assert summary["mean_iou_std"] == 0.0


def test_background_and_foreground_iou_by_hand():
    """Two runs of classes [3, 5]; counts worked out pixel by pixel (TP, FP, FN)."""
    meter = IoUMeter([3, 5], n_runs=2)
    # run 0, query of class 3: background (3, 1, 1), class 3 (3, 1, 1)
    meter.update(np.array([[0, 1, 1, 1], [0, 0, 0, 1]]), np.array([[0, 0, 1, 1], [0, 0, 1, 1]]),
                 [3], run=0)
    # run 0, query of class 5 without background in its ground truth: background not counted
    # (released rule); class 5 (3, 0, 1)
    meter.update(np.array([[1, 1], [1, 0]]), np.array([[1, 1], [1, 1]]), [5], run=0)
    # run 1, query of class 5 with one void pixel: background (1, 1, 1), class 5 (2, 1, 1)
    meter.update(np.array([[1, 1, 0], [0, 1, 1]]), np.array([[1, 1, 1], [0, 0, 255]]), [5],
                 run=1)
    background = [3 / 5, 1 / 3]
    foreground = [(3 + 3) / (6 + 1 + 2), 2 / 4]  # counts summed over classes, not IoUs averaged
    with pytest.warns(UserWarning, match="never evaluated"):  # class 3 absent from run 1
        summary = meter.summary()
    assert summary["background_iou_runs"] == pytest.approx(background)
    assert summary["foreground_iou_runs"] == pytest.approx(foreground)
    assert summary["background_iou"] == pytest.approx(0.4666666666)
    assert summary["background_iou_std"] == pytest.approx(0.1333333333)
    assert summary["foreground_iou"] == pytest.approx(0.5833333333)
    assert summary["foreground_iou_std"] == pytest.approx(0.0833333333)
    assert summary["binary_iou_runs"] == pytest.approx(
        [(b + f) / 2 for b, f in zip(background, foreground)])
    table = format_table(summary, str, "title").splitlines()
    assert table[-2].split() == ["background", "IoU", "46.7", "+-", "13.3"]
    assert table[-1].split() == ["foreground", "IoU", "58.3", "+-", "8.3"]
    assert json.loads(json.dumps(summary))["foreground_iou_runs"] == pytest.approx(foreground)


def test_accepts_tensors_and_arrays_alike():
    rng = np.random.default_rng(3)
    queries = random_queries(10, 2, rng)
    from_numpy, from_torch = IoUMeter(CLASSES), IoUMeter(CLASSES)
    for pred, target, class_ids in queries:
        from_numpy.update(pred, target, class_ids)
        from_torch.update(torch.from_numpy(pred), torch.from_numpy(target).to(torch.uint8),
                          torch.tensor(class_ids))
    assert np.array_equal(from_numpy.counts, from_torch.counts)


def test_bad_input_is_refused():
    meter = IoUMeter([1, 2])
    with pytest.raises(ValueError, match="not among"):
        meter.update(np.zeros((2, 2), int), np.zeros((2, 2), int), [5])
    with pytest.raises(ValueError, match="labels must lie"):
        meter.update(np.full((2, 2), 2), np.zeros((2, 2), int), [1])  # pred 2 in a 1-way episode
    with pytest.raises(ValueError, match="labels must lie"):
        meter.update(np.zeros((2, 2), int), np.full((2, 2), 7), [1])
    with pytest.raises(ValueError, match="rule"):
        IoUMeter([1], rule="other")


def test_class_never_evaluated_is_reported_not_averaged_as_zero():
    meter = IoUMeter([1, 2], n_runs=2)
    target = np.array([[0, 1], [1, 1]])
    meter.update(target, target, [1], run=0)  # run 0: only class 1, perfect
    meter.update(target, target, [1], run=1)
    meter.update(np.array([[0, 0], [1, 1]]), np.array([[0, 1], [1, 1]]), [2], run=1)
    with pytest.warns(UserWarning, match=r"never evaluated.*\{0: \[2\]\}"):
        summary = meter.summary()
    assert summary["unevaluated"] == {0: [2]}
    assert summary["mean_iou_runs"] == pytest.approx([1.0, (1.0 + 2 / 3) / 2])
    assert np.isnan(summary["class_iou_runs"][2][0])
    assert summary["class_iou"][2] == pytest.approx(2 / 3)  # over the run that evaluated it
    assert summary["class_iou_std"][2] == 0.0
