"""Word-inference metrics (docs/evaluation.md): how well the words inferred for an image (its nearest
words in the semantic space, best first) recover the image's held-out true words.

For image i with ranked predictions r_1..r_K and true word set T_i (|T_i| > 0):

    recall@k_i    = |{r_1..r_k} ∩ T_i| / |T_i|
    precision@k_i = |{r_1..r_k} ∩ T_i| / k
    AP_i          = (1 / min(|T_i|, K)) * sum_{j <= K, r_j in T_i} precision@j_i

and each metric is the mean over images with at least one true word; images without true words
are excluded and counted (``num_excluded``). AP is normalised by min(|T_i|, K), the most hits a
list of K can hold (AP@K); when the ranking covers the whole vocabulary this is the usual average
precision. A prediction id repeated within a row counts once (at its first position); id -1 marks
an empty slot (an approximate index that found fewer than K words) and never matches.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np


@dataclass(frozen=True)
class WordInferenceMetrics:
    recall: dict[int, float]  # k -> mean recall@k
    precision: dict[int, float]  # k -> mean precision@k
    mean_average_precision: float
    num_images: int  # rows given
    num_evaluated: int  # rows with at least one true word
    num_excluded: int = field(default=0)  # rows without true words (not in any mean)

    def as_dict(self) -> dict[str, float | int]:
        """{"recall@1": ..., "precision@1": ..., "map": ..., "num_images": ..., ...}"""
        out: dict[str, float | int] = {f"recall@{k}": v for k, v in self.recall.items()}
        out.update({f"precision@{k}": v for k, v in self.precision.items()})
        out.update(map=self.mean_average_precision, num_images=self.num_images,
                   num_evaluated=self.num_evaluated, num_excluded=self.num_excluded)
        return out


def word_inference_metrics(ranked, truth, ks: Iterable[int] = (1, 5, 10), *,
                           num_words: int | None = None) -> WordInferenceMetrics:
    """recall@k and precision@k for every k in `ks` (each <= K), and mAP, in one pass.

    ranked: [N, K] integer word ids per image, best first (torch tensor on any device, NumPy array,
        or equal-length lists); -1 marks an empty slot.
    truth: the true word ids of each image: a sequence of N collections (set, list, array, tensor),
        or a 2-D array/tensor: boolean = multi-hot [N, V]; integer = rows of ids padded with -1.
    num_words: vocabulary size; when given, ids >= num_words are an error.
    """
    r = _ranked_array(ranked)
    n, depth = r.shape
    ks = _check_ks(ks, depth)
    img, ids = _truth_pairs(truth, n)
    _check_range(r, ids, num_words)
    hits, num_true = _hits(r, img, ids)
    keep = num_true > 0
    evaluated = int(keep.sum())
    if n and not evaluated:
        warnings.warn("no image has any true word: word-inference metrics are NaN", RuntimeWarning, stacklevel=2)
    cum = np.cumsum(hits, axis=1, dtype=np.float64) if depth else np.zeros((n, 0))
    recall, precision = {}, {}
    for k in ks:
        found = cum[keep, k - 1]
        recall[k] = _mean(found / num_true[keep])
        precision[k] = _mean(found / k)
    ranks = np.arange(1, depth + 1, dtype=np.float64)
    ap = (cum / ranks * hits).sum(axis=1)[keep] / np.minimum(num_true[keep], depth) if depth else np.zeros(evaluated)
    return WordInferenceMetrics(recall=recall, precision=precision, mean_average_precision=_mean(ap),
                                num_images=n, num_evaluated=evaluated, num_excluded=n - evaluated)


def word_recall_at_k(ranked, truth, k: int, *, num_words: int | None = None) -> float:
    """Mean recall@k over images with at least one true word (see the module docstring)."""
    return word_inference_metrics(ranked, truth, (k,), num_words=num_words).recall[k]


def word_mean_average_precision(ranked, truth, *, num_words: int | None = None) -> float:
    """Mean AP@K (K = ranked.shape[1]) over images with at least one true word."""
    return word_inference_metrics(ranked, truth, (), num_words=num_words).mean_average_precision


# ---------------------------------------------------------------------- helpers


def _to_numpy(value):
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch tensor, any device
        return value.detach().cpu().numpy()
    return value


def _ranked_array(ranked) -> np.ndarray:
    r = _to_numpy(ranked)
    try:
        r = np.asarray(r)
    except ValueError:
        raise ValueError("ranked must be an [N, K] array: every image needs the same number of predictions "
                         "(pad with -1)") from None
    if r.dtype == object or r.ndim != 2:
        raise ValueError(f"ranked must be an [N, K] array of word ids, got shape {r.shape}")
    if r.dtype == bool or not np.issubdtype(r.dtype, np.integer):
        if r.size == 0 and r.dtype == np.float64:  # np.asarray([[]]) is float: an empty list is fine
            return r.astype(np.int64)
        raise TypeError(f"ranked must hold integer word ids, got {r.dtype}")
    r = r.astype(np.int64, copy=False)
    if r.size and r.min() < -1:
        raise ValueError(f"ranked holds id {int(r.min())}: ids are >= 0, or -1 for an empty slot")
    return r


def _truth_pairs(truth, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(image index, word id) of every distinct true word."""
    t = _to_numpy(truth)
    if isinstance(t, np.ndarray) and t.ndim == 2:
        if t.shape[0] != n:
            raise ValueError(f"truth has {t.shape[0]} rows but ranked has {n}")
        if t.dtype == bool:
            img, ids = np.nonzero(t)
            return img.astype(np.int64), ids.astype(np.int64)
        if not np.issubdtype(t.dtype, np.integer):
            raise TypeError(f"a 2-D truth must be boolean (multi-hot) or integer ids padded with -1, got {t.dtype}")
        if t.size and t.min() < -1:
            raise ValueError(f"truth holds id {int(t.min())}: ids are >= 0 (-1 pads a row)")
        img, col = np.nonzero(t >= 0)
        return _unique_pairs(img, t[img, col].astype(np.int64))
    if isinstance(t, (str, bytes)) or not isinstance(t, Sequence) and not isinstance(t, np.ndarray):
        raise TypeError(f"truth must be a sequence of per-image id collections or a 2-D array, got {type(t).__name__}")
    if len(t) != n:
        raise ValueError(f"truth has {len(t)} entries but ranked has {n} rows")
    img_parts, id_parts = [], []
    for i, row in enumerate(t):
        row = np.asarray(_to_numpy(list(row) if isinstance(row, (set, frozenset)) else row))
        if row.size == 0:
            continue
        if row.dtype == bool or not np.issubdtype(row.dtype, np.integer):
            raise TypeError(f"truth[{i}] must hold integer word ids, got {row.dtype}")
        if row.min() < 0:
            raise ValueError(f"truth[{i}] holds id {int(row.min())}: word ids are >= 0")
        row = row.reshape(-1).astype(np.int64)
        img_parts.append(np.full(row.shape, i, dtype=np.int64))
        id_parts.append(row)
    if not id_parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return _unique_pairs(np.concatenate(img_parts), np.concatenate(id_parts))


