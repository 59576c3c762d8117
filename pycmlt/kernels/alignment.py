"""Triton kernel of the alignment loss (docs/ops/alignment.md): 1 - cos(a, b) or |a - b|^2 per row pair, fused
with the L2 normalisation; the gradients of both inputs are written in the same launch.

Per row: aa = <a, a>, bb = <b, b>, ab = <a, b> (and |a - b|^2) in one sweep, the coefficients of
csrc/common/align_row_math.h, then a sweep writing dl/da = alpha_a a + beta b, dl/db = alpha_b b + beta a.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

NORM_EPS = 1e-12


@triton.jit
def _alignment_kernel(
    a_ptr,            # [n_rows, dim] fp32/fp16/bf16, contiguous
    b_ptr,            # [n_rows, dim] a's dtype, contiguous
    loss_rows_ptr,    # [n_rows] fp32 out: per-row losses
    grad_a_ptr,       # [n_rows, dim] out in a's dtype, contiguous (when GRAD_A)
    grad_b_ptr,       # [n_rows, dim] out in b's dtype, contiguous (when GRAD_B)
    n_rows, dim, grad_scale,
    KIND: tl.constexpr, NORMALIZE: tl.constexpr, GRAD_A: tl.constexpr, GRAD_B: tl.constexpr,
    ROWS: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """ROWS row pairs per program; KIND 0 = 1 - cos(a, b), 1 = |a - b|^2 (of the normalised rows if NORMALIZE)."""
    pid = tl.program_id(0)
    rows = pid * ROWS + tl.arange(0, ROWS)
    row_ok = rows < n_rows
    base = rows.to(tl.int64)[:, None] * dim
    aa = tl.zeros((ROWS,), tl.float32)
    bb = tl.zeros((ROWS,), tl.float32)
    ab = tl.zeros((ROWS,), tl.float32)
    dd = tl.zeros((ROWS,), tl.float32)
    for d0 in range(0, dim, BLOCK_D):
        cols = d0 + tl.arange(0, BLOCK_D)
        mask = row_ok[:, None] & (cols < dim)[None, :]
        x = tl.load(a_ptr + base + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        y = tl.load(b_ptr + base + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        aa += tl.sum(x * x, axis=1)
        bb += tl.sum(y * y, axis=1)
        ab += tl.sum(x * y, axis=1)
        dd += tl.sum((x - y) * (x - y), axis=1)
    if NORMALIZE:
        na = tl.sqrt(aa)
        nb = tl.sqrt(bb)
        ua = 1.0 / tl.maximum(na, NORM_EPS)
        ub = 1.0 / tl.maximum(nb, NORM_EPS)
        pa = na >= NORM_EPS
        pb = nb >= NORM_EPS
        c = ab * ua * ub
        if KIND == 0:
            alpha_a = tl.where(pa, c * ua * ua, 0.0)
            alpha_b = tl.where(pb, c * ub * ub, 0.0)
            beta = -ua * ub
        else:
            alpha_a = 2.0 * ua * ua * (1.0 - tl.where(pa, aa * ua * ua - c, 0.0))
            alpha_b = 2.0 * ub * ub * (1.0 - tl.where(pb, bb * ub * ub - c, 0.0))
            beta = -2.0 * ua * ub
    else:
        ua = tl.full((ROWS,), 1.0, tl.float32)
        ub = ua
        c = ab
        if KIND == 0:
            alpha_a = tl.zeros((ROWS,), tl.float32)
            alpha_b = alpha_a
            beta = tl.full((ROWS,), -1.0, tl.float32)
        else:
            alpha_a = tl.full((ROWS,), 2.0, tl.float32)
            alpha_b = alpha_a
            beta = tl.full((ROWS,), -2.0, tl.float32)
    if KIND == 0:
        loss = 1.0 - c
    elif NORMALIZE:
        loss = tl.zeros((ROWS,), tl.float32)
        for d0 in range(0, dim, BLOCK_D):
            cols = d0 + tl.arange(0, BLOCK_D)
            mask = row_ok[:, None] & (cols < dim)[None, :]
            x = tl.load(a_ptr + base + cols[None, :], mask=mask, other=0.0).to(tl.float32)
            y = tl.load(b_ptr + base + cols[None, :], mask=mask, other=0.0).to(tl.float32)
            e = ua[:, None] * x - ub[:, None] * y
            loss += tl.sum(e * e, axis=1)
    else:
        loss = dd
    tl.store(loss_rows_ptr + rows, loss, mask=row_ok)
    if GRAD_A or GRAD_B:
        ca = (grad_scale * alpha_a)[:, None]
        cb = (grad_scale * alpha_b)[:, None]
        be = (grad_scale * beta)[:, None]
        for d0 in range(0, dim, BLOCK_D):
            cols = d0 + tl.arange(0, BLOCK_D)
            mask = row_ok[:, None] & (cols < dim)[None, :]
            xr = tl.load(a_ptr + base + cols[None, :], mask=mask, other=0.0)
            yr = tl.load(b_ptr + base + cols[None, :], mask=mask, other=0.0)
            x = xr.to(tl.float32)
            y = yr.to(tl.float32)
            if GRAD_A:
                tl.store(grad_a_ptr + base + cols[None, :], (ca * x + be * y).to(xr.dtype), mask=mask)
            if GRAD_B:
                tl.store(grad_b_ptr + base + cols[None, :], (cb * y + be * x).to(yr.dtype), mask=mask)


def alignment_rows(a: torch.Tensor, b: torch.Tensor, kind: int, normalize: bool, grad_scale: float,
                   grad_a: bool, grad_b: bool):
    """Per-row losses [N] fp32 and the gradients (scaled by grad_scale) or empty [0] tensors."""
    a, b = a.contiguous(), b.contiguous()
    n, d = a.shape
    loss = torch.empty(n, device=a.device, dtype=torch.float32)
    ga = torch.empty((n, d) if grad_a else (0,), device=a.device, dtype=a.dtype)
    gb = torch.empty((n, d) if grad_b else (0,), device=a.device, dtype=a.dtype)
    if n == 0:
        return loss, ga, gb
    block_d = min(triton.next_power_of_2(max(d, 1)), 1024 if a.device.type == "cuda" else 256)
    rows = max(1, min(16, 2048 // block_d))
    grid = (triton.cdiv(n, rows),)
    unused = loss  # any device pointer, for the arguments a flag says the kernel does not read
    _alignment_kernel[grid](a_ptr=a, b_ptr=b, loss_rows_ptr=loss, grad_a_ptr=ga if grad_a else unused,
                            grad_b_ptr=gb if grad_b else unused, n_rows=n, dim=d, grad_scale=float(grad_scale),
                            KIND=kind, NORMALIZE=normalize, GRAD_A=grad_a, GRAD_B=grad_b, ROWS=rows,
                            BLOCK_D=block_d, num_warps=4)
    return loss, ga, gb
