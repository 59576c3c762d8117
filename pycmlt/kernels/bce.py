"""Triton kernels of the class-balanced sigmoid BCE (docs/ops/bce.md).

An element-wise kernel over the flattened [N, C] logits: each program computes BLOCK losses and
gradients (the gradient is written in the forward pass, so backward never reads the logits again)
and either stores the per-element losses or one partial sum. The gradient destination may be the
logits buffer itself (the in-place entry of the chunked fused linear + BCE).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 1024


@triton.jit
def _bce_kernel(
    logits_ptr,       # [n_rows, n_cols] fp32/fp16/bf16, contiguous (read as n_elements flat)
    targets_ptr,      # [n_rows, n_cols] contiguous, logits' dtype or fp32
    weight_ptr,       # [1 or n_rows, 1 or n_cols] fp32, broadcast by its strides (read when HAS_WEIGHT)
    pos_weight_ptr,   # [1 or n_rows, 1 or n_cols] fp32, broadcast like weight (read when HAS_POS_WEIGHT)
    loss_ptr,         # [n_elements] fp32 out: per-element losses (ELEMENTWISE), else [programs] partial sums
    grad_ptr,         # [n_rows, n_cols] out in logits' dtype, contiguous, may be logits (when COMPUTE_GRAD)
    n_elements, n_cols, weight_row_stride, weight_col_stride, pos_weight_row_stride, pos_weight_col_stride,
    grad_scale, focal_gamma,
    HAS_WEIGHT: tl.constexpr, HAS_POS_WEIGHT: tl.constexpr, FOCAL: tl.constexpr, ELEMENTWISE: tl.constexpr,
    COMPUTE_GRAD: tl.constexpr, BLOCK: tl.constexpr,
):
    """BLOCK elements of the flattened logits per program: loss and gradient of each."""
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n_elements
    x = tl.load(logits_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    t = tl.load(targets_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    row = offs // n_cols
    col = offs - row * n_cols
    if HAS_WEIGHT:
        w = tl.load(weight_ptr + row * weight_row_stride + col * weight_col_stride, mask=mask, other=0.0)
    else:
        w = tl.full((BLOCK,), 1.0, tl.float32)
    if HAS_POS_WEIGHT:
        pw = tl.load(pos_weight_ptr + row * pos_weight_row_stride + col * pos_weight_col_stride, mask=mask, other=1.0)
    else:
        pw = tl.full((BLOCK,), 1.0, tl.float32)
    # BCE = (1 - t) z - lw log(sigmoid(z)), lw = 1 + (pos_weight - 1) t (PyTorch's formula);
    # log(sigmoid(z)) = min(z, 0) - log1p(exp(-|z|)), log1p(e) = log(u) + (e - (u - 1)) / u, u = 1 + e.
    e = tl.exp(-tl.abs(x))
    inv = 1.0 / (1.0 + e)
    lo = e * inv
    nonneg = x >= 0.0
    p = tl.where(nonneg, inv, lo)
    q1 = tl.where(nonneg, lo, inv)
    u = 1.0 + e
    l1p = tl.log(u) + (e - (u - 1.0)) * inv
    log_sig = tl.where(x < 0.0, x, 0.0) - l1p
    lw = 1.0 + (pw - 1.0) * t
    bce = (1.0 - t) * x - lw * log_sig
    dbce = (1.0 - t) - lw * q1
    if FOCAL != 0:
        # q = 1 - p_t; loss = w q^g BCE; dq/dz / q = (1 - 2t) p (1 - p) / q, bounded by 1.
        q = t * q1 + (1.0 - t) * p
        pos = q > 0.0
        qs = tl.where(pos, q, 1.0)
        if FOCAL == 2:
            qg = q * q  # gamma = 2: exact, and no exp/log per element
        else:
            qg = tl.where(pos, tl.exp(focal_gamma * tl.log(qs)), 0.0)
        ratio = tl.where(pos, (1.0 - 2.0 * t) * p * q1 / qs, 0.0)
        loss = w * qg * bce
        grad = w * qg * (focal_gamma * ratio * bce + dbce)
    else:
        loss = w * bce
        grad = w * dbce
    if ELEMENTWISE:
        tl.store(loss_ptr + offs, loss, mask=mask)
    else:
        tl.store(loss_ptr + pid, tl.sum(tl.where(mask, loss, 0.0), axis=0))
    if COMPUTE_GRAD:
        tl.store(grad_ptr + offs, (grad * grad_scale).to(grad_ptr.dtype.element_ty), mask=mask)


def _focal_mode(focal_gamma):
    """The kernel's FOCAL flag: 0 without focal loss, 2 for gamma = 2 (q * q), 1 for any other gamma."""
    if focal_gamma <= 0:
        return 0
    return 2 if focal_gamma == 2.0 else 1


def _strides(weight):
    """(row stride, column stride) of a [1 or N, 1 or C] contiguous broadcast weight."""
    if weight is None:
        return 0, 0
    rows, cols = weight.shape
    return (cols if rows > 1 else 0), (1 if cols > 1 else 0)


def cb_bce_rows(logits, targets, weight, pos_weight, focal_gamma, grad_scale, elementwise, compute_grad, out=None):
    """Losses and, if compute_grad, grad_scale * d loss / d logits of [N, C] logits.

    Returns (loss, grad): loss is fp32 [N, C] when `elementwise`, else fp32 partial sums (one per
    program; their sum is the total). The gradient goes to `out` when given (an [N, C] contiguous
    buffer in logits' dtype; it may be `logits` itself), else to a new tensor.
    weight / pos_weight: None or fp32 contiguous [1 or N, 1 or C], broadcast over [N, C].
    """
    if not logits.is_contiguous():
        logits = logits.contiguous()
    if not targets.is_contiguous():
        targets = targets.contiguous()
    n, c = logits.shape
    total = n * c
    programs = triton.cdiv(total, BLOCK)
    dev = logits.device
    loss = torch.empty((n, c) if elementwise else (programs,), device=dev, dtype=torch.float32)
    if out is not None:
        if out.shape != logits.shape or not out.is_contiguous() or out.dtype != logits.dtype:
            raise ValueError("out must be a contiguous buffer with the shape and dtype of logits")
        grad = out
    else:
        grad = torch.empty((n, c) if compute_grad else (0,), device=dev, dtype=logits.dtype)
    if total == 0:
        return loss, grad
    weight_row_stride, weight_col_stride = _strides(weight)
    pos_weight_row_stride, pos_weight_col_stride = _strides(pos_weight)
    unused = loss  # any device pointer, for the arguments a flag says the kernel does not read
    _bce_kernel[(programs,)](
        logits_ptr=logits, targets_ptr=targets, weight_ptr=weight if weight is not None else unused,
        pos_weight_ptr=pos_weight if pos_weight is not None else unused, loss_ptr=loss,
        grad_ptr=grad if compute_grad else unused, n_elements=total, n_cols=c,
        weight_row_stride=weight_row_stride, weight_col_stride=weight_col_stride,
        pos_weight_row_stride=pos_weight_row_stride, pos_weight_col_stride=pos_weight_col_stride,
        grad_scale=float(grad_scale), focal_gamma=float(focal_gamma),
        HAS_WEIGHT=weight is not None, HAS_POS_WEIGHT=pos_weight is not None, FOCAL=_focal_mode(focal_gamma),
        ELEMENTWISE=elementwise, COMPUTE_GRAD=compute_grad, BLOCK=BLOCK, num_warps=4,
    )
    return loss, grad
