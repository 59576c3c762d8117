"""Triton kernels of the cross-modal contrastive statistics (docs/ops/contrastive.md), flash-attention style.

S_ij = s * u_i * v_j * <a_i, b_j> with s = exp(logit_scale) and u, v the inverse L2 norms (1 without
normalisation): the dot products of the raw rows are accumulated in fp32 by tl.dot (tensor cores for
fp16/bf16), the normalisation is applied to the tile. No N x M tensor is written.

* `_row_stats_kernel`: one program per block of rows streams all column blocks, keeping a running
  max / sum of exp per row (log-sum-exp) and the sum of S over the positives. The column statistics
  are the row statistics of the transposed problem (b, a), a second launch.
* `_row_grad_kernel`: one program per (block of rows, slice of D) recomputes the tiles and
  accumulates dL/da^_i = s sum_j G_ij v_j b_j, with
  G_ij = g_lse_i exp(S_ij - lse_i) + g_clse_j exp(S_ij - clse_j) + pos_ij (g_pos_i + g_cpos_j)
  (derivation in csrc/cpu/contrastive.cpp). dL/db^ is the same kernel on the transposed problem.
The gradient through the normalisation and the logit-scale gradient sum_i <a^_i, dL/da^_i> are O(N D)
epilogues in PyTorch.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

NORM_EPS = 1e-12


@triton.jit
def _dots(A, B, rows64, cols64, row_ok, col_ok, stride_a, stride_b, D,
          BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, PRECISION: tl.constexpr,
          UPCAST: tl.constexpr):
    """[BLOCK_M, BLOCK_N] fp32 tile of raw dot products <a_i, b_j>."""
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, D, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        k_ok = ks < D
        a = tl.load(A + rows64[:, None] * stride_a + ks[None, :], mask=row_ok[:, None] & k_ok[None, :], other=0.0)
        b = tl.load(B + cols64[:, None] * stride_b + ks[None, :], mask=col_ok[:, None] & k_ok[None, :], other=0.0)
        if UPCAST:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, tl.trans(b), acc, input_precision=PRECISION)
    return acc


@triton.jit
def _positives(rows, cols, row_ok, col_ok, la, LB, diag, HAS_LABELS: tl.constexpr):
    if HAS_LABELS:
        lb = tl.load(LB + cols, mask=col_ok, other=0)
        pos = la[:, None] == lb[None, :]
    else:
        pos = cols[None, :] == rows[:, None] + diag
    return pos & row_ok[:, None] & col_ok[None, :]


@triton.jit
def _row_stats_kernel(
    A, B, U, V, SCALE_LOG, LA, LB, LSE, POS, N, M, D, stride_a, stride_b, diag,
    HAS_LABELS: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid = tl.program_id(0)
    rows = pid * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < N
    rows64 = rows.to(tl.int64)
    s = tl.exp(tl.load(SCALE_LOG).to(tl.float32))
    # Raw-unit similarities x_ij = u_i v_j <a_i, b_j>, running max m_i in the same units, exponents
    # s (x - m) <= 0 whatever s is (s x - s m rounds, or contracts to an FMA, far above 0 once
    # s x ~ 1e10: inf, then NaN). lse = s m + log(l) at the end.
    u = tl.load(U + rows, mask=row_ok, other=0.0)
    la = rows
    if HAS_LABELS:
        la = tl.load(LA + rows, mask=row_ok, other=0)
    m_i = tl.full((BLOCK_M,), float("-inf"), tl.float32)
    l_i = tl.zeros((BLOCK_M,), tl.float32)
    p_i = tl.zeros((BLOCK_M,), tl.float32)
    for n0 in range(0, M, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        col_ok = cols < M
        acc = _dots(A, B, rows64, cols.to(tl.int64), row_ok, col_ok, stride_a, stride_b, D,
                    BLOCK_M, BLOCK_N, BLOCK_K, PRECISION, UPCAST)
        v = tl.load(V + cols, mask=col_ok, other=0.0)
        sij = acc * u[:, None] * v[None, :]
        sij = tl.where(col_ok[None, :], sij, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(sij, axis=1))
        shift = tl.where(m_new == float("-inf"), 0.0, m_new)
        l_i = l_i * tl.exp(s * (m_i - shift)) + tl.sum(tl.exp(s * (sij - shift[:, None])), axis=1)
        m_i = m_new
        pos = _positives(rows, cols, row_ok, col_ok, la, LB, diag, HAS_LABELS)
        p_i += tl.sum(tl.where(pos, sij, 0.0), axis=1)
    lse = s * m_i + tl.log(l_i)
    tl.store(LSE + rows, lse, mask=row_ok)
    tl.store(POS + rows, s * p_i, mask=row_ok)


@triton.jit
def _row_grad_kernel(
    A, B, U, V, SCALE_LOG, LA, LB, LSE, GLSE, GPOS, CLSE, GCLSE, GCPOS, OUT, N, M, D, stride_a, stride_b, diag,
    HAS_LABELS: tl.constexpr, HAS_ROW: tl.constexpr, HAS_RPOS: tl.constexpr, HAS_COL: tl.constexpr,
    HAS_CPOS: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr, GRAD_PRECISION: tl.constexpr,
    GRAD_LOWP: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_DO: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_d = tl.program_id(1)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < N
    rows64 = rows.to(tl.int64)
    douts = pid_d * BLOCK_DO + tl.arange(0, BLOCK_DO)
    d_ok = douts < D
    s = tl.exp(tl.load(SCALE_LOG).to(tl.float32))
    u = tl.load(U + rows, mask=row_ok, other=0.0) * s
    la = rows
    if HAS_LABELS:
        la = tl.load(LA + rows, mask=row_ok, other=0)
    lse = tl.zeros((BLOCK_M,), tl.float32)
    glse = tl.zeros((BLOCK_M,), tl.float32)
    gpos = tl.zeros((BLOCK_M,), tl.float32)
    if HAS_ROW:
        lse = tl.load(LSE + rows, mask=row_ok, other=0.0)
        glse = tl.load(GLSE + rows, mask=row_ok, other=0.0)
    if HAS_RPOS:
        gpos = tl.load(GPOS + rows, mask=row_ok, other=0.0)
    acc_out = tl.zeros((BLOCK_M, BLOCK_DO), dtype=tl.float32)
    for n0 in range(0, M, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        col_ok = cols < M
        cols64 = cols.to(tl.int64)
        acc = _dots(A, B, rows64, cols64, row_ok, col_ok, stride_a, stride_b, D, BLOCK_M, BLOCK_N, BLOCK_K, PRECISION,
                    UPCAST)
        v = tl.load(V + cols, mask=col_ok, other=0.0)
        sij = acc * u[:, None] * v[None, :]
        g = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        # Softmax probabilities (<= 1): exponents clamped at 0, so that S here and the lse of the forward
        # pass (other rounding: the column lse comes from the transposed problem) cannot overflow.
        if HAS_ROW:
            g += glse[:, None] * tl.exp(tl.minimum(sij - lse[:, None], 0.0))
        if HAS_COL:
            clse = tl.load(CLSE + cols, mask=col_ok, other=0.0)
            gclse = tl.load(GCLSE + cols, mask=col_ok, other=0.0)
            g += gclse[None, :] * tl.exp(tl.minimum(sij - clse[None, :], 0.0))
        if HAS_RPOS or HAS_CPOS:
            pos = _positives(rows, cols, row_ok, col_ok, la, LB, diag, HAS_LABELS)
            coef = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
            if HAS_RPOS:
                coef += gpos[:, None]
            if HAS_CPOS:
                coef += tl.load(GCPOS + cols, mask=col_ok, other=0.0)[None, :]
            g += tl.where(pos, coef, 0.0)
        g = tl.where(row_ok[:, None] & col_ok[None, :], g, 0.0) * (s * v)[None, :]
        bt = tl.load(B + cols64[:, None] * stride_b + douts[None, :], mask=col_ok[:, None] & d_ok[None, :], other=0.0)
        if GRAD_LOWP:
            acc_out = tl.dot(g.to(bt.dtype), bt, acc_out)
        else:
            acc_out = tl.dot(g, bt.to(tl.float32), acc_out, input_precision=GRAD_PRECISION)
    tl.store(OUT + rows64[:, None] * D + douts[None, :], acc_out, mask=row_ok[:, None] & d_ok[None, :])


# ----------------------------------------------------------------------------- launch helpers

def _interpreting(x: torch.Tensor) -> bool:
    return x.device.type == "cpu"


def _config(x: torch.Tensor, d: int):
    """Tile sizes: small in the CPU interpreter (numpy is slow), tensor-core friendly on the GPU."""
    if _interpreting(x):
        return dict(BLOCK_M=16, BLOCK_N=16, BLOCK_K=16, BLOCK_DO=32), {}
    block_k = min(128, max(16, triton.next_power_of_2(d)))
    return dict(BLOCK_M=64, BLOCK_N=64, BLOCK_K=block_k, BLOCK_DO=min(128, max(16, triton.next_power_of_2(d)))), \
        dict(num_warps=4, num_stages=2)


def _precisions(x: torch.Tensor):
    """(dot precision of S, upcast the tiles to fp32 first?, precision of the gradient dot, gradient
    dot in the input dtype?). The CPU interpreter has no bf16 dot: there every dot runs in fp32."""
    if x.dtype == torch.float32 or _interpreting(x):
        return "ieee", True, "ieee", False
    if x.dtype == torch.bfloat16:
        return "tf32", False, "tf32", True
    # fp16: the gradient tile may be far below fp16's range (1 / (N M) scale); keep it in fp32 (tf32 dot).
    return "tf32", False, "tf32", False


def inverse_norms(x: torch.Tensor, normalize: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(1 / max(|x_i|, eps), |x_i|) in fp32, or (ones, None) without normalisation."""
    if not normalize:
        return torch.ones(x.shape[0], device=x.device, dtype=torch.float32), None
    norms = torch.linalg.vector_norm(x.float(), dim=1)
    return 1.0 / norms.clamp_min(NORM_EPS), norms


