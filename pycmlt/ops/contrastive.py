"""Cross-modal contrastive loss (docs/ops/contrastive.md): CLIP InfoNCE and its supervised, class-balanced form.

    S = exp(logit_scale) * normalize(a) @ normalize(b)^T                 a: [N, D], b: [M, D]
    row (image -> text) loss of anchor i:    l_i  = -(1/|P_i|) sum_{j in P_i} log softmax_j(S_i.)
    column (text -> image) loss of anchor j: l'_j = -(1/|Q_j|) sum_{i in Q_j} log softmax_i(S_.j)

Positives P_i = {j : b_labels[j] == labels[i]} (supervised) or {i} (CLIP, no labels, N == M);
Q_j likewise. An anchor without any positive is excluded (it counts neither in the loss nor in the
mean's denominator) and is counted in the statistics `ContrastiveOutput.rows_without_positive` /
`cols_without_positive`. Anchor weights w are 1, or the class-balanced weights (docs/ops/cross_entropy.md) of the
anchor's label (class_counts + beta). Reductions, per direction over the anchors with a positive:
  mean: sum_i w_i l_i / sum_i w_i   (0 when no anchor has a positive: a batch without positive
        pairs gives loss 0 and zero gradients, never NaN)
  sum:  sum_i w_i l_i
  none: the per-anchor values w_i l_i ([N]; 0 for anchors without a positive).
symmetric=True averages the two directions: 0.5 (row + column); with reduction="none" the result is
[N + M] (rows then columns, each halved) so that its sum equals reduction="sum".

Backends: `torch` is the readable reference that materialises S. The fused backends (`cpu`, `triton`,
`cuda`) run the custom op pycmlt::contrastive_stats, which streams S tile by tile and returns, per
row and per column, the log-sum-exp and the sum of S over the positives; every loss above is a
linear function of these O(N + M) numbers (built below in PyTorch). Its backward,
pycmlt::contrastive_grad, recomputes the tiles (flash-attention style), so no N x M tensor ever exists.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from pycmlt import _extension
from pycmlt.ops import _backend
from pycmlt.ops._checks import check_finite_scalar, check_same_device, check_tensor, compute_dtype, reduction_code
from pycmlt.ops._deprecation import deprecated_alias
from pycmlt.ops._registration import keep_inputs, recompute_grads
from pycmlt.ops.class_balance import class_balanced_weights
from pycmlt.ops.contrastive_anchors import anchor_losses, anchor_weights, positive_counts, reduce_parts
from pycmlt.ops.gathered_contrastive import gathered_contrastive

OP_NAME = "cross_modal_contrastive"
NORM_EPS = 1e-12  # as F.normalize: x / max(|x|, eps)
DEFAULT_LOGIT_SCALE = math.log(1 / 0.07)
# On GPUs the Triton kernels (tensor cores through tl.dot) come before the CUDA ones (SIMT fp32).
GPU_PREFERENCE = ("triton", "cuda")


class ContrastiveOutput(NamedTuple):
    """What `cross_modal_contrastive(..., return_stats=True)` returns."""

    loss: torch.Tensor
    rows_without_positive: torch.Tensor  # int64 []: anchors of `a` with no positive (excluded)
    cols_without_positive: torch.Tensor  # int64 []: anchors of `b` with no positive (excluded)


def cross_modal_contrastive(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    labels: torch.Tensor | None = None,
    b_labels: torch.Tensor | None = None,
    logit_scale: float | torch.Tensor = DEFAULT_LOGIT_SCALE,
    normalize: bool = True,
    symmetric: bool = True,
    class_counts=None,
    beta: float | None = None,
    reduction: str = "mean",
    gather: bool = False,
    group=None,
    return_stats: bool = False,
    backend: str = "auto",
):
    """Cross-modal InfoNCE between rows of `a` [N, D] (e.g. images) and `b` [M, D] (e.g. texts).

    labels=None: CLIP, the positive of a_i is b_i (N == M). labels [N] (and b_labels [M], default
    labels): supervised, every same-label pair is a positive. logit_scale: float or a scalar tensor
    (learnable; it gets a gradient), scale = exp(logit_scale). class_counts [C] + beta: class-balanced
    anchor weights (labels must lie in [0, C)). gather=True (inside torch.distributed): each rank scores
    its local anchors against the other modality gathered from all ranks, see pycmlt.ops.gathered_contrastive.
    return_stats=True returns a ContrastiveOutput(loss, rows_without_positive, cols_without_positive).
    """
    check_tensor("a", a, floating=True)
    class_weight = None
    if class_counts is not None or beta is not None:
        if class_counts is None:
            raise ValueError("beta needs class_counts (the training count of each class)")
        if beta is None:
            raise ValueError("class_counts weights the anchors by class only together with beta "
                             "(class-balanced weights): pass beta too")
        if labels is None:
            raise ValueError("class-balanced anchor weights (class_counts, beta) need labels")
        if isinstance(class_counts, torch.Tensor) and class_counts.device != a.device \
                and class_counts.device.type != "cpu":
            raise ValueError(f"class_counts is on {class_counts.device} but a is on {a.device}")
        class_weight = class_balanced_weights(class_counts, beta).to(a.device)
    return contrastive_with_class_tensors(
        a, b, labels=labels, b_labels=b_labels, logit_scale=logit_scale, normalize=normalize,
        symmetric=symmetric, class_weight=class_weight, reduction=reduction, gather=gather, group=group,
        return_stats=return_stats, backend=backend)


def contrastive_with_class_tensors(
    a, b, *, labels=None, b_labels=None, logit_scale=DEFAULT_LOGIT_SCALE, normalize=True, symmetric=True,
    class_weight=None, reduction="mean", gather=False, group=None, return_stats=False, backend="auto",
):
    """The op with the per-class anchor weights [C] already derived (what the nn module calls)."""
    check_tensor("a", a, floating=True)
    check_tensor("b", b, floating=True)
    if a.dim() != 2 or b.dim() != 2:
        raise ValueError(f"a and b must be 2-D [N, D] and [M, D], got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must have the same feature dimension D: a is {list(a.shape)}, b is {list(b.shape)}")
    check_same_device("a", a, b=b)
    code = reduction_code(reduction)
    la, lb = _check_labels(labels, b_labels, a, b, gather)
    if class_weight is not None:
        if la is None:
            raise ValueError("class-balanced anchor weights need labels")
        check_tensor("class_weight", class_weight, floating=True)
        check_same_device("a", a, class_weight=class_weight)
        if class_weight.dim() != 1:
            raise ValueError(f"class_weight must be 1-D [C], got shape {tuple(class_weight.shape)}")
        class_weight = class_weight.to(compute_dtype(a.dtype, b.dtype))
        if not torch.compiler.is_compiling():
            _check_label_range(la, "labels", class_weight.numel())
            _check_label_range(lb, "b_labels", class_weight.numel())
    if a.dtype != b.dtype:
        common = torch.promote_types(a.dtype, b.dtype)
        a, b = a.to(common), b.to(common)
    scale = _logit_scale_tensor(logit_scale, a)
    chosen = _backend.resolve(backend, a, OP_NAME, gpu_preference=GPU_PREFERENCE)
    if gather:
        loss, no_row, no_col = gathered_contrastive(
            a, b, la, lb, scale, normalize=normalize, symmetric=symmetric, class_weight=class_weight, code=code,
            stats_fn=_stats_function(chosen), group=group)
    elif chosen == "torch":
        loss, no_row, no_col = contrastive_reference(
            a, b, la, lb, scale, normalize=normalize, symmetric=symmetric, class_weight=class_weight,
            reduction=reduction, return_stats=True)
    else:
        stats = _stats_function(chosen)
        row_lse, row_pos, col_lse, col_pos = stats(a, b, scale, la, lb, 0, normalize, symmetric)
        row_cnt, col_cnt = positive_counts(la, lb, a.shape[0], b.shape[0], a.device)
        parts = [(anchor_losses(row_lse, row_pos, row_cnt), anchor_weights(row_cnt, class_weight, la))]
        if symmetric:
            parts.append((anchor_losses(col_lse, col_pos, col_cnt), anchor_weights(col_cnt, class_weight, lb)))
        loss = reduce_parts(parts, code)
        no_row, no_col = (row_cnt == 0).sum(), (col_cnt == 0).sum()
    loss = loss.to(a.dtype)
    return ContrastiveOutput(loss, no_row, no_col) if return_stats else loss


# The old name, kept for one release.
contrastive_with_class_weights = deprecated_alias(contrastive_with_class_tensors, "contrastive_with_class_weights")


# ----------------------------------------------------------------------------- reference

def contrastive_reference(a, b, labels=None, b_labels=None, logit_scale=DEFAULT_LOGIT_SCALE, *, normalize=True,
                          symmetric=True, class_weight=None, reduction="mean", upcast=True, return_stats=False):
    """Readable PyTorch reference: materialises the N x M similarity; autograd for the gradient.

    upcast=True (the `torch` backend) computes in fp32 (fp64 inputs in fp64); upcast=False keeps the input
    dtype (what plain PyTorch does with fp16/bf16; the tests' low-precision baseline).
    """
    dtype = compute_dtype(a.dtype, b.dtype) if upcast else torch.promote_types(a.dtype, b.dtype)
    x, y = a.to(dtype), b.to(dtype)
    if normalize:
        x, y = F.normalize(x, dim=1, eps=NORM_EPS), F.normalize(y, dim=1, eps=NORM_EPS)
    scale = logit_scale.exp() if isinstance(logit_scale, torch.Tensor) else math.exp(logit_scale)
    if isinstance(scale, torch.Tensor):
        scale = scale.to(x.dtype)
    s = scale * (x @ y.T)  # [N, M]
    if labels is None:
        pos = torch.eye(x.shape[0], y.shape[0], dtype=torch.bool, device=x.device)
    else:
        pos = labels[:, None] == (labels if b_labels is None else b_labels)[None, :]
    if class_weight is not None:
        class_weight = class_weight.to(x.dtype)
    parts = [_reference_direction(s, pos, 1, labels, class_weight)]
    if symmetric:
        parts.append(_reference_direction(s, pos, 0, labels if b_labels is None else b_labels, class_weight))
    half = 0.5 if symmetric else 1.0
    if reduction == "none":
        loss = torch.cat([half * w * l for l, w, _ in parts])
    elif reduction == "sum":
        loss = half * sum((w * l).sum() for l, w, _ in parts)
    elif reduction == "mean":
        # 0 when no anchor has a positive (0 / tiny; a where() would give NaN gradients)
        loss = half * sum((w * l).sum() / w.sum().clamp_min(torch.finfo(w.dtype).tiny) for l, w, _ in parts)
    else:
        raise ValueError(f"reduction must be one of ('none', 'mean', 'sum'), got {reduction!r}")
    if not return_stats:
        return loss
    no_col = parts[1][2] if symmetric else (pos.sum(0) == 0).sum()
    return ContrastiveOutput(loss, parts[0][2], no_col)


def _reference_direction(s, pos, dim, anchor_labels, class_weight):
    """Anchors along `dim` of S (1: rows, image -> text; 0: columns, text -> image): per-anchor loss,
    weight (0 without a positive) and the number of anchors without a positive."""
    n_pos = pos.sum(dim)
    has_pos = n_pos > 0
    log_p = s.log_softmax(dim=dim)
    loss = -torch.where(pos, log_p, 0.0).sum(dim) / n_pos.clamp_min(1)
    w = class_weight[anchor_labels] if class_weight is not None else torch.ones_like(loss)
    return torch.where(has_pos, loss, 0.0), torch.where(has_pos, w, 0.0), (~has_pos).sum()


# ----------------------------------------------------------------------------- argument handling

def _check_labels(labels, b_labels, a, b, gather):
    n, m = a.shape[0], b.shape[0]
    if labels is None:
        if b_labels is not None:
            raise ValueError("b_labels needs labels (the labels of a); without labels positives are the diagonal")
        if n != m and not gather:
            raise ValueError(f"without labels (CLIP) the positive of a[i] is b[i]: a and b need the same number of "
                             f"rows, got N={n} and M={m}; pass labels (and b_labels) for supervised positives")
        return None, None
    check_tensor("labels", labels, integer=True)
    shared = b_labels is None
    if shared:
        b_labels = labels
    else:
        check_tensor("b_labels", b_labels, integer=True)
    check_same_device("a", a, labels=labels, b_labels=b_labels)
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape [{n}] (one label per row of a), got {list(labels.shape)}")
    if b_labels.shape != (m,):
        what = "labels (used for b since b_labels is None)" if shared else "b_labels"
        raise ValueError(f"{what} must have shape [{m}] (one label per row of b), got {list(b_labels.shape)}")
    return labels.to(torch.int64).contiguous(), b_labels.to(torch.int64).contiguous()


def _check_label_range(lab, name, num_classes):
    if lab.numel() == 0:
        return
    bad = (lab < 0) | (lab >= num_classes)
    if bad.any():
        i = int(bad.nonzero()[0, 0])
        raise ValueError(f"{name}[{i}] = {int(lab[i])} is out of range for class-balanced weights: expected "
                         f"0 <= label < {num_classes} (the length of class_counts)")


def _logit_scale_tensor(logit_scale, ref: torch.Tensor) -> torch.Tensor:
    if isinstance(logit_scale, torch.Tensor):
        if not logit_scale.is_floating_point():
            raise TypeError(f"logit_scale must be a floating-point scalar tensor, got {logit_scale.dtype}")
        if logit_scale.numel() != 1:
            raise ValueError(f"logit_scale must be a scalar, got shape {tuple(logit_scale.shape)}")
        if logit_scale.device != ref.device:
            if logit_scale.device.type != "cpu":
                raise ValueError(f"logit_scale is on {logit_scale.device} but a is on {ref.device}")
            logit_scale = logit_scale.to(ref.device)
        return logit_scale.reshape(()).to(compute_dtype(ref.dtype))
    value = check_finite_scalar("logit_scale", logit_scale)
    return torch.tensor(value, dtype=compute_dtype(ref.dtype), device=ref.device)


def _stats_function(chosen: str):
    if chosen == "torch":
        return stats_reference
    if chosen == "triton":
        return torch.ops.pycmlt.contrastive_stats_triton
    return torch.ops.pycmlt.contrastive_stats


def stats_reference(a, b, logit_scale, la, lb, diag_offset, normalize, col_stats):
    """The statistics of pycmlt::contrastive_stats computed by materialising S (torch backend, tests)."""
    dtype = compute_dtype(a.dtype, b.dtype)
    x, y = a.to(dtype), b.to(dtype)
    if normalize:
        x, y = F.normalize(x, dim=1, eps=NORM_EPS), F.normalize(y, dim=1, eps=NORM_EPS)
    s = logit_scale.exp() * (x @ y.T)
    if la is None:
        rows = torch.arange(x.shape[0], device=x.device)
        pos = rows[:, None] + diag_offset == torch.arange(y.shape[0], device=x.device)[None, :]
    else:
        pos = la[:, None] == lb[None, :]
    masked = torch.where(pos, s, 0.0)
    empty = s.new_empty((0,))
    return (s.logsumexp(1), masked.sum(1), s.logsumexp(0) if col_stats else empty,
            masked.sum(0) if col_stats else empty)


# ----------------------------------------------------------------------------- custom-op plumbing

def _stats_fake(a, b, logit_scale, labels_a, labels_b, diag_offset, normalize, col_stats):
    n, m = a.shape[0], b.shape[0]
    m_out = m if col_stats else 0
    return (a.new_empty((n,), dtype=torch.float32), a.new_empty((n,), dtype=torch.float32),
            a.new_empty((m_out,), dtype=torch.float32), a.new_empty((m_out,), dtype=torch.float32))


def _grad_fake(a, b, logit_scale, labels_a, labels_b, diag_offset, normalize, row_lse, col_lse, g_row_lse,
               g_row_pos, g_col_lse, g_col_pos):
    return torch.empty_like(a), torch.empty_like(b), logit_scale.new_empty((), dtype=torch.float32)


def _stats_setup_context(ctx, inputs, output):
    a, b, logit_scale, labels_a, labels_b, diag_offset, normalize, col_stats = inputs
    ctx.save_for_backward(a, b, logit_scale, labels_a, labels_b, output[0], output[2])
    ctx.diag_offset = diag_offset
    ctx.normalize = normalize
    ctx.col_stats = col_stats
    ctx.set_materialize_grads(False)
    keep_inputs(ctx, inputs, stats_reference)


def _make_stats_backward(grad_op_name: str):
    def backward(ctx, g_row_lse, g_row_pos, g_col_lse, g_col_pos):
        a, b, logit_scale, labels_a, labels_b, row_lse, col_lse = ctx.saved_tensors
        if not ctx.col_stats:  # the [0]-shaped column outputs carry no gradient
            g_col_lse = g_col_pos = None
        if g_row_lse is None and g_row_pos is None and g_col_lse is None and g_col_pos is None:
            return (None,) * 8
        if torch.is_grad_enabled():  # create_graph=True: differentiate the materialised reference
            return recompute_grads(ctx, (g_row_lse, g_row_pos, g_col_lse, g_col_pos), (0, 1, 2))
        grad_op = getattr(torch.ops.pycmlt, grad_op_name)
        grad_a, grad_b, grad_scale = grad_op(a, b, logit_scale, labels_a, labels_b, ctx.diag_offset, ctx.normalize,
                                             row_lse, col_lse, g_row_lse, g_row_pos, g_col_lse, g_col_pos)
        return grad_a, grad_b, grad_scale, None, None, None, None, None

    return backward


@torch.library.custom_op("pycmlt::contrastive_stats_triton", mutates_args=())
def _contrastive_stats_triton(
    a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor, labels_a: torch.Tensor | None,
    labels_b: torch.Tensor | None, diag_offset: int, normalize: bool, col_stats: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from pycmlt.kernels.contrastive import contrastive_stats

    return contrastive_stats(a, b, logit_scale, labels_a, labels_b, diag_offset, normalize, col_stats)


@torch.library.custom_op("pycmlt::contrastive_grad_triton", mutates_args=())
def _contrastive_grad_triton(
    a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor, labels_a: torch.Tensor | None,
    labels_b: torch.Tensor | None, diag_offset: int, normalize: bool, row_lse: torch.Tensor, col_lse: torch.Tensor,
    grad_row_lse: torch.Tensor | None, grad_row_pos: torch.Tensor | None, grad_col_lse: torch.Tensor | None,
    grad_col_pos: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from pycmlt.kernels.contrastive import contrastive_grad

    return contrastive_grad(a, b, logit_scale, labels_a, labels_b, diag_offset, normalize, row_lse, col_lse,
                            grad_row_lse, grad_row_pos, grad_col_lse, grad_col_pos)


def _register(stats_name: str, grad_name: str) -> None:
    torch.library.register_fake(f"pycmlt::{stats_name}")(_stats_fake)
    torch.library.register_fake(f"pycmlt::{grad_name}")(_grad_fake)
    torch.library.register_autograd(f"pycmlt::{stats_name}", _make_stats_backward(grad_name),
                                    setup_context=_stats_setup_context)


_register("contrastive_stats_triton", "contrastive_grad_triton")
if _extension.native_available():
    _register("contrastive_stats", "contrastive_grad")
