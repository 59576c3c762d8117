"""The contrastive loss from per-anchor statistics (docs/ops/contrastive.md): the fused backends and
the gathered (distributed) form return, per anchor, the log-sum-exp of its similarities and the sum
over its positives; these functions turn them into the loss. Shared by pycmlt.ops.contrastive and
pycmlt.ops.gathered_contrastive."""
from __future__ import annotations

import torch


def positive_counts(la, lb, n, m, device):
    """|P_i| for every row and |Q_j| for every column (int64), from the labels alone: O((N + M) log)."""
    if la is None:
        return (torch.ones(n, dtype=torch.int64, device=device), torch.ones(m, dtype=torch.int64, device=device))
    sorted_b = torch.sort(lb).values
    sorted_a = torch.sort(la).values
    rows = torch.searchsorted(sorted_b, la, right=True) - torch.searchsorted(sorted_b, la)
    cols = torch.searchsorted(sorted_a, lb, right=True) - torch.searchsorted(sorted_a, lb)
    return rows, cols


def anchor_losses(lse, pos_sum, count):
    """l = lse - (sum of S over positives) / |P| for anchors with a positive, 0 otherwise."""
    return torch.where(count > 0, lse - pos_sum / count.clamp_min(1), 0.0)


def anchor_weights(count, class_weight, anchor_labels):
    w = class_weight[anchor_labels] if class_weight is not None else torch.ones(count.shape, device=count.device)
    return torch.where(count > 0, w, 0.0)


def reduce_parts(parts, code, denominators=None):
    """Combine (per-anchor loss, weight) of one or two directions with reduction code 0/1/2.

    denominators (distributed) replace the local sum of weights of each direction in the mean.
    """
    half = 0.5 if len(parts) == 2 else 1.0
    if code == 0:
        return torch.cat([half * w * l for l, w in parts])
    total = None
    for k, (l, w) in enumerate(parts):
        term = (w * l).sum()
        if code == 1:
            den = w.sum() if denominators is None else denominators[k]
            term = term / den.clamp_min(torch.finfo(torch.float32).tiny)  # 0 / tiny = 0 when no positive
        total = term if total is None else total + term
    return half * total
