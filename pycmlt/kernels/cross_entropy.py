"""Triton kernels of the class-balanced softmax cross-entropy (docs/ops/cross_entropy.md).

The forward pass writes the gradient as it goes, so backward never reads the logits again.
Rows that fit in one tile are processed several at a time, read once; longer rows are streamed
in chunks with an online max / sum-of-exp, then a second sweep writes the gradient.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

# A row is kept whole in registers up to this many classes; longer rows are streamed.
MAX_SINGLE_TILE = 16384
CHUNK = 4096


@triton.jit
def _row_coefs(nll, lse, sum_wz, w_y, w_total, focal_gamma, label_smoothing, n_classes, FOCAL: tl.constexpr):
    """Loss and gradient coefficients of each row: dl/dz_j = a p_j - b_t [j == y] - b_c w_j.

    nll, lse: -log p_y and the log-sum-exp of the adjusted logits z; sum_wz: sum_j w_j z_j (label
    smoothing only); w_y: the target's class weight; w_total: sum_j w_j. Scalars or [ROWS] vectors.
    """
    if FOCAL:
        p = tl.exp(-nll)
        small = nll < 1e-3
        q = tl.where(small, nll * (1.0 - nll * 0.5 + nll * nll / 6.0), 1.0 - p)
        q = tl.maximum(q, 0.0)
        pos = q > 0.0
        log_q = tl.log(tl.where(pos, q, 1.0))
        qg = tl.where(pos, tl.exp(focal_gamma * log_q), 0.0)
        f = tl.where(pos, qg + focal_gamma * p * tl.exp((focal_gamma - 1.0) * log_q) * nll, 0.0)
        loss = w_y * qg * nll
        a = w_y * f
        b_t = a
        b_c = tl.zeros_like(a)
    else:
        s = label_smoothing / n_classes
        loss = (1.0 - label_smoothing) * w_y * nll
        if label_smoothing > 0.0:
            loss += s * (w_total * lse - sum_wz)
        a = (1.0 - label_smoothing) * w_y
        if label_smoothing > 0.0:  # not 0 * w_total: a NaN weight of an unused class stays out, as in PyTorch
            a += s * w_total
        b_t = (1.0 - label_smoothing) * w_y
        b_c = tl.zeros_like(a) + s
    return loss, a, b_t, b_c


@triton.jit
def _ce_rows_kernel(
    logits_ptr,         # [n_rows, n_classes] fp32/fp16/bf16, unit column stride
    logits_row_stride,
    targets_ptr,        # [n_rows] int64 class indices (any stride)
    targets_stride,
    class_weight_ptr,   # [n_classes] fp32 (read when HAS_CLASS_WEIGHT)
    margins_ptr,        # [n_classes] fp32, subtracted from the target logit (read when HAS_MARGINS)
    logit_bias_ptr,     # [n_classes] fp32, added to every logit (read when HAS_LOGIT_BIAS)
    aux_ptr,            # [2] fp32: gradient scale, sum of the class weights
    loss_rows_ptr,      # [n_rows] fp32 out: per-row losses
    grad_ptr,           # [n_rows, n_classes] out in logits' dtype, unit column stride (when COMPUTE_GRAD)
    grad_row_stride,
    n_rows, n_classes, ignore_index, scale, focal_gamma, label_smoothing,
    HAS_CLASS_WEIGHT: tl.constexpr, HAS_MARGINS: tl.constexpr, HAS_LOGIT_BIAS: tl.constexpr, FOCAL: tl.constexpr,
    COMPUTE_GRAD: tl.constexpr, ROWS: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """ROWS whole rows per program (n_classes <= BLOCK_C): logits read once, gradient written once."""
    pid = tl.program_id(0)
    rows = pid * ROWS + tl.arange(0, ROWS)
    row_ok = rows < n_rows
    cols = tl.arange(0, BLOCK_C)
    col_ok = cols < n_classes
    y = tl.load(targets_ptr + rows.to(tl.int64) * targets_stride, mask=row_ok, other=ignore_index)
    counted = row_ok & (y != ignore_index)
    valid = counted & (y >= 0) & (y < n_classes)
    y_safe = tl.where(valid, y, 0)
    rows64 = rows.to(tl.int64)
    mask = row_ok[:, None] & col_ok[None, :]
    x = tl.load(logits_ptr + rows64[:, None] * logits_row_stride + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    z = x
    if HAS_LOGIT_BIAS:
        z += tl.load(logit_bias_ptr + cols, mask=col_ok, other=0.0)[None, :]
    is_y = cols[None, :] == y_safe[:, None]
    if HAS_MARGINS:
        m_y = tl.load(margins_ptr + y_safe, mask=valid, other=0.0)
        z = tl.where(is_y, z - m_y[:, None], z)
    z = z * scale
    z = tl.where(mask, z, float("-inf"))
    z_y = tl.sum(tl.where(is_y & mask, z, 0.0), axis=1)
    mx = tl.max(z, axis=1)
    # As in PyTorch (x - max): a +inf or NaN max makes the row NaN; only an all -inf row shifts by 0.
    shift = tl.where(mx == float("-inf"), 0.0, mx)
    e = tl.exp(z - shift[:, None])
    e = tl.where(mask, e, 0.0)
    total = tl.sum(e, axis=1)
    lse = shift + tl.log(total)
    nll = lse - z_y
    if HAS_CLASS_WEIGHT:
        w = tl.load(class_weight_ptr + cols, mask=col_ok, other=0.0)
        w_y = tl.load(class_weight_ptr + y_safe, mask=valid, other=1.0)
    else:
        w_y = tl.full((ROWS,), 1.0, tl.float32)
    w_total = tl.load(aux_ptr + 1)
    sum_wz = tl.zeros((ROWS,), tl.float32)
    if label_smoothing > 0.0:
        zz = tl.where(mask, z, 0.0)
        if HAS_CLASS_WEIGHT:
            sum_wz = tl.sum(zz * w[None, :], axis=1)
        else:
            sum_wz = tl.sum(zz, axis=1)
    loss, a, b_t, b_c = _row_coefs(nll, lse, sum_wz, w_y, w_total, focal_gamma, label_smoothing, n_classes, FOCAL)
    loss = tl.where(valid, loss, tl.where(counted, float("nan"), 0.0))
    tl.store(loss_rows_ptr + rows, loss, mask=row_ok)
    if COMPUTE_GRAD:
        gs = tl.load(aux_ptr) * scale
        coef = tl.where(valid, gs * a / total, 0.0)
        b_t = tl.where(valid, gs * b_t, 0.0)
        b_c = tl.where(valid, gs * b_c, 0.0)
        g = coef[:, None] * e - tl.where(is_y, b_t[:, None], 0.0)
        if HAS_CLASS_WEIGHT:
            if label_smoothing > 0.0:  # b_c = 0 otherwise, and 0 * (a NaN weight of an unused class) must not appear
                g -= b_c[:, None] * w[None, :]
        else:
            g -= b_c[:, None]
        tl.store(grad_ptr + rows64[:, None] * grad_row_stride + cols[None, :], g.to(grad_ptr.dtype.element_ty),
                 mask=mask)


@triton.jit
def _ce_chunked_kernel(
    logits_ptr,         # [n_rows, n_classes] fp32/fp16/bf16, unit column stride
    logits_row_stride,
    targets_ptr,        # [n_rows] int64 class indices (any stride)
    targets_stride,
    class_weight_ptr,   # [n_classes] fp32 (read when HAS_CLASS_WEIGHT)
    margins_ptr,        # [n_classes] fp32, subtracted from the target logit (read when HAS_MARGINS)
    logit_bias_ptr,     # [n_classes] fp32, added to every logit (read when HAS_LOGIT_BIAS)
    aux_ptr,            # [2] fp32: gradient scale, sum of the class weights
    loss_rows_ptr,      # [n_rows] fp32 out: per-row losses
    grad_ptr,           # [n_rows, n_classes] out in logits' dtype, unit column stride (when COMPUTE_GRAD)
    grad_row_stride,
    n_rows, n_classes, ignore_index, scale, focal_gamma, label_smoothing,
    HAS_CLASS_WEIGHT: tl.constexpr, HAS_MARGINS: tl.constexpr, HAS_LOGIT_BIAS: tl.constexpr, FOCAL: tl.constexpr,
    COMPUTE_GRAD: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """One long row per program: online max / sum-of-exp sweep, then a sweep writing the gradient."""
    row = tl.program_id(0).to(tl.int64)
    y = tl.load(targets_ptr + row * targets_stride)
    counted = y != ignore_index
    valid = counted & (y >= 0) & (y < n_classes)
    y_safe = tl.where(valid, y, 0)
    logits_row_ptr = logits_ptr + row * logits_row_stride
    m_y = 0.0
    if HAS_MARGINS:
        m_y = tl.load(margins_ptr + y_safe)
    b_y = 0.0
    if HAS_LOGIT_BIAS:
        b_y = tl.load(logit_bias_ptr + y_safe)
    z_y = (tl.load(logits_row_ptr + y_safe).to(tl.float32) + b_y - m_y) * scale
    cols0 = tl.arange(0, BLOCK_C)
    mx = tl.full((BLOCK_C,), float("-inf"), tl.float32)
    acc = tl.zeros((BLOCK_C,), tl.float32)
    wz = tl.zeros((BLOCK_C,), tl.float32)
    for start in range(0, n_classes, BLOCK_C):
        cols = start + cols0
        ok = cols < n_classes
        z = tl.load(logits_row_ptr + cols, mask=ok, other=0.0).to(tl.float32)
        if HAS_LOGIT_BIAS:
            z += tl.load(logit_bias_ptr + cols, mask=ok, other=0.0)
        z = tl.where(cols == y_safe, (z - m_y) * scale, z * scale)
        if label_smoothing > 0.0:
            if HAS_CLASS_WEIGHT:
                wz += tl.where(ok, z * tl.load(class_weight_ptr + cols, mask=ok, other=0.0), 0.0)
            else:
                wz += tl.where(ok, z, 0.0)
        z = tl.where(ok, z, float("-inf"))
        new_mx = tl.maximum(mx, z)
        safe = tl.where(new_mx == float("-inf"), 0.0, new_mx)
        acc = acc * tl.exp(mx - safe) + tl.exp(z - safe)
        mx = new_mx
    row_mx = tl.max(mx, axis=0)
    shift = tl.where(row_mx == float("-inf"), 0.0, row_mx)  # +inf / NaN max: a NaN row, as in PyTorch
    safe_mx = tl.where(mx == float("-inf"), shift, mx)
    total = tl.sum(acc * tl.exp(safe_mx - shift), axis=0)
    lse = shift + tl.log(total)
    nll = lse - z_y
    if HAS_CLASS_WEIGHT:
        w_y = tl.load(class_weight_ptr + y_safe)
    else:
        w_y = 1.0
    w_total = tl.load(aux_ptr + 1)
    sum_wz = tl.sum(wz, axis=0)
    loss, a, b_t, b_c = _row_coefs(nll, lse, sum_wz, w_y, w_total, focal_gamma, label_smoothing, n_classes, FOCAL)
    loss = tl.where(valid, loss, tl.where(counted, float("nan"), 0.0))
    tl.store(loss_rows_ptr + row, loss)
    if COMPUTE_GRAD:
        gs = tl.load(aux_ptr) * scale
        coef = tl.where(valid, gs * a / total, 0.0)
        b_t = tl.where(valid, gs * b_t, 0.0)
        b_c = tl.where(valid, gs * b_c, 0.0)
        grad_row_ptr = grad_ptr + row * grad_row_stride
        for start in range(0, n_classes, BLOCK_C):
            cols = start + cols0
            ok = cols < n_classes
            z = tl.load(logits_row_ptr + cols, mask=ok, other=0.0).to(tl.float32)
            if HAS_LOGIT_BIAS:
                z += tl.load(logit_bias_ptr + cols, mask=ok, other=0.0)
            is_y = cols == y_safe
            z = tl.where(is_y, (z - m_y) * scale, z * scale)
            g = coef * tl.exp(z - shift) - tl.where(is_y, b_t, 0.0)
            if HAS_CLASS_WEIGHT:
                if label_smoothing > 0.0:  # b_c = 0 otherwise (0 * a NaN weight would be NaN)
                    g -= b_c * tl.load(class_weight_ptr + cols, mask=ok, other=0.0)
            else:
                g -= b_c
            tl.store(grad_row_ptr + cols, g.to(grad_ptr.dtype.element_ty), mask=ok)


def cb_cross_entropy_rows(logits, target, class_weight, margins, logit_bias, aux, scale, focal_gamma,
                          label_smoothing, ignore_index, compute_grad, out=None):
    """Per-row losses [N] (fp32) and, if compute_grad, d loss / d logits [N, C] scaled by aux[0].

    target [N] may have any stride (a slice, an expanded tensor). aux = [gradient scale (1 / mean
    denominator or 1), sum of class weights] lives on the device so
    that no host synchronisation is needed. The gradient goes to `out` when given (an [N, C] buffer
    in logits' dtype with unit column stride; it may be `logits` itself: every element is read
    before its gradient is written), else to a new contiguous tensor.
    """
    if out is not None:
        if out.shape != logits.shape or out.dtype != logits.dtype or out.stride(-1) != 1:
            raise ValueError("out must have the shape and dtype of logits and a unit column stride")
    if logits.stride(-1) != 1:
        logits = logits.contiguous()
    n_rows, n_classes = logits.shape
    loss = torch.empty(n_rows, device=logits.device, dtype=torch.float32)
    if out is not None:
        grad = out
    else:
        grad = torch.empty((n_rows, n_classes) if compute_grad else (0,), device=logits.device, dtype=logits.dtype)
    if n_rows == 0:
        return loss, grad
    unused = aux  # any device pointer, for the arguments a flag says the kernel does not read
    args = dict(
        logits_ptr=logits, logits_row_stride=logits.stride(0), targets_ptr=target, targets_stride=target.stride(0),
        class_weight_ptr=class_weight if class_weight is not None else unused,
        margins_ptr=margins if margins is not None else unused,
        logit_bias_ptr=logit_bias if logit_bias is not None else unused,
        aux_ptr=aux, loss_rows_ptr=loss, grad_ptr=grad if compute_grad else unused,
        grad_row_stride=grad.stride(0) if compute_grad else n_classes, n_rows=n_rows, n_classes=n_classes,
        ignore_index=ignore_index, scale=float(scale), focal_gamma=float(focal_gamma),
        label_smoothing=float(label_smoothing),
        HAS_CLASS_WEIGHT=class_weight is not None, HAS_MARGINS=margins is not None,
        HAS_LOGIT_BIAS=logit_bias is not None, FOCAL=focal_gamma > 0, COMPUTE_GRAD=compute_grad,
    )
    block_c = triton.next_power_of_2(n_classes)
    if block_c <= MAX_SINGLE_TILE:
        rows = max(1, min(16, 4096 // block_c))
        warps = 4 if block_c <= 2048 else (8 if block_c <= 8192 else 16)
        grid = (triton.cdiv(n_rows, rows),)
        _ce_rows_kernel[grid](**args, ROWS=rows, BLOCK_C=block_c, num_warps=warps)
    else:
        _ce_chunked_kernel[(n_rows,)](**args, BLOCK_C=CHUNK, num_warps=8)
    return loss, grad
    dummy = aux
    args = (
        logits, logits.stride(0), target, target.stride(0),
        class_weight if class_weight is not None else dummy,
        margins if margins is not None else dummy,
        logit_bias if logit_bias is not None else dummy,
        aux, loss, grad if compute_grad else dummy, grad.stride(0) if compute_grad else c, n, c, ignore_index,
        float(scale), float(focal_gamma), float(label_smoothing),
    )
    flags = dict(
        HAS_CLASS_WEIGHT=class_weight is not None, HAS_MARGINS=margins is not None,
        HAS_LOGIT_BIAS=logit_bias is not None, FOCAL=focal_gamma > 0, COMPUTE_GRAD=compute_grad,
    )
    block_c = triton.next_power_of_2(c)
    if block_c <= MAX_SINGLE_TILE:
        rows = max(1, min(16, 4096 // block_c))
        warps = 4 if block_c <= 2048 else (8 if block_c <= 8192 else 16)
        grid = (triton.cdiv(n, rows),)
        _ce_rows_kernel[grid](*args, **flags, ROWS=rows, BLOCK_C=block_c, num_warps=warps)
    else:
        _ce_chunked_kernel[(n,)](*args, **flags, BLOCK_C=CHUNK, num_warps=8)
    return loss, grad
