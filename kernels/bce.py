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
    X, T, W, PW, LOSS, G, total, C, w_rs, w_cs, pw_rs, pw_cs, grad_scale, gamma,
    HAS_W: tl.constexpr, HAS_PW: tl.constexpr, FOCAL: tl.constexpr, ELEMENTWISE: tl.constexpr,
    COMPUTE_GRAD: tl.constexpr, BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < total
    x = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)
    t = tl.load(T + offs, mask=mask, other=0.0).to(tl.float32)
    row = offs // C
    col = offs - row * C
    if HAS_W:
        w = tl.load(W + row * w_rs + col * w_cs, mask=mask, other=0.0)
    else:
        w = tl.full((BLOCK,), 1.0, tl.float32)
    if HAS_PW:
        pw = tl.load(PW + row * pw_rs + col * pw_cs, mask=mask, other=1.0)
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
    if FOCAL:
        # q = 1 - p_t; loss = w q^g BCE; dq/dz / q = (1 - 2t) p (1 - p) / q, bounded by 1.
        q = t * q1 + (1.0 - t) * p
        pos = q > 0.0
        qs = tl.where(pos, q, 1.0)
        qg = tl.where(pos, tl.exp(gamma * tl.log(qs)), 0.0)
        ratio = tl.where(pos, (1.0 - 2.0 * t) * p * q1 / qs, 0.0)
        loss = w * qg * bce
        grad = w * qg * (gamma * ratio * bce + dbce)
    else:
        loss = w * bce
        grad = w * dbce
    if ELEMENTWISE:
        tl.store(LOSS + offs, loss, mask=mask)
    else:
        tl.store(LOSS + pid, tl.sum(tl.where(mask, loss, 0.0), axis=0))
    if COMPUTE_GRAD:
        tl.store(G + offs, (grad * grad_scale).to(G.dtype.element_ty), mask=mask)


def _strides(weight, n, c):
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
    w_rs, w_cs = _strides(weight, n, c)
    pw_rs, pw_cs = _strides(pos_weight, n, c)
    _bce_kernel[(programs,)](
        logits, targets, weight if weight is not None else loss, pos_weight if pos_weight is not None else loss,
        loss, grad if compute_grad else loss, total, c, w_rs, w_cs, pw_rs, pw_cs, float(grad_scale),
        float(focal_gamma),
        HAS_W=weight is not None, HAS_PW=pos_weight is not None, FOCAL=focal_gamma > 0,
        ELEMENTWISE=elementwise, COMPUTE_GRAD=compute_grad, BLOCK=BLOCK, num_warps=4,
    )
    return loss, grad
