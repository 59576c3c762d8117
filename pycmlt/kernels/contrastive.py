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
def _dots(a_ptr, b_ptr, rows64, cols64, row_ok, col_ok, a_row_stride, b_row_stride, dim,
          BLOCK_ROWS: tl.constexpr, BLOCK_COLS: tl.constexpr, BLOCK_K: tl.constexpr, PRECISION: tl.constexpr,
          UPCAST: tl.constexpr):
    """[BLOCK_ROWS, BLOCK_COLS] fp32 tile of raw dot products <a_i, b_j>."""
    acc = tl.zeros((BLOCK_ROWS, BLOCK_COLS), dtype=tl.float32)
    for k0 in range(0, dim, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        k_ok = ks < dim
        a = tl.load(a_ptr + rows64[:, None] * a_row_stride + ks[None, :], mask=row_ok[:, None] & k_ok[None, :],
                    other=0.0)
        b = tl.load(b_ptr + cols64[:, None] * b_row_stride + ks[None, :], mask=col_ok[:, None] & k_ok[None, :],
                    other=0.0)
        if UPCAST:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, tl.trans(b), acc, input_precision=PRECISION)
    return acc


@triton.jit
def _positives(rows, cols, row_ok, col_ok, labels_a, labels_b_ptr, diag_offset, HAS_LABELS: tl.constexpr):
    """[BLOCK_ROWS, BLOCK_COLS] mask of the positive pairs: equal labels (labels_a: the tile's row labels), else
    the diagonal j = i + diag_offset."""
    if HAS_LABELS:
        labels_b = tl.load(labels_b_ptr + cols, mask=col_ok, other=0)
        pos = labels_a[:, None] == labels_b[None, :]
    else:
        pos = cols[None, :] == rows[:, None] + diag_offset
    return pos & row_ok[:, None] & col_ok[None, :]


