"""Paired comparison of two methods on the same test items: the difference of top-1 and few-shot
accuracy (method minus reference), averaged over runs, with a percentile bootstrap confidence
interval that resamples distinct test items, never samples.

A run pair is one (data split, seed): both methods' per-sample correctness on that split's test set.
Samples showing the same item (renderings of one emoji) are one unit: a replicate draws the split's
K distinct items K times with replacement (not stratified by class: a class whose items are not
drawn is absent from that replicate, as a class is absent from a smaller test set), weights every
sample by how often its item was drawn, and recomputes both methods' accuracies on those weights.
All seeds of one data split share the replicate's draw (they are tested on the same items); splits
are drawn independently. top-1 is the weighted share of correct samples; few is the mean per-class
accuracy over the few-shot classes present in the replicate. A replicate's difference is the mean
over runs of the per-run differences (runs where few is undefined are left out of that mean;
replicates where it is undefined for every run are dropped). The point estimate `delta` is the same
statistic on the test set as it is, i.e. the mean over runs of the differences of the reported
metrics. Values are fractions (0.01 = 1 point).

`ci` sees only the test items' sampling. Training runs vary too (a method that fails to take off
in one split of three): `ci_runs` also draws the runs, with replacement, in every replicate (a
two-level bootstrap: runs, then the items already drawn for each), so it widens when the runs
disagree; with one run it equals `ci`. A difference is resolved when both intervals exclude 0.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Sequence

import numpy as np


@dataclass
class RunPair:
    """One run of each method on the same test split; arrays are per test sample, in the same order."""
    split: Hashable                 # the data split (runs of one split are tested on the same items)
    item_keys: Sequence[str]        # the distinct item each sample shows
    labels: Sequence[int]
    correct: Sequence[bool]         # the method
    correct_reference: Sequence[bool]
    few_classes: Sequence[int]      # the few-shot classes of this split's training counts


def paired_bootstrap(pairs: Sequence[RunPair], *, n_boot: int = 2000, level: float = 0.95, seed: int = 0,
                     return_replicates: bool = False) -> dict:
    """{"top1": {"delta": d, "ci": [lo, hi]}, "few": {...} or None (no few-shot class tested),
    "runs": n, "n_boot": B}; with return_replicates, each metric also holds its "replicates"."""
    if not pairs:
        raise ValueError("pairs must hold at least one run pair")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive int, got {n_boot!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    splits: dict[Hashable, list[RunPair]] = {}
    for p in pairs:
        splits.setdefault(p.split, []).append(p)
    top1_obs, few_obs, top1_reps, few_reps = [], [], [], []
    for split in sorted(splits, key=str):
        group = splits[split]
        cells = _Cells(group[0])
        for p in group[1:]:
            cells.check_same_items(p)
        draws = rng.multinomial(cells.num_items, np.full(cells.num_items, 1.0 / cells.num_items), size=n_boot)
        observed = np.ones((1, cells.num_items))
        for p in group:
            a, b = cells.sums(p.correct), cells.sums(p.correct_reference)
            few = np.isin(cells.label, np.asarray(p.few_classes, dtype=np.int64))
            for weights, top1_out, few_out in ((observed, top1_obs, few_obs), (draws, top1_reps, few_reps)):
                w = weights[:, cells.item].astype(np.float64)  # [B, cells]
                top1_out.append(_top1(w, a, cells.n) - _top1(w, b, cells.n))
                few_out.append(_few(w, a, cells, few) - _few(w, b, cells, few))
    result = {"runs": len(pairs), "n_boot": int(n_boot), "level": level}
    run_draws = rng.integers(0, len(pairs), size=(n_boot, len(pairs)))  # the runs of each replicate
    for name, obs, reps in (("top1", top1_obs, top1_reps), ("few", few_obs, few_reps)):
        result[name] = _summary(np.stack(obs)[:, 0], np.stack(reps), level, return_replicates, run_draws)
    return result


class _Cells:
    """The test samples of a split grouped into (item, label) cells."""

    def __init__(self, pair: RunPair):
        keys = np.asarray([str(k) for k in pair.item_keys])
        labels = np.asarray(pair.labels, dtype=np.int64)
        if keys.ndim != 1 or len(keys) == 0 or labels.shape != keys.shape:
            raise ValueError(f"split {pair.split!r}: item_keys and labels must be non-empty and of the same "
                             f"length, got {keys.shape} and {labels.shape}")
        self.keys, self.labels = keys, labels
        items, item_of_sample = np.unique(keys, return_inverse=True)
        self.num_items = len(items)
        pairs = np.stack([item_of_sample, labels], 1)
        cells, self.cell_of_sample = np.unique(pairs, axis=0, return_inverse=True)
        self.cell_of_sample = self.cell_of_sample.reshape(-1)
        self.item, self.label = cells[:, 0], cells[:, 1]
        self.n = np.bincount(self.cell_of_sample, minlength=len(cells)).astype(np.float64)
        self.check_same_items(pair)

    def check_same_items(self, pair: RunPair) -> None:
        keys = np.asarray([str(k) for k in pair.item_keys])
        if not (np.array_equal(keys, self.keys) and np.array_equal(np.asarray(pair.labels), self.labels)):
            raise ValueError(f"split {pair.split!r}: the runs of one data split must be tested on the same samples "
                             "(same item keys and labels, in the same order)")
        for name in ("correct", "correct_reference"):
            if np.shape(getattr(pair, name)) != self.keys.shape:
                raise ValueError(f"split {pair.split!r}: {name} has shape {np.shape(getattr(pair, name))}, "
                                 f"expected {self.keys.shape}")

    def sums(self, correct) -> np.ndarray:
        return np.bincount(self.cell_of_sample, weights=np.asarray(correct, dtype=np.float64), minlength=len(self.n))


def _top1(w: np.ndarray, correct: np.ndarray, n: np.ndarray) -> np.ndarray:
    return (w @ correct) / (w @ n)


def _few(w: np.ndarray, correct: np.ndarray, cells: _Cells, few: np.ndarray) -> np.ndarray:
    """Mean per-class accuracy over the few-shot classes with weight > 0 (NaN when none)."""
    if not few.any():
        return np.full(w.shape[0], np.nan)
    classes, cls = np.unique(cells.label[few], return_inverse=True)
    onehot = np.zeros((few.sum(), len(classes)))
    onehot[np.arange(few.sum()), cls] = 1.0
    num = w[:, few] @ (correct[few, None] * onehot)
    den = w[:, few] @ (cells.n[few, None] * onehot)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    present = den > 0
    return np.where(present.any(1), np.nansum(per_class, 1) / np.maximum(present.sum(1), 1), np.nan)


def _summary(observed: np.ndarray, replicates: np.ndarray, level: float, keep: bool,
             run_draws: np.ndarray) -> dict | None:
    """delta = mean over runs; ci = percentile interval of the replicates' mean over runs; ci_runs =
    the same with the runs of each replicate drawn with replacement (run_draws: [B, runs])."""
    defined = ~np.isnan(observed)
    if not defined.any():
        return None
    delta = float(observed[defined].mean())
    tail = 100 * (1 - level) / 2
    reps = np.where(defined[:, None], replicates, np.nan)   # [runs, B]; runs without the metric count as absent
    means = _mean_defined(reps.T)
    drawn = reps.T[np.arange(reps.shape[1])[:, None], run_draws]  # [B, runs]: replicate b, its drawn runs
    means_runs = _mean_defined(drawn)
    out = {"delta": delta, "ci": _interval(means, tail), "ci_runs": _interval(means_runs, tail)}
    if keep:
        out["replicates"] = means
    return out


def _mean_defined(values: np.ndarray) -> np.ndarray:
    """Row means over the non-NaN entries of [B, k]; rows with none are dropped."""
    counted = (~np.isnan(values)).sum(1)
    return np.nansum(values, 1)[counted > 0] / counted[counted > 0]


def _interval(means: np.ndarray, tail: float) -> list[float] | None:
    if len(means) == 0:
        return None
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return [float(lo), float(hi)]


def resolved(*intervals) -> bool:
    """A difference is resolved when every given confidence interval excludes 0."""
    return all(ci is not None and (ci[0] > 0 or ci[1] < 0) for ci in intervals) and bool(intervals)
