"""Alignment loss (docs/ops/alignment.md) between paired rows, fused with the L2 normalisation.

    kind="cosine": l_i = 1 - <n(a_i), n(b_i)>        kind="mse": l_i = |n(a_i) - n(b_i)|^2
with n(x) = x / max(|x|, eps) (F.normalize, eps = 1e-12) when normalize=True and n(x) = x otherwise.
The squared distance is summed over the feature dimension (per pair, as in docs/ops/alignment.md; F.mse_loss
would also divide by D). Reductions over the pairs: mean, sum, none (the leading shape of the inputs).
The fused kernels compute both gradients in the forward pass (backward only scales them); pass
`b.detach()` (or AlignmentLoss(detach_target=True)) for a fixed target.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from pycmlt import _extension
from pycmlt.ops import _backend
from pycmlt.ops._checks import check_same_device, check_tensor, compute_dtype, reduction_code, reduction_name
from pycmlt.ops._registration import call_fused_loss, register_fused_loss

OP_NAME = "alignment_loss"
NORM_EPS = 1e-12
KINDS = {"cosine": 0, "mse": 1}


def alignment_loss(a: torch.Tensor, b: torch.Tensor, *, kind: str = "cosine", normalize: bool = True,
                   reduction: str = "mean", backend: str = "auto") -> torch.Tensor:
    """1 - cos(a, b) or |a - b|^2 per pair of rows; a and b of the same shape [..., D]."""
    check_tensor("a", a, floating=True)
    check_tensor("b", b, floating=True)
    check_same_device("a", a, b=b)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {tuple(KINDS)}, got {kind!r}")
    code = reduction_code(reduction)
    if a.dim() == 0:
        raise ValueError("a and b must have shape [..., D] (at least 1-D), got scalars")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {list(a.shape)} and {list(b.shape)}")
    if a.dtype != b.dtype:
        common = torch.promote_types(a.dtype, b.dtype)
        a, b = a.to(common), b.to(common)
    out_shape = a.shape[:-1]
    rows = out_shape.numel()  # explicit: reshape(-1, 0) is ambiguous when D = 0
    a2, b2 = a.reshape(rows, a.shape[-1]), b.reshape(rows, b.shape[-1])
    chosen = _backend.resolve(backend, a2, OP_NAME)
    if chosen == "torch":
        loss = alignment_reference(a2, b2, kind=kind, normalize=normalize, reduction=reduction)
    else:
        op = torch.ops.pycmlt.alignment_triton if chosen == "triton" else torch.ops.pycmlt.alignment
        grad_on = torch.is_grad_enabled()
        loss = call_fused_loss(op, (a2, b2, KINDS[kind], normalize, code, grad_on and a2.requires_grad,
                                    grad_on and b2.requires_grad), (0, 1))
    loss = loss.to(a.dtype)
    return loss.reshape(out_shape) if code == 0 else loss


def alignment_reference(a, b, *, kind="cosine", normalize=True, reduction="mean", upcast=True):
    """Readable PyTorch reference on [N, D] rows; autograd for the gradient."""
    dtype = compute_dtype(a.dtype, b.dtype) if upcast else torch.promote_types(a.dtype, b.dtype)
    x, y = a.to(dtype), b.to(dtype)
    if normalize:
        x, y = F.normalize(x, dim=-1, eps=NORM_EPS), F.normalize(y, dim=-1, eps=NORM_EPS)
    loss = 1 - (x * y).sum(-1) if kind == "cosine" else (x - y).pow(2).sum(-1)
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.mean()


# ----------------------------------------------------------------------------- custom-op plumbing

def _fake(a, b, kind, normalize, reduction, grad_a, grad_b):
    n, d = a.shape
    loss = a.new_empty((n,) if reduction == 0 else (), dtype=torch.float32)
    return loss, a.new_empty((n, d) if grad_a else (0,)), a.new_empty((n, d) if grad_b else (0,))


@torch.library.custom_op("pycmlt::alignment_triton", mutates_args=())
def _alignment_triton(a: torch.Tensor, b: torch.Tensor, kind: int, normalize: bool, reduction: int,
                      grad_a: bool, grad_b: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from pycmlt.kernels.alignment import alignment_rows

    n = a.shape[0]
    grad_scale = (1.0 / n if n else 0.0) if reduction == 1 else 1.0
    loss_rows, ga, gb = alignment_rows(a, b, kind, normalize, grad_scale, grad_a, grad_b)
    if reduction == 0:
        return loss_rows, ga, gb
    total = loss_rows.sum()
    return (total / n if reduction == 1 else total), ga, gb


def _op_reference(a, b, kind, normalize, reduction, grad_a, grad_b):
    """The op's loss through the differentiable `torch` reference (for create_graph=True backward)."""
    kind_name = next(name for name, code in KINDS.items() if code == kind)
    return alignment_reference(a, b, kind=kind_name, normalize=normalize, reduction=reduction_name(reduction)).float()


def _register(qualname: str) -> None:
    register_fused_loss(qualname, _fake, differentiable=(0, 1), reference=_op_reference)


_register("pycmlt::alignment_triton")
if _extension.native_available():
    _register("pycmlt::alignment")