@triton.jit
def _row_stats_kernel(
    a_ptr,              # [n_rows, dim] fp32/fp16/bf16, row stride a_row_stride, unit column stride
    b_ptr,              # [n_cols, dim] a's dtype, row stride b_row_stride, unit column stride
    inv_norm_a_ptr,     # [n_rows] fp32: 1 / max(|a_i|, eps), or ones without normalisation
    inv_norm_b_ptr,     # [n_cols] fp32: the same for b
    log_scale_ptr,      # [] fp32: the logit scale s = exp(*log_scale_ptr)
    labels_a_ptr,       # [n_rows] int64 (read when HAS_LABELS)
    labels_b_ptr,       # [n_cols] int64 (read when HAS_LABELS)
    row_lse_ptr,        # [n_rows] fp32 out: log-sum-exp of S over each row
    row_pos_ptr,        # [n_rows] fp32 out: sum of S over each row's positives
    n_rows, n_cols, dim, a_row_stride, b_row_stride, diag_offset,
    HAS_LABELS: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr,
    BLOCK_ROWS: tl.constexpr, BLOCK_COLS: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """BLOCK_ROWS rows of S = s u_i v_j <a_i, b_j> per program, streamed over column tiles (online max/sum)."""
    pid = tl.program_id(0)
    rows = pid * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    row_ok = rows < n_rows
    rows64 = rows.to(tl.int64)
    s = tl.exp(tl.load(log_scale_ptr).to(tl.float32))
    # Raw-unit similarities x_ij = u_i v_j <a_i, b_j>, running max m_i in the same units, exponents
    # s (x - m) <= 0 whatever s is (s x - s m rounds, or contracts to an FMA, far above 0 once
    # s x ~ 1e10: inf, then NaN). lse = s m + log(l) at the end.
    u = tl.load(inv_norm_a_ptr + rows, mask=row_ok, other=0.0)
    labels_a = rows
    if HAS_LABELS:
        labels_a = tl.load(labels_a_ptr + rows, mask=row_ok, other=0)
    m_i = tl.full((BLOCK_ROWS,), float("-inf"), tl.float32)
    l_i = tl.zeros((BLOCK_ROWS,), tl.float32)
    p_i = tl.zeros((BLOCK_ROWS,), tl.float32)
    for col0 in range(0, n_cols, BLOCK_COLS):
        cols = col0 + tl.arange(0, BLOCK_COLS)
        col_ok = cols < n_cols
        acc = _dots(a_ptr, b_ptr, rows64, cols.to(tl.int64), row_ok, col_ok, a_row_stride, b_row_stride, dim,
                    BLOCK_ROWS, BLOCK_COLS, BLOCK_K, PRECISION, UPCAST)
        v = tl.load(inv_norm_b_ptr + cols, mask=col_ok, other=0.0)
        sij = acc * u[:, None] * v[None, :]
        sij = tl.where(col_ok[None, :], sij, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(sij, axis=1))
        shift = tl.where(m_new == float("-inf"), 0.0, m_new)
        l_i = l_i * tl.exp(s * (m_i - shift)) + tl.sum(tl.exp(s * (sij - shift[:, None])), axis=1)
        m_i = m_new
        pos = _positives(rows, cols, row_ok, col_ok, labels_a, labels_b_ptr, diag_offset, HAS_LABELS)
        p_i += tl.sum(tl.where(pos, sij, 0.0), axis=1)
    lse = s * m_i + tl.log(l_i)
    tl.store(row_lse_ptr + rows, lse, mask=row_ok)
    tl.store(row_pos_ptr + rows, s * p_i, mask=row_ok)


@triton.jit
def _row_grad_kernel(
    a_ptr,              # [n_rows, dim] fp32/fp16/bf16, row stride a_row_stride, unit column stride
    b_ptr,              # [n_cols, dim] a's dtype, row stride b_row_stride, unit column stride
    inv_norm_a_ptr,     # [n_rows] fp32: 1 / max(|a_i|, eps), or ones without normalisation
    inv_norm_b_ptr,     # [n_cols] fp32: the same for b
    log_scale_ptr,      # [] fp32: the logit scale s = exp(*log_scale_ptr)
    labels_a_ptr,       # [n_rows] int64 (read when HAS_LABELS)
    labels_b_ptr,       # [n_cols] int64 (read when HAS_LABELS)
    row_lse_ptr,        # [n_rows] fp32: the forward pass's row log-sum-exp (read when HAS_ROW_LSE)
    grad_row_lse_ptr,   # [n_rows] fp32: incoming gradient of row_lse (read when HAS_ROW_LSE)
    grad_row_pos_ptr,   # [n_rows] fp32: incoming gradient of row_pos (read when HAS_ROW_POS)
    col_lse_ptr,        # [n_cols] fp32: the column log-sum-exp (read when HAS_COL_LSE)
    grad_col_lse_ptr,   # [n_cols] fp32: incoming gradient of col_lse (read when HAS_COL_LSE)
    grad_col_pos_ptr,   # [n_cols] fp32: incoming gradient of col_pos (read when HAS_COL_POS)
    grad_a_hat_ptr,     # [n_rows, dim] fp32 out, contiguous: dL/da^ (w.r.t. the normalised rows of a)
    n_rows, n_cols, dim, a_row_stride, b_row_stride, diag_offset,
    HAS_LABELS: tl.constexpr, HAS_ROW_LSE: tl.constexpr, HAS_ROW_POS: tl.constexpr, HAS_COL_LSE: tl.constexpr,
    HAS_COL_POS: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr, GRAD_PRECISION: tl.constexpr,
    GRAD_LOWP: tl.constexpr,
    BLOCK_ROWS: tl.constexpr, BLOCK_COLS: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D_OUT: tl.constexpr,
):
    """dL/da^ of BLOCK_ROWS rows and a BLOCK_D_OUT slice of dim per program (grid: row blocks x dim slices)."""
    pid_rows = tl.program_id(0)
    pid_d = tl.program_id(1)
    rows = pid_rows * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    row_ok = rows < n_rows
    rows64 = rows.to(tl.int64)
    douts = pid_d * BLOCK_D_OUT + tl.arange(0, BLOCK_D_OUT)
    d_ok = douts < dim
    s = tl.exp(tl.load(log_scale_ptr).to(tl.float32))
    u = tl.load(inv_norm_a_ptr + rows, mask=row_ok, other=0.0) * s
    labels_a = rows
    if HAS_LABELS:
        labels_a = tl.load(labels_a_ptr + rows, mask=row_ok, other=0)
    lse = tl.zeros((BLOCK_ROWS,), tl.float32)
    glse = tl.zeros((BLOCK_ROWS,), tl.float32)
    gpos = tl.zeros((BLOCK_ROWS,), tl.float32)
    if HAS_ROW_LSE:
        lse = tl.load(row_lse_ptr + rows, mask=row_ok, other=0.0)
        glse = tl.load(grad_row_lse_ptr + rows, mask=row_ok, other=0.0)
    if HAS_ROW_POS:
        gpos = tl.load(grad_row_pos_ptr + rows, mask=row_ok, other=0.0)
    acc_out = tl.zeros((BLOCK_ROWS, BLOCK_D_OUT), dtype=tl.float32)
    for col0 in range(0, n_cols, BLOCK_COLS):
        cols = col0 + tl.arange(0, BLOCK_COLS)
        col_ok = cols < n_cols
        cols64 = cols.to(tl.int64)
        acc = _dots(a_ptr, b_ptr, rows64, cols64, row_ok, col_ok, a_row_stride, b_row_stride, dim,
                    BLOCK_ROWS, BLOCK_COLS, BLOCK_K, PRECISION, UPCAST)
        v = tl.load(inv_norm_b_ptr + cols, mask=col_ok, other=0.0)
        sij = acc * u[:, None] * v[None, :]
        g = tl.zeros((BLOCK_ROWS, BLOCK_COLS), dtype=tl.float32)
        # Softmax probabilities (<= 1): exponents clamped at 0, so that S here and the lse of the forward
        # pass (other rounding: the column lse comes from the transposed problem) cannot overflow.
        if HAS_ROW_LSE:
            g += glse[:, None] * tl.exp(tl.minimum(sij - lse[:, None], 0.0))
        if HAS_COL_LSE:
            clse = tl.load(col_lse_ptr + cols, mask=col_ok, other=0.0)
            gclse = tl.load(grad_col_lse_ptr + cols, mask=col_ok, other=0.0)
            g += gclse[None, :] * tl.exp(tl.minimum(sij - clse[None, :], 0.0))
        if HAS_ROW_POS or HAS_COL_POS:
            pos = _positives(rows, cols, row_ok, col_ok, labels_a, labels_b_ptr, diag_offset, HAS_LABELS)
            coef = tl.zeros((BLOCK_ROWS, BLOCK_COLS), dtype=tl.float32)
            if HAS_ROW_POS:
                coef += gpos[:, None]
            if HAS_COL_POS:
                coef += tl.load(grad_col_pos_ptr + cols, mask=col_ok, other=0.0)[None, :]
            g += tl.where(pos, coef, 0.0)
        g = tl.where(row_ok[:, None] & col_ok[None, :], g, 0.0) * (s * v)[None, :]
        bt = tl.load(b_ptr + cols64[:, None] * b_row_stride + douts[None, :], mask=col_ok[:, None] & d_ok[None, :],
                     other=0.0)
        if GRAD_LOWP:
            acc_out = tl.dot(g.to(bt.dtype), bt, acc_out)
        else:
            acc_out = tl.dot(g, bt.to(tl.float32), acc_out, input_precision=GRAD_PRECISION)
    tl.store(grad_a_hat_ptr + rows64[:, None] * dim + douts[None, :], acc_out,
             mask=row_ok[:, None] & d_ok[None, :])


# ----------------------------------------------------------------------------- launch helpers

def _interpreting(x: torch.Tensor) -> bool:
    return x.device.type == "cpu"


def _config(x: torch.Tensor, d: int):
    """Tile sizes: small in the CPU interpreter (numpy is slow), tensor-core friendly on the GPU."""
    if _interpreting(x):
        return dict(BLOCK_ROWS=16, BLOCK_COLS=16, BLOCK_K=16, BLOCK_D_OUT=32), {}
    block_d = min(128, max(16, triton.next_power_of_2(d)))
    return dict(BLOCK_ROWS=64, BLOCK_COLS=64, BLOCK_K=block_d, BLOCK_D_OUT=block_d), dict(num_warps=4, num_stages=2)


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
    """(lse [N], positive sum [N]) of the rows of S for a [N, D] against b [M, D]."""
    n, m, d = a.shape[0], b.shape[0], a.shape[1]
    lse = torch.empty(n, device=a.device, dtype=torch.float32)
    pos = torch.empty(n, device=a.device, dtype=torch.float32)
    if n == 0:
        return lse, pos
    cfg, launch = _config(a, d)
    cfg.pop("BLOCK_D_OUT")
    precision, upcast, _, _ = _precisions(a)
    has_labels = la is not None
    unused = u  # any device pointer, for the arguments a flag says the kernel does not read
    grid = (triton.cdiv(n, cfg["BLOCK_ROWS"]),)
    _row_stats_kernel[grid](
        a_ptr=a, b_ptr=b, inv_norm_a_ptr=u, inv_norm_b_ptr=v, log_scale_ptr=logit_scale,
        labels_a_ptr=la if has_labels else unused, labels_b_ptr=lb if has_labels else unused,
        row_lse_ptr=lse, row_pos_ptr=pos, n_rows=n, n_cols=m, dim=d, a_row_stride=a.stride(0),
        b_row_stride=b.stride(0), diag_offset=diag,
        HAS_LABELS=has_labels, PRECISION=precision, UPCAST=upcast, **cfg, **launch)
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
    unused = u  # any device pointer, for the arguments a flag says the kernel does not read
    grid = (triton.cdiv(n, cfg["BLOCK_ROWS"]), triton.cdiv(d, cfg["BLOCK_D_OUT"]))
    _row_grad_kernel[grid](
        a_ptr=a, b_ptr=b, inv_norm_a_ptr=u, inv_norm_b_ptr=v, log_scale_ptr=logit_scale,
        labels_a_ptr=la if has_labels else unused, labels_b_ptr=lb if has_labels else unused,
        row_lse_ptr=lse if has_row else unused, grad_row_lse_ptr=g_lse if has_row else unused,
        grad_row_pos_ptr=g_pos if g_pos is not None else unused,
        col_lse_ptr=clse if has_col else unused, grad_col_lse_ptr=g_clse if has_col else unused,
        grad_col_pos_ptr=g_cpos if g_cpos is not None else unused,
        grad_a_hat_ptr=out, n_rows=n, n_cols=m, dim=d, a_row_stride=a.stride(0), b_row_stride=b.stride(0),
        diag_offset=diag,
        HAS_LABELS=has_labels, HAS_ROW_LSE=has_row, HAS_ROW_POS=g_pos is not None, HAS_COL_LSE=has_col,
        HAS_COL_POS=g_cpos is not None, PRECISION=precision, UPCAST=upcast, GRAD_PRECISION=grad_precision,
        GRAD_LOWP=grad_lowp, **cfg, **launch)
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
