"""Constructing long-tailed training splits and balanced test splits from labelled pools (seeded).

`longtail_targets` gives the per-class counts of a long-tail profile with a given imbalance ratio
rho = n_max / n_min over C classes ranked 0..C-1 (rank 0 = head):
- "exp" (the CIFAR-LT profile of Cao et al. 2019): n_r = n_max * rho^(-r / (C - 1));
- "pareto" (a power law / Zipf profile, the shape of ImageNet-LT's Pareto sampling):
  n_r = n_max * (r + 1)^(-a) with a = ln(rho) / ln(C), so that n_{C-1} = n_max / rho.
`subsample_longtail` ranks the classes by how many examples they have (most first; ties by class
id), caps each class at its target count (never more than it has) and draws that many examples
uniformly without replacement.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

PROFILES = ("exp", "pareto")


def longtail_targets(num_classes: int, n_max: int, imbalance_ratio: float, profile: str = "exp") -> list[int]:
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    if imbalance_ratio < 1:
        raise ValueError(f"imbalance_ratio must be >= 1, got {imbalance_ratio}")
    if num_classes <= 0:
        return []
    if num_classes == 1:
        return [int(n_max)]
    out = []
    for r in range(num_classes):
        if profile == "exp":
            n = n_max * imbalance_ratio ** (-r / (num_classes - 1))
        else:
            a = math.log(imbalance_ratio) / math.log(num_classes)
            n = n_max * (r + 1) ** (-a)
        out.append(max(1, int(math.floor(n + 1e-9))))
    return out


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), *map(int, stream)])


def subsample_longtail(labels: Sequence[int], num_classes: int, imbalance_ratio: float, *, seed: int = 0,
                       profile: str = "exp", n_max: int | None = None) -> np.ndarray:
    """Sorted indices of a long-tailed subset of single-label examples (see module doc).
    n_max defaults to the size of the largest class."""
    labels = np.asarray(labels, dtype=np.int64)
    avail = np.bincount(labels, minlength=num_classes)
    ranked = sorted(range(num_classes), key=lambda c: (-avail[c], c))
    ranked = [c for c in ranked if avail[c] > 0]
    top = int(avail.max()) if n_max is None else int(n_max)
    targets = longtail_targets(len(ranked), top, imbalance_ratio, profile)
    keep = []
    for c, t in zip(ranked, targets):
        idx = np.nonzero(labels == c)[0]
        k = min(t, len(idx))
        keep.append(np.sort(_rng(seed, 1, c).choice(idx, size=k, replace=False)))
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)


def cap_per_class(labels: Sequence[int], num_classes: int, per_class: int, *, seed: int = 0) -> np.ndarray:
    """Sorted indices keeping at most `per_class` random examples of each class (a balanced-ish test set)."""
    labels = np.asarray(labels, dtype=np.int64)
    keep = []
    for c in range(num_classes):
        idx = np.nonzero(labels == c)[0]
        if len(idx) > per_class:
            idx = np.sort(_rng(seed, 2, c).choice(idx, size=per_class, replace=False))
        keep.append(idx)
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)


def stratified_split(labels: Sequence[int], fractions: dict[str, float], *, seed: int = 0) -> dict[str, np.ndarray]:
    """Split example indices per class into named parts with the given fractions (the remainder goes
    to "train"). Every class with at least 2 examples keeps at least one in "train"."""
    labels = np.asarray(labels, dtype=np.int64)
    out: dict[str, list[np.ndarray]] = {"train": [], **{k: [] for k in fractions}}
    for c in np.unique(labels):
        idx = _rng(seed, 3, int(c)).permutation(np.nonzero(labels == c)[0])
        start = 0
        for name, frac in fractions.items():
            k = int(round(frac * len(idx)))
            k = min(k, max(0, len(idx) - 1 - start))  # leave one for train
            out[name].append(idx[start:start + k])
            start += k
        out["train"].append(idx[start:])
    return {k: np.sort(np.concatenate(v)) if v else np.zeros(0, dtype=np.int64) for k, v in out.items()}
