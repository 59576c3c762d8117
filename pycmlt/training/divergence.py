"""Divergence stops a run at once instead of training on through NaN: every step checks the loss
and the gradient norm (one host sync, shared with the loss logging), and every epoch checks the
parameters before they are checkpointed, so checkpoint.pt never holds NaN or infinite weights."""
from __future__ import annotations

import math

import torch

from pycmlt.errors import TrainingDivergedError

ADVICE = ("nothing of this epoch was saved (checkpoint.pt, if any, keeps the last completed epoch); lower the "
          "learning rate (lr) or check the data")


def step_health(loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> torch.Tensor:
    """[loss, total gradient norm] as one tensor, read with a single sync after backward."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros((), device=loss.device)
    return torch.stack([loss.detach().float(), norm.float().to(loss.device)])


def check_step(health: list[float], parts: dict, epoch: int, step: int, steps: int, lr: float, *,
               gradient_overflow_skips: bool = False) -> None:
    """TrainingDivergedError naming the epoch and step (1-based) when the loss or a gradient is not finite.
    gradient_overflow_skips: fp16 loss scaling is on, where an overflowing gradient makes the GradScaler
    skip the step and lower its scale (its normal operation): only the loss is checked then."""
    loss, grad_norm = health
    where = f"training diverged at epoch {epoch + 1}, step {step + 1}/{steps} (lr {lr:.3g})"
    if not math.isfinite(loss):
        terms = ", ".join(f"{k} {float(v.detach()):.4g}" for k, v in parts.items())
        raise TrainingDivergedError(f"{where}: the loss is {loss} ({terms}); {ADVICE}")
    if not math.isfinite(grad_norm) and not gradient_overflow_skips:
        raise TrainingDivergedError(f"{where}: the loss is {loss:.4g} but a gradient is NaN or infinite; {ADVICE}")


def check_parameters(named_parameters, epoch: int) -> None:
    """TrainingDivergedError naming the first parameter that is NaN or infinite after an epoch."""
    for name, p in named_parameters:
        if not torch.isfinite(p.detach()).all():
            raise TrainingDivergedError(f"training diverged in epoch {epoch + 1}: parameter {name} is NaN or "
                                        f"infinite; {ADVICE}")
