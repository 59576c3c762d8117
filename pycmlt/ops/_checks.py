"""Argument checks shared by every op: clear ValueError/TypeError messages naming the argument."""
from __future__ import annotations

import math
from typing import Sequence

import torch

REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}


def reduction_code(reduction: str) -> int:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {tuple(REDUCTIONS)}, got {reduction!r}")
    return REDUCTIONS[reduction]


def reduction_name(code: int) -> str:
    """The reduction string of a custom op's reduction code (inverse of reduction_code)."""
    return next(name for name, value in REDUCTIONS.items() if value == code)


def check_tensor(name: str, value, *, floating: bool = False, integer: bool = False) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if floating and not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor (float32, float16 or bfloat16), got {value.dtype}")
    if integer and (value.is_floating_point() or value.is_complex() or value.dtype == torch.bool):
        raise TypeError(f"{name} must be an integer tensor of class indices, got {value.dtype}")
    return value


def check_same_device(reference_name: str, reference: torch.Tensor, **others) -> None:
    for name, value in others.items():
        if isinstance(value, torch.Tensor) and value.device != reference.device:
            raise ValueError(f"{name} is on {value.device} but {reference_name} is on {reference.device}; "
                             "move them to the same device")


def check_finite_scalar(name: str, value: float, *, low: float | None = None, high: float | None = None,
                        low_open: bool = False, high_open: bool = False) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and (value < low or (low_open and value == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value}")
    if high is not None and (value > high or (high_open and value == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got {value}")
    return value


def class_counts_tensor(class_counts, num_classes: int | None = None, *, device=None) -> torch.Tensor:
    """Validated float64 class counts [C]: finite and > 0, of length num_classes when given."""
    if isinstance(class_counts, (str, bytes)):
        raise TypeError(f"class_counts must be a tensor or a sequence of numbers, got a {type(class_counts).__name__} "
                        f"({class_counts!r}); pass e.g. [1, 2, 3, 4, 5]")
    if isinstance(class_counts, torch.Tensor):
        counts = class_counts.detach()
    elif isinstance(class_counts, Sequence) or hasattr(class_counts, "__array__"):
        counts = torch.as_tensor(class_counts)
    else:
        raise TypeError(f"class_counts must be a tensor or a sequence of numbers, got {type(class_counts).__name__}")
    if counts.is_complex() or counts.dtype == torch.bool:
        raise TypeError(f"class_counts must be real numbers, got {counts.dtype}")
    counts = counts.to(dtype=torch.float64)
    if counts.dim() != 1:
        raise ValueError(f"class_counts must be 1-D [C], got shape {tuple(counts.shape)}")
    if num_classes is not None and counts.numel() != num_classes:
        raise ValueError(f"class_counts must have one entry per class: expected length {num_classes}, "
                         f"got {counts.numel()}")
    if counts.numel() == 0:
        raise ValueError("class_counts is empty")
    if torch.compiler.is_compiling() or counts.device.type == "meta":  # data checks need the values
        return counts if device is None else counts.to(device)
    if torch.isnan(counts).any():
        raise ValueError("class_counts contains NaN")
    if not torch.isfinite(counts).all():
        raise ValueError("class_counts contains infinite values")
    bad = counts <= 0
    if bad.any():
        j = int(bad.nonzero()[0, 0])
        raise ValueError(f"class_counts must be > 0 for every class; class {j} has count {counts[j].item():g}")
    return counts if device is None else counts.to(device)


def check_targets_in_range(target: torch.Tensor, num_classes: int, ignore_index: int) -> None:
    """ValueError naming the first target outside [0, C) that is not ignore_index (one host sync)."""
    if target.numel() == 0 or target.device.type == "meta":  # meta tensors have no values to check
        return
    bad = ((target < 0) | (target >= num_classes)) & (target != ignore_index)
    if bad.any():
        i = int(bad.nonzero()[0, 0])
        flat = target.reshape(-1)
        raise ValueError(f"target[{i}] = {int(flat[i])} is out of range: expected 0 <= target < {num_classes} "
                         f"or target == ignore_index ({ignore_index})")


def compute_dtype(*dtypes: torch.dtype) -> torch.dtype:
    """The dtype the torch references compute in: at least fp32 (fp16/bf16 are upcast), fp64 stays fp64."""
    out = torch.float32
    for dtype in dtypes:
        out = torch.promote_types(out, dtype)
    return out
