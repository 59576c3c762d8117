"""ClassBalancedCrossEntropy: the class-balanced cross-entropy with its class statistics as buffers."""
from __future__ import annotations

import torch
from torch import nn

from pycmlt.ops._checks import check_finite_scalar, class_counts_tensor
from pycmlt.ops.class_balance import class_balanced_weights, ldam_margins, logit_adjustment
from pycmlt.ops.cross_entropy import cross_entropy_with_class_tensors


class ClassBalancedCrossEntropy(nn.Module):
    """Module form of :func:`pycmlt.ops.class_balanced_cross_entropy`.

    Class counts, weights, margins and logit offsets are derived once and kept as buffers, so they
    follow `.to(device)` and are saved in the state dict.
    """

    def __init__(self, class_counts=None, *, beta: float | None = None, weight: torch.Tensor | None = None,
                 focal_gamma: float = 0.0, ldam_max_margin: float = 0.0, ldam_scale: float = 1.0,
                 logit_adjust_tau: float = 0.0, label_smoothing: float = 0.0, ignore_index: int = -100,
                 reduction: str = "mean", backend: str = "auto"):
        super().__init__()
        needs = [n for n, used in (("beta", beta is not None), ("ldam_max_margin", ldam_max_margin != 0),
                                   ("logit_adjust_tau", logit_adjust_tau != 0)) if used]
        if class_counts is None and needs:
            raise ValueError(f"{', '.join(needs)} need class_counts (the training count of each class)")
        counts = class_counts_tensor(class_counts) if class_counts is not None else None
        self.register_buffer("class_counts", counts.float() if counts is not None else None)
        if weight is not None:
            class_weight = weight.detach().float()
        elif beta is not None:
            class_weight = class_balanced_weights(counts, beta)
        else:
            class_weight = None
        self.register_buffer("class_weight", class_weight)
        self.register_buffer("margins", ldam_margins(counts, ldam_max_margin) if ldam_max_margin else None)
        self.register_buffer("logit_bias", logit_adjustment(counts, logit_adjust_tau) if logit_adjust_tau else None)
        self.beta = beta
        self.scale = check_finite_scalar("ldam_scale", ldam_scale, low=0.0, low_open=True)
        self.focal_gamma = focal_gamma
        self.label_smoothing = label_smoothing
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.backend = backend

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return cross_entropy_with_class_tensors(
            logits, target, class_weight=self.class_weight, margins=self.margins, logit_bias=self.logit_bias,
            scale=self.scale, focal_gamma=self.focal_gamma, label_smoothing=self.label_smoothing,
            ignore_index=self.ignore_index, reduction=self.reduction, backend=self.backend)

    def extra_repr(self) -> str:
        n = None if self.class_counts is None else self.class_counts.numel()
        return (f"num_classes={n}, beta={self.beta}, focal_gamma={self.focal_gamma}, scale={self.scale}, "
                f"label_smoothing={self.label_smoothing}, reduction={self.reduction!r}, backend={self.backend!r}")
