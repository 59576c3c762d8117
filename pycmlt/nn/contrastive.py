"""CrossModalContrastiveLoss and AlignmentLoss: module forms of the cross-modal ops
(docs/ops/contrastive.md, docs/ops/alignment.md)."""
from __future__ import annotations

import math

import torch
from torch import nn

from pycmlt.ops._checks import check_finite_scalar, class_counts_tensor
from pycmlt.ops.alignment import KINDS, alignment_loss
from pycmlt.ops.class_balance import class_balanced_weights
from pycmlt.ops.contrastive import DEFAULT_LOGIT_SCALE, contrastive_with_class_tensors

MAX_LOGIT_SCALE = math.log(100.0)


class CrossModalContrastiveLoss(nn.Module):
    """Module form of :func:`pycmlt.ops.cross_modal_contrastive` with a learnable temperature.

    logit_scale is a parameter initialised to log(1 / 0.07) (CLIP); the forward pass uses
    min(logit_scale, max_logit_scale) (log 100: logits are never scaled by more than 100, as in CLIP;
    above the cap its gradient is 0). Call `clamp_()` after the optimiser step to clamp the parameter
    itself, as CLIP's training loop does. learnable_scale=False keeps it as a fixed buffer.
    class_counts + beta give class-balanced anchor weights (kept as a buffer).
    forward(a, b, labels=None, b_labels=None, return_stats=False).
    """

    def __init__(self, class_counts=None, *, beta: float | None = None,
                 logit_scale: float = DEFAULT_LOGIT_SCALE, learnable_scale: bool = True,
                 max_logit_scale: float | None = MAX_LOGIT_SCALE, normalize: bool = True, symmetric: bool = True,
                 reduction: str = "mean", gather: bool = False, group=None, backend: str = "auto"):
        super().__init__()
        if (class_counts is None) != (beta is None):
            raise ValueError("class-balanced anchor weights need both class_counts and beta")
        initial = torch.tensor(check_finite_scalar("logit_scale", logit_scale), dtype=torch.float32)
        if learnable_scale:
            self.logit_scale = nn.Parameter(initial)
        else:
            self.register_buffer("logit_scale", initial)
        counts = class_counts_tensor(class_counts) if class_counts is not None else None
        self.register_buffer("class_counts", counts.float() if counts is not None else None)
        self.register_buffer("class_weight", class_balanced_weights(counts, beta) if counts is not None else None)
        self.max_logit_scale = None if max_logit_scale is None else check_finite_scalar("max_logit_scale",
                                                                                        max_logit_scale)
        self.beta = beta
        self.normalize = normalize
        self.symmetric = symmetric
        self.reduction = reduction
        self.gather = gather
        self.group = group
        self.backend = backend

    def effective_logit_scale(self) -> torch.Tensor:
        if self.max_logit_scale is None:
            return self.logit_scale
        return self.logit_scale.clamp(max=self.max_logit_scale)

    @property
    def temperature(self) -> float:
        return float(torch.exp(-self.effective_logit_scale().detach()))

    @torch.no_grad()
    def clamp_(self) -> None:
        """Clamp the parameter to max_logit_scale in place (after optimizer.step(), like CLIP)."""
        if self.max_logit_scale is not None:
            self.logit_scale.clamp_(max=self.max_logit_scale)

    def forward(self, a: torch.Tensor, b: torch.Tensor, labels: torch.Tensor | None = None,
                b_labels: torch.Tensor | None = None, *, return_stats: bool = False):
        return contrastive_with_class_tensors(
            a, b, labels=labels, b_labels=b_labels, logit_scale=self.effective_logit_scale(),
            normalize=self.normalize, symmetric=self.symmetric, class_weight=self.class_weight,
            reduction=self.reduction, gather=self.gather, group=self.group, return_stats=return_stats,
            backend=self.backend)

    def extra_repr(self) -> str:
        n = None if self.class_counts is None else self.class_counts.numel()
        return (f"num_classes={n}, beta={self.beta}, temperature={self.temperature:.4g}, "
                f"max_logit_scale={self.max_logit_scale}, normalize={self.normalize}, symmetric={self.symmetric}, "
                f"reduction={self.reduction!r}, gather={self.gather}, backend={self.backend!r}")


class AlignmentLoss(nn.Module):
    """Module form of :func:`pycmlt.ops.alignment_loss`; detach_target=True stops the gradient of b
    (the CMI target of docs/method.md: the pooled word embedding)."""

    def __init__(self, kind: str = "cosine", *, normalize: bool = True, reduction: str = "mean",
                 detach_target: bool = False, backend: str = "auto"):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {tuple(KINDS)}, got {kind!r}")
        self.kind = kind
        self.normalize = normalize
        self.reduction = reduction
        self.detach_target = detach_target
        self.backend = backend

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.detach_target:
            b = b.detach()
        return alignment_loss(a, b, kind=self.kind, normalize=self.normalize, reduction=self.reduction,
                              backend=self.backend)

    def extra_repr(self) -> str:
        return (f"kind={self.kind!r}, normalize={self.normalize}, reduction={self.reduction!r}, "
                f"detach_target={self.detach_target}, backend={self.backend!r}")
