"""ClassBalancedBCE: the class-balanced multi-label sigmoid BCE with its weights as buffers."""
from __future__ import annotations

import torch
from torch import nn

from pycmlt.nn._scheduled import EpochScheduled
from pycmlt.ops._checks import check_tensor, class_counts_tensor
from pycmlt.ops._deprecation import renamed_keywords
from pycmlt.ops._recorded_call import recorded_call
from pycmlt.ops.bce import bce_module_call
from pycmlt.ops.class_balance import class_balanced_weights
from pycmlt.ops.loss_options import BCEOptions


def register_bce_statistics(module: nn.Module, class_counts, *, beta, weight, pos_weight, schedule,
                            weight_name: str) -> None:
    """Registers the buffers class_counts, `weight_name` (explicit or class-balanced weights) and
    pos_weight (None where unused), and the epoch schedule of the weights."""
    if beta is not None and class_counts is None:
        raise ValueError("beta needs class_counts (for multi-label data: the number of training examples in which "
                         "each class is positive)")
    if class_counts is not None and beta is None and schedule is None:
        raise ValueError("class_counts is only used for class-balanced weights: pass beta (e.g. beta=0.9999) or a "
                         "schedule as well, or drop class_counts")
    counts = class_counts_tensor(class_counts) if class_counts is not None else None
    module.register_buffer("class_counts", counts.float() if counts is not None else None)
    num_classes = counts.numel() if counts is not None else None
    if schedule is not None:
        module._init_schedule(schedule, weight_name, num_classes or getattr(schedule, "num_classes", None),
                              {"beta": beta is not None, weight_name: weight is not None})
    else:
        module._init_schedule(None, weight_name, num_classes, {})
        if weight is not None:
            check_tensor(weight_name, weight, floating=True)
            value = weight.detach().float()
        elif beta is not None:
            value = class_balanced_weights(counts, beta)
        else:
            value = None
        module.register_buffer(weight_name, value)
    if pos_weight is not None:
        check_tensor("pos_weight", pos_weight, floating=True)
        pos_weight = pos_weight.detach().float()
    module.register_buffer("pos_weight", pos_weight)


class ClassBalancedBCE(EpochScheduled, nn.Module):
    """Module form of :func:`pycmlt.ops.class_balanced_bce` (a drop-in for nn.BCEWithLogitsLoss).

    `weight` holds the explicit or class-balanced weights (broadcast against the logits, usually
    [C]), `pos_weight` the positive weights; both are buffers. `schedule` (e.g.
    :class:`pycmlt.schedules.DeferredReweighting`) sets the class weights of each epoch through the
    `update(epoch)` hook; it replaces `beta` / `weight`. `weight` keeps PyTorch's name (it is an
    element weight broadcast to the logits, not only a per-class one). The scalar options are
    validated once, into `self.options`.
    """

    def __init__(self, class_counts=None, *, beta: float | None = None, weight: torch.Tensor | None = None,
                 pos_weight: torch.Tensor | None = None, focal_gamma: float = 0.0, reduction: str = "mean",
                 backend: str = "auto", schedule=None):
        super().__init__()
        self.options = BCEOptions(focal_gamma, reduction)
        register_bce_statistics(self, class_counts, beta=beta, weight=weight, pos_weight=pos_weight,
                                schedule=schedule, weight_name="weight")
        self.beta = beta
        self.backend = backend

    @renamed_keywords(targets="target")
    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        buffers = self._buffers  # not self.weight: nn.Module's attribute fallback costs ~1 us per buffer
        return bce_module_call(recorded_call(self), logits, target, buffers["weight"], buffers["pos_weight"],
                               self.options, self.backend)

    def extra_repr(self) -> str:
        n = None if self.class_counts is None else self.class_counts.numel()
        o = self.options
        return (f"num_classes={n}, beta={self.beta}, focal_gamma={o.focal_gamma}, reduction={o.reduction!r}, "
                f"backend={self.backend!r}" + (f", schedule={self.schedule!r}" if self.schedule is not None else ""))
