"""Turning word vectors and queries (torch tensors on any device, NumPy arrays, nested sequences)
into the float32 C-contiguous host matrices FAISS reads, and results back into the caller's kind."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

NORM_EPS = 1e-12  # as torch.nn.functional.normalize: x / max(||x||, eps)

_FLOAT_NUMPY = (np.float16, np.float32, np.float64)


@dataclass(frozen=True)
class InputKind:
    """Where the queries came from, so that results go back as the same kind."""
    torch_device: torch.device | None  # None: NumPy (or a sequence) in, NumPy out
    one_query: bool  # a single [D] query: results are [k] rather than [1, k]


def as_matrix(name: str, value, *, dim: int | None = None) -> tuple[object, InputKind]:
    """Validate a [N, D] (or [D]) float matrix; returns it still in its own kind plus its InputKind.

    Accepts torch tensors (float16/bfloat16/float32/float64, any device, requires_grad is fine)
    and NumPy arrays or nested sequences of floats (float16/32/64). Integer, boolean and complex
    data is a TypeError: word vectors and queries are real vectors, and silently casting ids to
    floats hides bugs.
    """
    if isinstance(value, torch.Tensor):
        if not value.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor (float16, bfloat16, float32 or float64), "
                            f"got {value.dtype}")
        kind = InputKind(value.device, value.dim() == 1)
    else:
        if not isinstance(value, np.ndarray):
            try:
                value = np.asarray(value)
            except (ValueError, TypeError) as exc:
                raise TypeError(f"{name} must be a torch.Tensor, a NumPy array or a nested sequence of "
                                f"floats: {exc}") from None
        if value.dtype.type not in _FLOAT_NUMPY:
            if value.dtype == object or value.dtype.kind in "USV":
                raise TypeError(f"{name} must be a float matrix, got an array of {value.dtype}")
            raise TypeError(f"{name} must be a floating-point array (float16, float32 or float64), got {value.dtype}")
        kind = InputKind(None, value.ndim == 1)
    ndim = value.dim() if isinstance(value, torch.Tensor) else value.ndim
    if ndim not in (1, 2):
        raise ValueError(f"{name} must have shape [N, D] (or [D] for one vector), got {tuple(value.shape)}")
    width = value.shape[-1]
    if dim is not None and width != dim:
        raise ValueError(f"{name} have dimension {width} but the index holds {dim}-dimensional word vectors")
    return value, kind


def host_float32(value, rows: slice | None = None, *, copy: bool = False) -> np.ndarray:
    """Rows of a validated matrix as a float32, C-contiguous NumPy array [n, D]; with copy=True it
    never shares memory with the caller's array or tensor (safe to modify in place)."""
    part = value if rows is None else value[rows]
    if isinstance(part, torch.Tensor):
        part = part.detach()
        if part.dim() == 1:
            part = part.unsqueeze(0)
        part = part.to(device="cpu", dtype=torch.float32).numpy()
    elif part.ndim == 1:
        part = part[None, :]
    if copy:
        return np.array(part, dtype=np.float32, order="C", copy=True)
    return np.ascontiguousarray(part, dtype=np.float32)


def first_nonfinite_row(x: np.ndarray) -> int | None:
    bad = ~np.isfinite(x).all(axis=1)
    return int(np.flatnonzero(bad)[0]) if bad.any() else None


def normalize_rows_(x: np.ndarray) -> np.ndarray:
    """In-place L2 normalisation x / max(||x||, eps); zero rows stay zero. Returns the row norms (float64).

    Each row is first divided by its largest magnitude, so that the float32 sum of squares neither
    overflows (entries ~1e20 and up: the norm would be inf and the row would become 0) nor underflows.
    """
    peak = np.abs(x).max(axis=1) if x.shape[1] else np.zeros(x.shape[0], dtype=x.dtype)
    peak = np.where(peak > 0, peak, 1).astype(x.dtype)
    x /= peak[:, None]
    norms = np.linalg.norm(x, axis=1).astype(np.float64) * peak
    x *= (peak / np.maximum(norms, NORM_EPS)).astype(x.dtype)[:, None]
    return norms


def to_caller(scores: np.ndarray, ids: np.ndarray, kind: InputKind):
    """(scores float32, ids int64) in the kind the queries came as."""
    if kind.one_query:
        scores, ids = scores[0], ids[0]
    if kind.torch_device is None:
        return scores, ids
    device = kind.torch_device
    return torch.from_numpy(scores).to(device), torch.from_numpy(ids).to(device)


def num_rows(value) -> int:
    if isinstance(value, torch.Tensor):
        return 1 if value.dim() == 1 else value.shape[0]
    return 1 if value.ndim == 1 else value.shape[0]
