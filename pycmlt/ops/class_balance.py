"""Per-class tensors derived from training class counts: class-balanced weights, LDAM margins,
logit adjustment (docs/ops/cross_entropy.md). All return float32 tensors of shape [C]."""
from __future__ import annotations

import torch

from pycmlt.ops._checks import check_finite_scalar, class_counts_tensor


def class_balanced_weights(class_counts, beta: float) -> torch.Tensor:
    """Cui et al. 2019 weights (1 - beta) / (1 - beta^n_j), normalised to sum to C.

    beta in [0, 1): 0 gives uniform weights, values near 1 approach inverse frequency.
    """
    beta = check_finite_scalar("beta", beta, low=0.0, high=1.0, high_open=True)
    counts = class_counts_tensor(class_counts)
    if beta > 0:  # effective number of samples (1 - beta^n) / (1 - beta), computed without cancellation
        one_minus_beta_pow_n = -torch.expm1(counts * torch.log(torch.tensor(beta, dtype=torch.float64)))
    else:
        one_minus_beta_pow_n = torch.ones_like(counts)
    weights = (1.0 - beta) / one_minus_beta_pow_n
    weights = weights * (counts.numel() / weights.sum())
    return weights.to(device=_device_of(class_counts), dtype=torch.float32)


def ldam_margins(class_counts, max_margin: float) -> torch.Tensor:
    """LDAM margins m_j = max_margin * n_j^(-1/4) / max_k n_k^(-1/4) (Cao et al. 2019)."""
    max_margin = check_finite_scalar("max_margin", max_margin, low=0.0)
    counts = class_counts_tensor(class_counts)
    inv = counts.pow(-0.25)
    return (max_margin * inv / inv.max()).to(device=_device_of(class_counts), dtype=torch.float32)


def logit_adjustment(class_counts, tau: float) -> torch.Tensor:
    """Additive logit offsets tau * log(pi_j), pi_j = n_j / sum(n) (Menon et al. 2021; tau=1 is balanced softmax)."""
    tau = check_finite_scalar("tau", tau)
    counts = class_counts_tensor(class_counts)
    return (tau * torch.log(counts / counts.sum())).to(device=_device_of(class_counts), dtype=torch.float32)


def _device_of(value) -> torch.device:
    return value.device if isinstance(value, torch.Tensor) else torch.device("cpu")
