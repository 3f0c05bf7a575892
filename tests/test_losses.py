"""Segmentation loss and prototype alignment (PROTOCOL §3-4) against loop references."""

import dataclasses
import itertools
import math

import pytest
import torch

import reference
from panet.models.losses import alignment_loss, panet_loss, segmentation_loss
from panet.models import PANet, vgg16_encoder
from test_model import random_episode, tiny_encoder

COMBOS = list(itertools.product([1, 2], [1, 2], [1, 5], [1, 2]))  # B, W, S, Q
HEAD = PANet(torch.nn.Identity()).score  # PANet's head, alpha = 20: what PAR scores with


def naive_cross_entropy(logits, labels):
    """Mean over non-255 pixels of -log softmax, one pixel at a time. logits: N x P x H x W."""
    total, count = 0.0, 0
    for n, y, x in itertools.product(*(range(s) for s in labels.shape)):
        label = int(labels[n, y, x])
        if label == 255:
            continue
        scores = [float(v) for v in logits[n, :, y, x]]
        total += math.log(sum(math.exp(s) for s in scores)) - scores[label]
        count += 1
    return total / count


@pytest.mark.parametrize("B,Q", [(1, 1), (2, 2)])
def test_segmentation_loss_is_mean_over_labelled_pixels(B, Q):
    g = torch.Generator().manual_seed(B + Q)
    logits = torch.randn(B, Q, 3, 6, 7, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 3, (B, Q, 6, 7), generator=g)
    labels[torch.rand(B, Q, 6, 7, generator=g) < 0.3] = 255
    expected = naive_cross_entropy(logits.flatten(0, 1), labels.flatten(0, 1))
    assert segmentation_loss(logits, labels).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("B,W,S,Q", COMBOS)
def test_alignment_loss_matches_loop_reference(B, W, S, Q):
    encoder = tiny_encoder(seed=B + W + S + Q)
    support_images, fg, bg, query_images, _ = random_episode(B, W, S, Q, seed=10 * B + W + S + Q)
    out = PANet(encoder)(support_images, fg, bg, query_images)
    with torch.no_grad():
        _, logits_low, support, query = reference.forward(encoder, support_images, fg, bg,
                                                          query_images)
        expected = sum(reference.alignment_loss(support[b], query[b], logits_low[b], fg[b], bg[b])
                       for b in range(B)) / B
    found = alignment_loss(out, fg, bg, HEAD).item()
    assert found == pytest.approx(expected.item(), rel=1e-9, abs=1e-12)


def forced_output(W=2, S=2, Q=2, absent_ways=(2,), seed=0):
    """A PANetOutput whose query prediction (argmax of logits_low) never picks `absent_ways`."""
    encoder = tiny_encoder(seed)
    support_images, fg, bg, query_images, _ = random_episode(1, W, S, Q, seed=seed)
    out = PANet(encoder)(support_images, fg, bg, query_images)
    logits_low = out.logits_low.detach().clone()
    for way in absent_ways:
        logits_low[:, :, way] = -1e3
    return dataclasses.replace(out, logits_low=logits_low.requires_grad_()), fg, bg


def reference_loss(out, fg, bg):
    B, W, S = fg.shape[:3]
    support = [[[out.support_features[0, w, s] for s in range(S)] for w in range(W)]]
    query = [[out.query_features[0, q] for q in range(out.query_features.shape[1])]]
    return reference.alignment_loss(support[0], query[0], out.logits_low[0].detach(), fg[0], bg[0])


def test_alignment_skips_ways_predicted_nowhere():
    out, fg, bg = forced_output(absent_ways=(2,))
    assert not (out.logits_low.argmax(dim=2) == 2).any()
    loss = alignment_loss(out, fg, bg, HEAD)
    assert loss.item() == pytest.approx(reference_loss(out, fg, bg).item(), rel=1e-9)
    assert loss.item() > 0
    # the skipped way's supports do not matter at all
    fg2, bg2 = fg.clone(), bg.clone()
    fg2[:, 1], bg2[:, 1] = bg[:, 1], fg[:, 1]
    assert alignment_loss(out, fg2, bg2, HEAD).item() == pytest.approx(loss.item(), rel=1e-12)


def test_alignment_is_zero_when_every_way_is_skipped():
    out, fg, bg = forced_output(absent_ways=(1, 2))
    loss = alignment_loss(out, fg, bg, HEAD)
    assert loss.item() == 0.0
    labels = torch.zeros(1, 2, 23, 29, dtype=torch.long)
    assert panet_loss(out, labels, fg, bg, HEAD).terms["align"].item() == 0.0


def test_no_gradient_through_the_predicted_mask():
    out, fg, bg = forced_output(absent_ways=())
    alignment_loss(out, fg, bg, HEAD).backward()
    assert out.logits_low.grad is None


def test_alignment_of_a_batch_is_the_mean_of_its_episodes():
    encoder = tiny_encoder()
    support_images, fg, bg, query_images, labels = random_episode(2, 2, 1, 1, seed=7)
    model = PANet(encoder)
    batch = panet_loss(model(support_images, fg, bg, query_images), labels, fg, bg, model.score)
    singles = [panet_loss(model(support_images[b:b + 1], fg[b:b + 1], bg[b:b + 1],
                                query_images[b:b + 1]), labels[b:b + 1], fg[b:b + 1], bg[b:b + 1],
                          model.score)
               for b in range(2)]
    singles_mean = sum(s.terms["align"].item() for s in singles) / 2
    assert batch.terms["align"].item() == pytest.approx(singles_mean, rel=1e-10)


def test_total_combines_terms_and_zero_weight_disables_alignment():
    encoder = tiny_encoder()
    support_images, fg, bg, query_images, labels = random_episode(1, 2, 2, 1, seed=3)
    out = PANet(encoder)(support_images, fg, bg, query_images)
    weighted = panet_loss(out, labels, fg, bg, HEAD, align_weight=0.5)
    assert weighted.terms["align"].item() > 0
    seg, align = weighted.terms["seg"].item(), weighted.terms["align"].item()
    assert weighted.total.item() == pytest.approx(seg + 0.5 * align)
    off = panet_loss(out, labels, fg, bg, HEAD, align_weight=0.0)
    assert off.terms["align"].item() == 0.0 and off.total.item() == off.terms["seg"].item()


@pytest.mark.parametrize("term", ["seg", "align"])
def test_gradients_reach_every_vgg16_parameter(term):
    torch.manual_seed(0)
    model = PANet(vgg16_encoder())
    support_images, fg, bg, query_images, labels = [x.float() if x.is_floating_point() else x
                                                    for x in random_episode(1, 1, 2, 1, (64, 72))]
    loss = panet_loss(model(support_images, fg, bg, query_images), labels, fg, bg, model.score)
    loss.terms[term].backward()
    names = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert names == [], f"no gradient from L_{term} reaches {names}"
    assert len(list(model.parameters())) == 26
