"""Epoch schedules of the class weights of the pycmlt loss modules.

A schedule is any object with ``weights(epoch) -> Tensor [C]``. Loss modules built with
``schedule=...`` copy the schedule's weights into their class-weight buffer when their
``update(epoch)`` hook is called; :func:`apply_epoch` calls the hook of every pycmlt loss inside a
model::

    drw = pycmlt.schedules.DeferredReweighting(train_counts, beta=0.9999, start_epoch=160)
    crit = pycmlt.nn.ClassBalancedCrossEntropy(train_counts, ldam_max_margin=0.5, ldam_scale=30.0, schedule=drw)
    for epoch in range(200):
        crit.update(epoch)            # or pycmlt.schedules.apply_epoch(model_and_losses, epoch)
        ...
"""
from __future__ import annotations

import torch

from pycmlt.ops._checks import check_finite_scalar, class_counts_tensor
from pycmlt.ops.class_balance import class_balanced_weights


class ClassWeightSchedule:
    """Base class: `weights(epoch)` gives the fp32 class weights [C] to use during `epoch`."""

    num_classes: int

    def weights(self, epoch: int) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, epoch: int) -> torch.Tensor:
        return self.weights(epoch)


class DeferredReweighting(ClassWeightSchedule):
    """Deferred re-weighting (DRW, Cao et al. 2019, "LDAM-DRW"): uniform class weights before
    `start_epoch`, class-balanced weights (Cui et al. 2019, `beta`, normalised to sum to C) from it on.

    class_counts [C]: training count of each class (for multi-label data: the number of training
    examples in which each class is positive). Epochs count from 0, so with start_epoch=160 the
    re-weighting is in force from the 161st epoch (epoch index 160), as in the LDAM-DRW recipe of
    200 epochs on CIFAR-LT.
    """

    def __init__(self, class_counts, beta: float = 0.9999, *, start_epoch: int):
        counts = class_counts_tensor(class_counts)
        self.beta = check_finite_scalar("beta", beta, low=0.0, high=1.0, high_open=True)
        if isinstance(start_epoch, bool) or not isinstance(start_epoch, int) or start_epoch < 0:
            raise ValueError(f"start_epoch must be an int >= 0, got {start_epoch!r}")
        self.start_epoch = start_epoch
        self.num_classes = counts.numel()
        self._balanced = class_balanced_weights(counts, self.beta)

    def weights(self, epoch: int) -> torch.Tensor:
        if isinstance(epoch, bool) or not isinstance(epoch, int):
            raise TypeError(f"epoch must be an int, got {type(epoch).__name__}")
        if epoch < self.start_epoch:
            return torch.ones(self.num_classes, dtype=torch.float32)
        return self._balanced.clone()

    def is_reweighting(self, epoch: int) -> bool:
        return epoch >= self.start_epoch

    def __repr__(self) -> str:
        return (f"DeferredReweighting(num_classes={self.num_classes}, beta={self.beta}, "
                f"start_epoch={self.start_epoch})")


def apply_epoch(module: torch.nn.Module, epoch: int) -> int:
    """Calls `update(epoch)` on every pycmlt loss module inside `module` (itself included);
    returns how many were updated."""
    updated = 0
    for sub in module.modules():
        if getattr(sub, "_pycmlt_epoch_hook", False):
            sub.update(epoch)
            updated += 1
    return updated
