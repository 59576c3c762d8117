"""The validated scalar options of each loss family, shared by the plain and the fused variants and by
every backend: built (and checked) once, by an nn module's __init__ or, for the functional API, through
a small cache (`CrossEntropyOptions.of` / `BCEOptions.of`), so that no caller re-validates them."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from pycmlt.ops._checks import check_finite_scalar, reduction_code


@dataclass(frozen=True)
class CrossEntropyOptions:
    """Options of the class-balanced cross-entropy (plain and fused linear).

    scale: the LDAM scale `ldam_scale` (> 0) that multiplies the adjusted logits; focal_gamma >= 0;
    label_smoothing in [0, 1] (not combinable with focal_gamma > 0); ignore_index: int;
    reduction: 'none' | 'mean' | 'sum' (`reduction_code` is the custom ops' integer code)."""

    scale: float = 1.0
    focal_gamma: float = 0.0
    label_smoothing: float = 0.0
    ignore_index: int = -100
    reduction: str = "mean"
    reduction_code: int = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        code = reduction_code(self.reduction)
        scale = check_finite_scalar("ldam_scale", self.scale, low=0.0, low_open=True)
        focal_gamma = check_finite_scalar("focal_gamma", self.focal_gamma, low=0.0)
        label_smoothing = check_finite_scalar("label_smoothing", self.label_smoothing, low=0.0, high=1.0)
        if focal_gamma > 0 and label_smoothing > 0:
            raise ValueError("focal_gamma > 0 cannot be combined with label_smoothing > 0: use one or the other")
        if not isinstance(self.ignore_index, int):
            raise TypeError(f"ignore_index must be an int, got {type(self.ignore_index).__name__}")
        for name, value in (("scale", scale), ("focal_gamma", focal_gamma), ("label_smoothing", label_smoothing),
                            ("ignore_index", int(self.ignore_index)), ("reduction_code", code)):
            object.__setattr__(self, name, value)

    @classmethod
    def of(cls, scale=1.0, focal_gamma=0.0, label_smoothing=0.0, ignore_index=-100,
           reduction="mean") -> "CrossEntropyOptions":
        """The validated options of these values, remembered (the functional API calls this per call)."""
        return _cached(cls, (scale, focal_gamma, label_smoothing, ignore_index, reduction))


@dataclass(frozen=True)
class BCEOptions:
    """Options of the class-balanced sigmoid BCE (plain and fused linear): focal_gamma >= 0 and
    reduction 'none' | 'mean' | 'sum' (`reduction_code` is the custom ops' integer code)."""

    focal_gamma: float = 0.0
    reduction: str = "mean"
    reduction_code: int = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        code = reduction_code(self.reduction)
        object.__setattr__(self, "focal_gamma", check_finite_scalar("focal_gamma", self.focal_gamma, low=0.0))
        object.__setattr__(self, "reduction_code", code)

    @classmethod
    def of(cls, focal_gamma=0.0, reduction="mean") -> "BCEOptions":
        """The validated options of these values, remembered (the functional API calls this per call)."""
        return _cached(cls, (focal_gamma, reduction))


_CACHE: dict = {}  # (class, values with their types) -> options; only plain Python numbers and strings
_CACHEABLE = (int, float, str, bool)


def _cached(cls, values):
    if torch.compiler.is_compiling() or not all(type(v) in _CACHEABLE for v in values):
        return cls(*values)
    key = (cls, values, tuple(type(v) for v in values))
    hit = _CACHE.get(key)
    if hit is None:
        hit = cls(*values)  # raises on bad values: nothing invalid is cached
        if len(_CACHE) >= 256:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = hit
    return hit