def _row_stats(a, b, u, v, logit_scale, la, lb, diag):
    n, m, d = a.shape[0], b.shape[0], a.shape[1]
    lse = torch.empty(n, device=a.device, dtype=torch.float32)
    pos = torch.empty(n, device=a.device, dtype=torch.float32)
    if n == 0:
        return lse, pos
    cfg, launch = _config(a, d)
    cfg.pop("BLOCK_DO")
    precision, upcast, _, _ = _precisions(a)
    has_labels = la is not None
    grid = (triton.cdiv(n, cfg["BLOCK_M"]),)
    _row_stats_kernel[grid](
        a, b, u, v, logit_scale, la if has_labels else u, lb if has_labels else u, lse, pos, n, m, d,
        a.stride(0), b.stride(0), diag, HAS_LABELS=has_labels, PRECISION=precision, UPCAST=upcast, **cfg, **launch)
    return lse, pos


def _rows(x: torch.Tensor) -> torch.Tensor:
    return x if x.stride(-1) == 1 else x.contiguous()


def contrastive_stats(a, b, logit_scale, labels_a, labels_b, diag_offset, normalize, col_stats):
    """(row_lse [N], row_pos [N], col_lse, col_pos) of pycmlt::contrastive_stats (fp32)."""
    a, b = _rows(a), _rows(b)
    logit_scale = logit_scale.reshape(()).to(torch.float32)
    u, _ = inverse_norms(a, normalize)
    v, _ = inverse_norms(b, normalize)
    row_lse, row_pos = _row_stats(a, b, u, v, logit_scale, labels_a, labels_b, diag_offset)
    if not col_stats:
        empty = a.new_empty((0,), dtype=torch.float32)
        return row_lse, row_pos, empty, empty.clone()
    col_lse, col_pos = _row_stats(b, a, v, u, logit_scale, labels_b, labels_a, -diag_offset)
    return row_lse, row_pos, col_lse, col_pos


