"""The exactness contract's tolerances (docs/performance.md, "What is exact"), in one place.

Bitwise equality is asserted only where it is the same computation on the same machine
(resume, reruns): torch promises no bitwise batch invariance, so per-episode functions batched
differently (pooling, prototypes, cosine head, upsampling) are compared to float32 rounding in
test_model.py. Encoder features of images batched differently (test.batch_size, the
encode-once path, several processes) or computed on another device agree to float rounding
only, and so do the logits and predictions built on them. There the tests compare:

- logits (alpha * cosine, in [-20, 20]) within LOGIT_ATOL,
- predictions (argmax) on at least PIXEL_AGREEMENT of the pixels (a near-tie may flip),
- every IoU of results.json (fractions) within RESULT_ATOL.

precision=bf16 (docs/precision.md) is another computation, compared with float32 to bfloat16's
rounding: 8 significant bits, a relative error of up to 2^-9 per rounding, compounded over the
convolutions of an encoder (8 in the small one, 13 in VGG-16; measured: up to 1e-2 of the
largest feature):

- features within BF16_FEATURE_RTOL of the largest |feature|,
- logits within BF16_LOGIT_ATOL (1% of the [-20, 20] range; measured up to 0.03 on tiny models),
- predictions on at least BF16_PIXEL_AGREEMENT of the pixels (measured 99.8%).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Dict, Iterator

import numpy as np
import torch

import panet.evaluation.episodes
import panet.evaluation.images

LOGIT_ATOL = 1e-3
PIXEL_AGREEMENT = 0.999
RESULT_ATOL = 1e-3  # 0.1 IoU points
BF16_FEATURE_RTOL = 3e-2
BF16_LOGIT_ATOL = 0.2
BF16_PIXEL_AGREEMENT = 0.99
COMPARED = ("mean_iou", "mean_iou_std", "binary_iou", "binary_iou_std", "class_iou",
            "class_iou_std", "mean_iou_runs", "binary_iou_runs", "class_iou_runs")


@contextmanager
def recorded_logits(monkeypatch) -> Iterator[Dict[tuple, torch.Tensor]]:
    """Every query's (1 + W) x h x w logits scored while active, by (run, episode, query): the
    one function both evaluation paths score through (`score_query`) is wrapped."""
    recorded: Dict[tuple, torch.Tensor] = {}
    score = panet.evaluation.episodes.score_query

    def recording(meter, logits_low, target, class_ids, key):
        recorded[tuple(key)] = logits_low.detach().cpu().clone()
        score(meter, logits_low, target, class_ids, key)

    with monkeypatch.context() as patch:
        patch.setattr(panet.evaluation.episodes, "score_query", recording)
        patch.setattr(panet.evaluation.images, "score_query", recording)
        yield recorded


def assert_logits_close(a: Dict[tuple, torch.Tensor], b: Dict[tuple, torch.Tensor],
                        atol: float = LOGIT_ATOL, agreement: float = PIXEL_AGREEMENT) -> None:
    """The same queries; logits within `atol`; argmax equal on `agreement` of the pixels."""
    assert a.keys() == b.keys() and a, "the two evaluations scored different queries"
    worst = max(float((a[key] - b[key]).abs().max()) for key in a)
    assert worst <= atol, f"logits differ by {worst:.2e} > {atol}"
    agree = sum(int((a[key].argmax(0) == b[key].argmax(0)).sum()) for key in a)
    pixels = sum(a[key][0].numel() for key in a)
    assert agree >= agreement * pixels, f"predictions agree on {agree} of {pixels} pixels"


def _numbers(value) -> list:
    """The numbers of a results.json entry, in key order (null -> NaN)."""
    if isinstance(value, dict):
        return [x for key in sorted(value) for x in _numbers(value[key])]
    if isinstance(value, list):
        return [x for item in value for x in _numbers(item)]
    return [math.nan if value is None else float(value)]


def assert_results_close(a: dict, b: dict) -> None:
    """Every IoU number of two results.json within RESULT_ATOL (NaN where both are NaN)."""
    for key in COMPARED:
        left, right = np.array(_numbers(a[key])), np.array(_numbers(b[key]))
        assert left.shape == right.shape, key
        assert np.allclose(left, right, rtol=0, atol=RESULT_ATOL, equal_nan=True), (
            f"{key}: differs by {np.nanmax(np.abs(left - right)):.2e} > {RESULT_ATOL}")
    assert not math.isnan(a["binary_iou"])


def assert_counts_close(a: np.ndarray, b: np.ndarray) -> None:
    """Two accumulated TP/FP/FN arrays of the same queries: their difference is at most the
    pixels a (1 - PIXEL_AGREEMENT) share of flipped predictions can move."""
    assert a.shape == b.shape
    moved = int(np.abs(a.astype(np.int64) - b.astype(np.int64)).sum())
    assert moved <= 3 * (1 - PIXEL_AGREEMENT) * int(a.sum()) + 1, f"counts moved by {moved}"
