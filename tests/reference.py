"""Slow, literal references for PANet's formulas (PROTOCOL §2-4, §9), written as loops.

They follow the protocol's words one step at a time (upsample *then* pool, one cosine map per
prototype, one loss term per way and shot, pixel sets for the metric) so that the vectorised
code in `panet` can be checked against them on random inputs.
"""

import numpy as np
import torch
import torch.nn.functional as F

EPS = 1e-5
ALPHA = 20.0
IGNORE = 255


def pool(features, mask):
    """C x h x w features, H x W mask -> C: upsample features to the mask size, then average."""
    up = F.interpolate(features[None], size=mask.shape, mode="bilinear", align_corners=False)[0]
    return (up * mask).sum(dim=(1, 2)) / (mask.sum() + EPS)


def cosine_map(features, prototype, alpha=ALPHA):
    """C x h x w, C -> h x w logits alpha * cos."""
    return alpha * F.cosine_similarity(features, prototype[:, None, None], dim=0, eps=1e-8)


def prototypes(support_features, fg, bg):
    """One episode. support_features[w][s]: C x h x w; fg, bg: W x S x H x W -> list [p_bg, p_1..]."""
    W, S = fg.shape[:2]
    fg_protos, bg_sum = [], 0
    for w in range(W):
        fg_protos.append(sum(pool(support_features[w][s], fg[w, s]) for s in range(S)) / S)
        bg_sum = bg_sum + sum(pool(support_features[w][s], bg[w, s]) for s in range(S)) / S
    return [bg_sum / W] + fg_protos


def forward(encoder, support_images, fg, bg, query_images):
    """Episode by episode, image by image. Returns (logits B x Q x (1+W) x H x W,
    low-res logits, support features [b][w][s], query features [b][q])."""
    B, W, S = support_images.shape[:3]
    Q = query_images.shape[1]
    size = query_images.shape[-2:]
    logits, logits_low, all_support, all_query = [], [], [], []
    for b in range(B):
        support = [[encoder(support_images[b, w, s][None])[0] for s in range(S)] for w in range(W)]
        query = [encoder(query_images[b, q][None])[0] for q in range(Q)]
        protos = prototypes(support, fg[b], bg[b])
        low = torch.stack([torch.stack([cosine_map(query[q], p) for p in protos]) for q in range(Q)])
        logits_low.append(low)
        logits.append(F.interpolate(low, size=size, mode="bilinear", align_corners=False))
        all_support.append(support)
        all_query.append(query)
    return torch.stack(logits), torch.stack(logits_low), all_support, all_query


def alignment_loss(support_features, query_features, logits_low, fg, bg, alpha=ALPHA):
    """PAR of one episode, as the protocol words it: skip ways predicted nowhere, one
    cross-entropy per (way, shot), each divided by W * S.

    support_features[w][s]: C x h x w; query_features[q]: C x h x w; logits_low: Q x (1+W) x h x w.
    """
    W, S = fg.shape[:2]
    pred = logits_low.argmax(dim=1)  # Q x h x w
    query_protos = []
    for label in range(1 + W):
        total, count = 0, 0
        for q in range(len(query_features)):
            mask = (pred[q] == label).to(query_features[q].dtype)
            total = total + (query_features[q] * mask).sum(dim=(1, 2))
            count = count + mask.sum()
        query_protos.append(total / (count + EPS))
    loss = torch.zeros((), dtype=logits_low.dtype)
    for w in range(W):
        if not (pred == w + 1).any():
            continue
        for s in range(S):
            maps = [cosine_map(support_features[w][s], query_protos[j], alpha) for j in (0, w + 1)]
            up = F.interpolate(torch.stack(maps)[None], size=fg.shape[-2:], mode="bilinear",
                               align_corners=False)
            label = torch.full(fg.shape[-2:], IGNORE, dtype=torch.long)
            label[fg[w, s] == 1] = 1
            label[bg[w, s] == 1] = 0
            loss = loss + F.cross_entropy(up, label[None], ignore_index=IGNORE) / (W * S)
    return loss


def iou_counts(pred, target, episode_class_ids, rule):
    """Pixel-set TP/FP/FN of one query, keyed by global id (0 = background); the released
    metric's own definition, with sets of coordinates."""
    pred, target = np.asarray(pred), np.asarray(target)
    counts = {}
    for j, class_id in enumerate([0] + list(episode_class_ids)):
        predicted = {(y, x) for y, x in zip(*np.where((pred == j) & (target != IGNORE)))}
        truth = {(y, x) for y, x in zip(*np.where(target == j))}
        if truth or rule == "corrected":
            counts[class_id] = (len(predicted & truth), len(predicted - truth), len(truth - predicted))
    return counts