def _row_grad(a, b, u, v, logit_scale, la, lb, diag, lse, g_lse, g_pos, clse, g_clse, g_cpos):
    """dL/da^ [N, D] fp32 (gradient w.r.t. the normalised rows of a)."""
    n, m, d = a.shape[0], b.shape[0], a.shape[1]
    out = torch.zeros((n, d), device=a.device, dtype=torch.float32)
    has_row, has_col = g_lse is not None, g_clse is not None
    if n == 0 or d == 0 or not (has_row or has_col or g_pos is not None or g_cpos is not None):
        return out
    cfg, launch = _config(a, d)
    precision, upcast, grad_precision, grad_lowp = _precisions(a)
    has_labels = la is not None
    dummy = u
    grid = (triton.cdiv(n, cfg["BLOCK_M"]), triton.cdiv(d, cfg["BLOCK_DO"]))
    _row_grad_kernel[grid](
        a, b, u, v, logit_scale, la if has_labels else dummy, lb if has_labels else dummy,
        lse if has_row else dummy, g_lse if has_row else dummy, g_pos if g_pos is not None else dummy,
        clse if has_col else dummy, g_clse if has_col else dummy, g_cpos if g_cpos is not None else dummy,
        out, n, m, d, a.stride(0), b.stride(0), diag,
        HAS_LABELS=has_labels, HAS_ROW=has_row, HAS_RPOS=g_pos is not None, HAS_COL=has_col,
        HAS_CPOS=g_cpos is not None, PRECISION=precision, UPCAST=upcast, GRAD_PRECISION=grad_precision,
        GRAD_LOWP=grad_lowp,
        **cfg, **launch)
    return out


