"""ClassBalancedCrossEntropy: the class-balanced cross-entropy with its class statistics as buffers."""
from __future__ import annotations

import torch
from torch import nn

from pycmlt.nn._scheduled import EpochScheduled
from pycmlt.ops._checks import class_counts_tensor
from pycmlt.ops._deprecation import renamed_keywords
from pycmlt.ops.class_balance import class_balanced_weights, ldam_margins, logit_adjustment
from pycmlt.ops._recorded_call import recorded_call
from pycmlt.ops.cross_entropy import cross_entropy_module_call
from pycmlt.ops.loss_options import CrossEntropyOptions


def register_class_statistics(module: nn.Module, class_counts, *, beta, class_weight, ldam_max_margin,
                              logit_adjust_tau, schedule) -> None:
    """Registers the buffers class_counts, class_weight, margins, logit_bias (None where unused) and
    the epoch schedule of the class weights (see pycmlt.nn._scheduled.EpochScheduled)."""
    needs = [n for n, used in (("beta", beta is not None), ("ldam_max_margin", ldam_max_margin != 0),
                               ("logit_adjust_tau", logit_adjust_tau != 0)) if used]
    if class_counts is None and needs:
        raise ValueError(f"{', '.join(needs)} need class_counts (the training count of each class)")
    counts = class_counts_tensor(class_counts) if class_counts is not None else None
    module.register_buffer("class_counts", counts.float() if counts is not None else None)
    num_classes = counts.numel() if counts is not None else None
    if schedule is not None:
        module._init_schedule(schedule, "class_weight", num_classes or getattr(schedule, "num_classes", None),
                              {"beta": beta is not None, "class_weight": class_weight is not None})
    else:
        module._init_schedule(None, "class_weight", num_classes, {})
        if class_weight is not None:
            class_weight = class_weight.detach().float()
        elif beta is not None:
            class_weight = class_balanced_weights(counts, beta)
        module.register_buffer("class_weight", class_weight)
    module.register_buffer("margins", ldam_margins(counts, ldam_max_margin) if ldam_max_margin else None)
    module.register_buffer("logit_bias", logit_adjustment(counts, logit_adjust_tau) if logit_adjust_tau else None)


class ClassBalancedCrossEntropy(EpochScheduled, nn.Module):
    """Module form of :func:`pycmlt.ops.class_balanced_cross_entropy`.

    Class counts, weights, margins and logit offsets are derived once and kept as buffers, so they
    follow `.to(device)` and are saved in the state dict. `schedule` (e.g.
    :class:`pycmlt.schedules.DeferredReweighting`, for LDAM-DRW) sets the class weights of each
    epoch through the `update(epoch)` hook; it replaces `beta` / `class_weight` (`weight=` is the
    deprecated name of `class_weight`). The scalar options are validated once, into `self.options`.
    """

    @renamed_keywords(weight="class_weight")
    def __init__(self, class_counts=None, *, beta: float | None = None, class_weight: torch.Tensor | None = None,
                 focal_gamma: float = 0.0, ldam_max_margin: float = 0.0, ldam_scale: float = 1.0,
                 logit_adjust_tau: float = 0.0, label_smoothing: float = 0.0, ignore_index: int = -100,
                 reduction: str = "mean", backend: str = "auto", schedule=None):
        super().__init__()
        self.options = CrossEntropyOptions(ldam_scale, focal_gamma, label_smoothing, ignore_index, reduction)
        register_class_statistics(self, class_counts, beta=beta, class_weight=class_weight,
                                  ldam_max_margin=ldam_max_margin, logit_adjust_tau=logit_adjust_tau,
                                  schedule=schedule)
        self.beta = beta
        self.backend = backend

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        buffers = self._buffers  # not self.margins etc.: nn.Module's attribute fallback costs ~1 us per buffer
        return cross_entropy_module_call(recorded_call(self), logits, target, buffers["class_weight"],
                                         buffers["margins"], buffers["logit_bias"], self.options, self.backend)

    def extra_repr(self) -> str:
        n = None if self.class_counts is None else self.class_counts.numel()
        o = self.options
        return (f"num_classes={n}, beta={self.beta}, focal_gamma={o.focal_gamma}, scale={o.scale}, "
                f"label_smoothing={o.label_smoothing}, reduction={o.reduction!r}, backend={self.backend!r}"
                + (f", schedule={self.schedule!r}" if self.schedule is not None else ""))
