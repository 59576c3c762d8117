"""Classifier layers fused with their loss: nn.Linear + class-balanced CE / BCE computed chunk by
chunk, so that the N x C logits never exist at once during training."""
from __future__ import annotations

import torch
from torch import nn

from pycmlt.nn._scheduled import EpochScheduled
from pycmlt.nn.bce import register_bce_statistics
from pycmlt.nn.cross_entropy import register_class_statistics
from pycmlt.ops._deprecation import renamed_keywords
from pycmlt.ops.fused_linear import check_chunk_rows, fused_linear_bce_with_class_tensors
from pycmlt.ops.fused_linear import fused_linear_cross_entropy_with_class_tensors
from pycmlt.ops.loss_options import BCEOptions, CrossEntropyOptions


class _FusedLinearLoss(EpochScheduled, nn.Module):
    def _init_linear(self, in_features, num_classes, bias, device, dtype, linear):
        if linear is not None:
            if not isinstance(linear, nn.Linear):
                raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
            if (linear.in_features, linear.out_features) != (in_features, num_classes):
                raise ValueError(f"linear maps {linear.in_features} -> {linear.out_features} features, expected "
                                 f"{in_features} -> {num_classes}")
            self.linear = linear
        else:
            self.linear = nn.Linear(in_features, num_classes, bias=bias, device=device, dtype=dtype)
        self.in_features = in_features
        self.num_classes = num_classes

    def _check_counts(self):
        if self.class_counts is not None and self.class_counts.numel() != self.num_classes:
            raise ValueError(f"class_counts must have one entry per class: expected length {self.num_classes}, "
                             f"got {self.class_counts.numel()}")

    @property
    def weight(self) -> nn.Parameter:
        """The classifier matrix [C, D] (the Linear's weight)."""
        return self.linear.weight

    @property
    def bias(self) -> nn.Parameter | None:
        return self.linear.bias

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The plain logits hidden @ W^T + b (inference, metrics)."""
        return self.linear(hidden)

    @classmethod
    def from_linear(cls, linear: nn.Linear, class_counts=None, **kwargs):
        """Wraps an existing classifier (its parameters are shared, not copied)."""
        return cls(linear.in_features, linear.out_features, linear.bias is not None, class_counts, linear=linear,
                   **kwargs)


class FusedLinearClassBalancedCrossEntropy(_FusedLinearLoss):
    """nn.Linear(in_features, num_classes) followed by the class-balanced cross-entropy, fused
    (:func:`pycmlt.ops.fused_linear_class_balanced_cross_entropy`).

    `forward(hidden, target)` returns the loss; `logits(hidden)` the plain logits for inference.
    The module owns the Linear's parameters (`weight` [C, D], `bias` [C]), initialised as
    nn.Linear does, or shares those of an existing Linear (`from_linear(linear, ...)`). Class
    statistics are buffers as in :class:`pycmlt.nn.ClassBalancedCrossEntropy`; `class_weight` is the
    per-class weight (named so because `weight` is the classifier matrix), `schedule` + `update(epoch)`
    drive it per epoch.
    """

    def __init__(self, in_features: int, num_classes: int, bias: bool = True, class_counts=None, *,
                 beta: float | None = None, class_weight: torch.Tensor | None = None, focal_gamma: float = 0.0,
                 ldam_max_margin: float = 0.0, ldam_scale: float = 1.0, logit_adjust_tau: float = 0.0,
                 label_smoothing: float = 0.0, ignore_index: int = -100, reduction: str = "mean",
                 chunk_rows: int | None = None, backend: str = "auto", schedule=None, device=None, dtype=None,
                 linear: nn.Linear | None = None):
        super().__init__()
        self.options = CrossEntropyOptions(ldam_scale, focal_gamma, label_smoothing, ignore_index, reduction)
        check_chunk_rows(chunk_rows)
        self._init_linear(in_features, num_classes, bias, device, dtype, linear)
        register_class_statistics(self, class_counts, beta=beta, class_weight=class_weight,
                                  ldam_max_margin=ldam_max_margin, logit_adjust_tau=logit_adjust_tau,
                                  schedule=schedule)
        self._check_counts()
        self.beta = beta
        self.chunk_rows = chunk_rows
        self.backend = backend

    def forward(self, hidden: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return fused_linear_cross_entropy_with_class_tensors(
            hidden, self.linear.weight, target, self.linear.bias, class_weight=self.class_weight,
            margins=self.margins, logit_bias=self.logit_bias, options=self.options, chunk_rows=self.chunk_rows,
            backend=self.backend)

    def extra_repr(self) -> str:
        o = self.options
        return (f"in_features={self.in_features}, num_classes={self.num_classes}, beta={self.beta}, "
                f"focal_gamma={o.focal_gamma}, scale={o.scale}, label_smoothing={o.label_smoothing}, "
                f"reduction={o.reduction!r}, chunk_rows={self.chunk_rows}, backend={self.backend!r}"
                + (f", schedule={self.schedule!r}" if self.schedule is not None else ""))


class FusedLinearClassBalancedBCE(_FusedLinearLoss):
    """nn.Linear(in_features, num_labels) followed by the class-balanced multi-label BCE, fused
    (:func:`pycmlt.ops.fused_linear_class_balanced_bce`) — e.g. word prediction over a large
    vocabulary. `forward(hidden, target)` returns the loss, `logits(hidden)` the plain logits.
    `loss_weight` (buffer) is the explicit or class-balanced weight (broadcast to the logits; named so
    because `weight` is the classifier matrix), `pos_weight` the positive weight.
    """

    def __init__(self, in_features: int, num_labels: int, bias: bool = True, class_counts=None, *,
                 beta: float | None = None, loss_weight: torch.Tensor | None = None,
                 pos_weight: torch.Tensor | None = None, focal_gamma: float = 0.0, reduction: str = "mean",
                 chunk_rows: int | None = None, backend: str = "auto", schedule=None, device=None, dtype=None,
                 linear: nn.Linear | None = None):
        super().__init__()
        self.options = BCEOptions(focal_gamma, reduction)
        check_chunk_rows(chunk_rows)
        self._init_linear(in_features, num_labels, bias, device, dtype, linear)
        register_bce_statistics(self, class_counts, beta=beta, weight=loss_weight, pos_weight=pos_weight,
                                schedule=schedule, weight_name="loss_weight")
        self._check_counts()
        self.beta = beta
        self.chunk_rows = chunk_rows
        self.backend = backend

    @renamed_keywords(targets="target")
    def forward(self, hidden: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return fused_linear_bce_with_class_tensors(
            hidden, self.linear.weight, target, self.linear.bias, loss_weight=self.loss_weight,
            pos_weight=self.pos_weight, options=self.options, chunk_rows=self.chunk_rows, backend=self.backend)

    def extra_repr(self) -> str:
        o = self.options
        return (f"in_features={self.in_features}, num_labels={self.num_classes}, beta={self.beta}, "
                f"focal_gamma={o.focal_gamma}, reduction={o.reduction!r}, chunk_rows={self.chunk_rows}, "
                f"backend={self.backend!r}" + (f", schedule={self.schedule!r}" if self.schedule is not None else ""))