def _finish(x, g_hat, u, norms, normalize):
    """Gradient through x^ = x / max(|x|, eps) and <x^, g_hat> summed (the logit-scale term)."""
    xf = x.float()
    dots = (xf * g_hat).sum(1)  # <x, g_hat>
    scale_term = (u * dots).sum()  # sum_i <x^_i, g_hat_i>
    if not normalize:
        return g_hat.to(x.dtype), scale_term
    proj = torch.where(norms >= NORM_EPS, u * u * u * dots, 0.0)
    grad = u[:, None] * g_hat - proj[:, None] * xf
    return grad.to(x.dtype), scale_term


def contrastive_grad(a, b, logit_scale, labels_a, labels_b, diag_offset, normalize, row_lse, col_lse,
                     g_row_lse, g_row_pos, g_col_lse, g_col_pos):
    """(grad_a, grad_b, grad_logit_scale) of pycmlt::contrastive_grad."""
    a, b = _rows(a), _rows(b)
    logit_scale = logit_scale.reshape(()).to(torch.float32)
    u, norm_a = inverse_norms(a, normalize)
    v, norm_b = inverse_norms(b, normalize)
    f32 = [None if t is None else t.to(torch.float32).contiguous()
           for t in (row_lse, col_lse, g_row_lse, g_row_pos, g_col_lse, g_col_pos)]
    row_lse, col_lse, g_row_lse, g_row_pos, g_col_lse, g_col_pos = f32
    ga_hat = _row_grad(a, b, u, v, logit_scale, labels_a, labels_b, diag_offset,
                       row_lse, g_row_lse, g_row_pos, col_lse, g_col_lse, g_col_pos)
    gb_hat = _row_grad(b, a, v, u, logit_scale, labels_b, labels_a, -diag_offset,
                       col_lse, g_col_lse, g_col_pos, row_lse, g_row_lse, g_row_pos)
    grad_a, scale_term = _finish(a, ga_hat, u, norm_a, normalize)
    grad_b, _ = _finish(b, gb_hat, v, norm_b, normalize)
    return grad_a, grad_b, scale_term
