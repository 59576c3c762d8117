"""Mixed-precision and compiled training steps (TrainConfig.precision, TrainConfig.compile).

bf16 and fp16 run the forward pass under torch.autocast (the loss ops take fp16/bf16 logits and
accumulate in fp32). fp16 also scales the loss with a GradScaler, whose skipped steps (an overflowing
gradient after a scale increase) are its normal operation, not divergence. fp32 is a no-op wrapper,
so the training loop reads the same whatever the precision.
"""
from __future__ import annotations

import contextlib

import torch

from pycmlt.training.config import PRECISIONS

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class MixedPrecision:
    """Autocast context, loss scaling and the optimizer step of one precision on one device."""

    def __init__(self, precision: str, device: torch.device):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.precision = precision
        self.device = torch.device(device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=precision == "fp16")

    @property
    def scaling(self) -> bool:
        """True when gradients are loss-scaled (fp16): a non-finite gradient then skips the step."""
        return self.scaler.is_enabled()

    def autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=_DTYPES[self.precision])

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Gradients in their true scale (for the gradient-norm check) before step()."""
        if self.scaling:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict:
        return self.scaler.state_dict()

    def load_state_dict(self, state: dict | None) -> None:
        if state:
            self.scaler.load_state_dict(state)


def compiled(module: torch.nn.Module, enabled: bool) -> torch.nn.Module:
    """torch.compile(module) for the training forward when enabled (it shares the module's
    parameters: checkpoints and evaluation keep using the plain module)."""
    return torch.compile(module) if enabled else module
