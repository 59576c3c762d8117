"""How tight and how separated each shot group's test features are (the CMLTNet paper's feature-
distribution case study), and a 2-D t-SNE of them to look at.

Features are compared by cosine: every feature vector f_i is first scaled to unit length, u_i = f_i / |f_i|
(a zero vector stays zero). For a class c with test samples S_c (n_c = |S_c|):

    centroid m_c                = mean of u_i over S_c
    intra-class similarity of c = mean of cos(u_i, u_j) over the ordered pairs i != j of S_c
                                = (|sum_i u_i|^2 - sum_i |u_i|^2) / (n_c (n_c - 1))   (needs n_c >= 2)
    margin of a sample i in c   = cos(u_i, m_c) - max_{c' != c, c' in the test} cos(u_i, m_c')

A shot group's (many / medium / few, from the TRAINING counts:
pycmlt.evaluation.classification_metrics.shot_groups) `intra_class_similarity` is the mean over its
classes with at least two test samples (class-averaged, like the group accuracies), and its
`nearest_class_margin` is the mean over its test samples of their margin (every centroid includes
the sample itself; needs at least two classes in the test). A positive margin means the sample is
closer to its own class's centroid than to any other; a value is None when the group has no sample
it can be computed for.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pycmlt.evaluation.classification_metrics import shot_groups

GROUPS = ("many", "medium", "few")


def _checked(features, labels, train_counts) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    f = torch.as_tensor(features)
    y = torch.as_tensor(labels)
    counts = torch.as_tensor(train_counts)
    if f.dim() != 2 or not f.is_floating_point():
        raise ValueError(f"features must be a floating-point [N, D] array, got shape {tuple(f.shape)} ({f.dtype})")
    if y.dim() != 1 or y.is_floating_point() or y.dtype == torch.bool or y.shape[0] != f.shape[0]:
        raise ValueError(f"labels must be [N] = [{f.shape[0]}] integer class ids, got shape {tuple(y.shape)} "
                         f"({y.dtype})")
    if counts.dim() != 1 or counts.numel() == 0:
        raise ValueError(f"train_counts must be a non-empty [C] array, got shape {tuple(counts.shape)}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= counts.numel()):
        raise ValueError(f"labels must be in [0, {counts.numel()}) to match train_counts")
    if not torch.isfinite(f).all():
        raise ValueError("features contain NaN or infinite values")
    return F.normalize(f.double(), dim=1), y.long(), counts


def _class_sums(u: torch.Tensor, y: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    sums = torch.zeros(num_classes, u.shape[1], dtype=u.dtype).index_add_(0, y, u)
    return sums, torch.bincount(y, minlength=num_classes)


def _sample_margins(u: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[N] margin of every sample (unit rows u); NaN for all when fewer than two classes are present."""
    sums, n = _class_sums(u, y, num_classes)
    present = n > 0
    if int(present.sum()) < 2:
        return torch.full((u.shape[0],), float("nan"), dtype=u.dtype)
    cos = u @ F.normalize(sums, dim=1).t()  # the centroid's direction: the mean's, scaled
    own = cos.gather(1, y.unsqueeze(1)).squeeze(1)
    others = cos.masked_fill(~present.unsqueeze(0), float("-inf"))
    others[torch.arange(u.shape[0]), y] = float("-inf")
    return own - others.max(dim=1).values


def _class_similarity(u: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[C] mean cosine over the ordered pairs of distinct samples of each class; NaN below two samples."""
    sums, n = _class_sums(u, y, num_classes)
    self_pairs = torch.zeros(num_classes, dtype=u.dtype).index_add_(0, y, (u * u).sum(1))  # 1, or 0 for f_i = 0
    pair_sum = (sums * sums).sum(1) - self_pairs
    n = n.to(u.dtype)
    return torch.where(n >= 2, pair_sum / (n * (n - 1)).clamp_min(1), torch.full_like(n, float("nan")))


def shot_group_feature_stats(features, labels, train_counts) -> dict[str, dict]:
    """{"many" | "medium" | "few": {"intra_class_similarity": x, "nearest_class_margin": y}} (floats or
    None; definitions in the module docstring). features [N, D]; labels [N] class ids; train_counts [C] training images per class."""
    u, y, counts = _checked(features, labels, train_counts)
    num_classes = counts.numel()
    similarity = _class_similarity(u, y, num_classes)
    margins = _sample_margins(u, y, num_classes)
    out = {}
    for group, mask in shot_groups(counts).items():
        mask = torch.as_tensor(mask)
        class_sim = similarity[mask & ~torch.isnan(similarity)]
        sample_margin = margins[mask[y] & ~torch.isnan(margins)]
        out[group] = {"intra_class_similarity": float(class_sim.mean()) if class_sim.numel() else None,
                      "nearest_class_margin": float(sample_margin.mean()) if sample_margin.numel() else None}
    return out


def subsample(num_items: int, max_points: int, seed: int) -> np.ndarray:
    """Sorted indices of at most `max_points` of `num_items` items, drawn without replacement (seeded),
    so that every run of an analysis is shown on the same test images."""
    if max_points >= num_items:
        return np.arange(num_items)
    return np.sort(np.random.default_rng(seed).choice(num_items, size=max_points, replace=False))


def tsne_2d(features, seed: int = 0) -> np.ndarray:
    """[N, 2] t-SNE (scikit-learn; PCA initialisation, perplexity min(30, (N - 1) / 3)) of the
    unit-length features, whose Euclidean distances are monotone in cosine similarity. Runs on one
    thread: next to torch's thread pool, scikit-learn's OpenMP threads made it 4-5x slower on a busy
    2-core machine (1000 points: 22 s on one thread, 89-113 s on two)."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    u = F.normalize(torch.as_tensor(features).double(), dim=1).numpy()
    if u.shape[0] < 4:
        raise ValueError(f"t-SNE needs at least 4 points, got {u.shape[0]}")
    perplexity = min(30.0, (u.shape[0] - 1) / 3.0)
    with threadpool_limits(limits=1):
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(u)