def _unique_pairs(img: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if ids.size == 0:
        return img, ids
    pairs = np.unique(np.stack([img, ids], axis=1), axis=0)
    return pairs[:, 0], pairs[:, 1]


def _check_ks(ks, depth: int) -> list[int]:
    out = []
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"k must be an int, got {k!r}")
        if not 1 <= k <= depth:
            raise ValueError(f"k={k} is out of range: the ranked lists hold {depth} predictions per image, "
                             f"so 1 <= k <= {depth}")
        out.append(int(k))
    return out


def _check_range(r: np.ndarray, ids: np.ndarray, num_words: int | None) -> None:
    if num_words is None:
        return
    if r.size and r.max() >= num_words:
        raise ValueError(f"ranked holds id {int(r.max())}, outside a vocabulary of {num_words} words")
    if ids.size and ids.max() >= num_words:
        raise ValueError(f"truth holds id {int(ids.max())}, outside a vocabulary of {num_words} words")


def _hits(r: np.ndarray, img: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """hits[i, j]: r[i, j] is a true word of image i at its first position in the row; and |T_i|."""
    n, depth = r.shape
    num_true = np.bincount(img, minlength=n).astype(np.float64)
    if r.size == 0:
        return np.zeros(r.shape, dtype=bool), num_true
    width = int(max(r.max(), ids.max() if ids.size else 0)) + 1
    keys = np.arange(n, dtype=np.int64)[:, None] * width + r  # unique per (image, id) for ids >= 0
    valid = r >= 0
    first = np.zeros(r.shape, dtype=bool)
    flat_valid = np.flatnonzero(valid.reshape(-1))
    _, first_pos = np.unique(keys.reshape(-1)[flat_valid], return_index=True)  # row-major: first in its row
    first.reshape(-1)[flat_valid[first_pos]] = True
    true_keys = img * width + ids
    hits = first & np.isin(keys, true_keys)
    return hits, num_true


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else math.nan
