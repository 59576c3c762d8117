"""Classification metrics of a long-tailed test set (docs/evaluation.md): top-1 overall and per shot
group of the training counts (many > 100, medium 20..100, few < 20; a group's accuracy is the mean
of its classes'), mean class accuracy, and multi-label mAP / macro and micro F1."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

MANY_ABOVE = 100
FEW_BELOW = 20


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def shot_groups(train_counts) -> dict[str, np.ndarray]:
    """Boolean class masks: many (> 100 training images), medium (20..100), few (< 20)."""
    counts = _np(train_counts)
    return {"many": counts > MANY_ABOVE, "medium": (counts >= FEW_BELOW) & (counts <= MANY_ABOVE),
            "few": counts < FEW_BELOW}


@dataclass
class LongTailAccuracy:
    top1: float                  # plain top-1 over test images
    mean_class_accuracy: float   # mean over classes present in the test set
    many: float | None           # mean class accuracy of the group (None when the group has no test class)
    medium: float | None
    few: float | None
    per_class: list[float | None]
    test_counts: list[int]
    group_sizes: dict[str, int]

    def to_dict(self) -> dict:
        return asdict(self)


def longtail_accuracy(predictions, targets, train_counts) -> LongTailAccuracy:
    """predictions and targets: class indices [N]; train_counts [C]."""
    pred, tgt, counts = _np(predictions).astype(np.int64), _np(targets).astype(np.int64), _np(train_counts)
    if pred.shape != tgt.shape:
        raise ValueError(f"predictions {pred.shape} and targets {tgt.shape} must have the same shape")
    c = counts.shape[0]
    if tgt.size and (tgt.min() < 0 or tgt.max() >= c):
        raise ValueError(f"targets must be in [0, {c}) to match train_counts")
    correct = np.bincount(tgt, weights=(pred == tgt).astype(np.float64), minlength=c)
    total = np.bincount(tgt, minlength=c)
    present = total > 0
    per_class = np.where(present, correct / np.maximum(total, 1), np.nan)
    groups = shot_groups(counts)

    def group_mean(mask):
        sel = mask & present
        return float(per_class[sel].mean()) if sel.any() else None

    return LongTailAccuracy(
        top1=float((pred == tgt).mean()) if tgt.size else float("nan"),
        mean_class_accuracy=float(per_class[present].mean()) if present.any() else float("nan"),
        many=group_mean(groups["many"]), medium=group_mean(groups["medium"]), few=group_mean(groups["few"]),
        per_class=[None if np.isnan(v) else float(v) for v in per_class],
        test_counts=total.tolist(),
        group_sizes={k: int((m & present).sum()) for k, m in groups.items()},
    )


def average_precision(scores, targets) -> np.ndarray:
    """Per-class average precision [C] of scores [N, C] against binary targets [N, C] (NaN for a
    class with no positive). AP = mean over positives of the precision at their rank."""
    s, t = _np(scores).astype(np.float64), _np(targets) > 0.5
    ap = np.full(s.shape[1], np.nan)
    for j in range(s.shape[1]):
        pos = t[:, j]
        if not pos.any():
            continue
        order = np.argsort(-s[:, j], kind="stable")
        hits = pos[order]
        precision_at_hit = np.cumsum(hits)[hits] / (np.flatnonzero(hits) + 1)
        ap[j] = precision_at_hit.mean()
    return ap


def multilabel_metrics(scores, targets, threshold: float = 0.5) -> dict:
    """mAP over classes with positives, and macro / micro F1 of (sigmoid(scores) >= threshold)."""
    s, t = _np(scores).astype(np.float64), _np(targets) > 0.5
    pred = 1.0 / (1.0 + np.exp(-s)) >= threshold
    tp = (pred & t).sum(0).astype(np.float64)
    fp = (pred & ~t).sum(0).astype(np.float64)
    fn = (~pred & t).sum(0).astype(np.float64)
    denom = 2 * tp + fp + fn
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1e-12), np.nan)
    ap = average_precision(s, t)
    micro_denom = 2 * tp.sum() + fp.sum() + fn.sum()
    return {
        "mAP": float(np.nanmean(ap)) if np.isfinite(ap).any() else float("nan"),
        "macro_f1": float(np.nanmean(f1)) if np.isfinite(f1).any() else float("nan"),
        "micro_f1": float(2 * tp.sum() / micro_denom) if micro_denom > 0 else float("nan"),
        "per_class_ap": [None if np.isnan(v) else float(v) for v in ap],
    }
