"""Fused linear + loss (docs/ops/fused_linear.md): `hidden @ weight^T (+ bias)` fused with the class-balanced
cross-entropy (2.1) or the class-balanced BCE (2.2), in row chunks, so that the N x C logits never
exist at once.

How the chunked backends (`cpu`, `triton`, `cuda`) work, chunk by chunk (one reused buffer):
    logits_chunk = h_chunk @ W^T + b                 (torch matmul into the buffer)
    loss kernel: the buffer <- d loss / d logits     (in place, a declared mutating op:
                                                      pycmlt::cb_cross_entropy_grad_inplace and friends)
    grad_hidden[chunk] = g @ W;  grad_W += g^T @ h_chunk (fp32 accumulator);  grad_b += g.sum(0)
so the forward pass returns the loss and keeps the three gradients; backward only scales them by the
incoming gradient. A mean's denominator is computed over the whole batch before the first chunk.
With reduction="none" the forward computes the losses only and backward recomputes the chunks with
the incoming per-row (CE) or per-element (BCE) gradient. The `torch` backend is the plain
`F.linear` + loss reference.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pycmlt.ops import _backend
from pycmlt.ops._checks import check_same_device, check_targets_in_range, check_tensor, compute_dtype, reduction_name
from pycmlt.ops._deprecation import deprecated_alias, renamed_keywords
from pycmlt.ops._registration import keep_inputs, recompute_grads, scale_saved_grad
from pycmlt.ops.bce import bce_options_or_scalars, bce_reference, broadcast_weight_2d, check_targets
from pycmlt.ops.bce import effective_bce_weight
from pycmlt.ops.cross_entropy import _checks_enabled, class_tensors, cross_entropy_reference, loss_aux
from pycmlt.ops.cross_entropy import options_or_scalars
from pycmlt.ops.loss_options import BCEOptions, CrossEntropyOptions

OP_CE = "fused_linear_class_balanced_cross_entropy"
OP_BCE = "fused_linear_class_balanced_bce"

# The default chunk keeps the logits buffer about as large as `hidden` itself (rows ~ N * D / C,
# rounded up to a power of two: the rule Liger-Kernel uses), but never under MIN_CHUNK_BYTES, so that
# a small D with a huge C does not shrink the matmuls to a handful of rows. On the CPU the floor is
# larger: each chunk re-reads and re-writes the whole fp32 grad_weight accumulator and pays the
# thread start-up of every kernel, so few large chunks are faster (N=4096, D=512, C=32000 fp32:
# 512-row chunks take ~25% less time than 128-row ones), and 64 MiB is still a small fraction of
# the N x C logits that the chunking avoids.
MIN_CHUNK_BYTES = {"cpu": 64 << 20}
MIN_CHUNK_BYTES_DEFAULT = 8 << 20


def default_chunk_rows(num_rows: int, in_features: int, num_classes: int, itemsize: int,
                       device_type: str = "cuda") -> int:
    """Rows per chunk when chunk_rows is None: max(Liger's rule, MIN_CHUNK_BYTES of logits), <= num_rows."""
    if num_rows <= 0:
        return 1
    by_hidden = math.ceil(num_rows / max(1, math.ceil(num_classes / max(1, in_features))))
    by_hidden = 1 << (by_hidden - 1).bit_length()
    floor_bytes = MIN_CHUNK_BYTES.get(device_type, MIN_CHUNK_BYTES_DEFAULT)
    by_bytes = floor_bytes // max(1, num_classes * itemsize)
    return max(1, min(num_rows, max(by_hidden, by_bytes)))


# ----------------------------------------------------------------------------- public functions

def fused_linear_class_balanced_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    class_counts=None,
    beta: float | None = None,
    class_weight: torch.Tensor | None = None,
    focal_gamma: float = 0.0,
    ldam_max_margin: float = 0.0,
    ldam_scale: float = 1.0,
    logit_adjust_tau: float = 0.0,
    label_smoothing: float = 0.0,
    ignore_index: int = -100,
    reduction: str = "mean",
    chunk_rows: int | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """class_balanced_cross_entropy(F.linear(hidden, weight, bias), target, ...) without the logits.

    hidden [..., D], weight [C, D] (the classifier), bias [C] or None, target [...] class indices.
    Every option of :func:`pycmlt.ops.class_balanced_cross_entropy` (the per-class weight is
    `class_weight` in both; `weight` is the classifier matrix). `chunk_rows` rows of
    logits exist at a time (default: see :func:`default_chunk_rows`). Gradients flow to hidden,
    weight and bias; under torch.autocast the matmul runs in the autocast dtype, as F.linear would.
    """
    options = CrossEntropyOptions.of(ldam_scale, focal_gamma, label_smoothing, ignore_index, reduction)
    hidden, weight, bias = check_linear(OP_CE, hidden, weight, bias)
    num_classes = weight.shape[0]
    cw, margins, logit_bias = class_tensors(
        num_classes, hidden.device, class_counts=class_counts, beta=beta, class_weight=class_weight,
        ldam_max_margin=ldam_max_margin, logit_adjust_tau=logit_adjust_tau)
    return fused_linear_cross_entropy_with_class_tensors(
        hidden, weight, target, bias, class_weight=cw, margins=margins, logit_bias=logit_bias, options=options,
        chunk_rows=chunk_rows, backend=backend)


def fused_linear_cross_entropy_with_class_tensors(
    hidden, weight, target, bias=None, *, class_weight=None, margins=None, logit_bias=None, scale=1.0,
    focal_gamma=0.0, label_smoothing=0.0, ignore_index=-100, reduction="mean",
    options: CrossEntropyOptions | None = None, chunk_rows=None, backend="auto",
) -> torch.Tensor:
    """The fused op with its per-class tensors already derived (what the nn module calls).

    `options` (a :class:`CrossEntropyOptions`) replaces the scalar options scale .. reduction."""
    options = options_or_scalars(options, scale, focal_gamma, label_smoothing, ignore_index, reduction)
    code, reduction, ignore_index = options.reduction_code, options.reduction, options.ignore_index
    scale, focal_gamma, label_smoothing = options.scale, options.focal_gamma, options.label_smoothing
    hidden, weight, bias = check_linear(OP_CE, hidden, weight, bias)
    check_tensor("target", target, integer=True)
    check_same_device("hidden", hidden, target=target)
    if tuple(target.shape) != tuple(hidden.shape[:-1]):
        raise ValueError(f"target must have shape {list(hidden.shape[:-1])} (one class index per row of hidden "
                         f"{list(hidden.shape)}), got {list(target.shape)}")
    num_classes, in_features = weight.shape
    check_chunk_rows(chunk_rows)
    per_class = {}
    for name, value in (("class_weight", class_weight), ("margins", margins), ("logit_bias", logit_bias)):
        if value is not None:
            check_same_device("hidden", hidden, **{name: value})
            if value.shape != (num_classes,):
                raise ValueError(f"{name} must have shape [{num_classes}], got {tuple(value.shape)}")
            value = value.detach().to(compute_dtype(hidden.dtype)).contiguous()
        per_class[name] = value

    hidden2d = hidden.reshape(target.numel(), in_features)  # explicit rows: reshape(-1, 0) fails for D = 0
    target1d = target.reshape(-1).to(torch.int64)  # every backend reads int64
    chosen = _backend.resolve(backend, hidden2d, OP_CE)
    # The fused op checks the targets itself (also under torch.compile, where this is skipped).
    if chosen == "torch" and not torch.compiler.is_compiling() and _checks_enabled():
        check_targets_in_range(target1d, num_classes, ignore_index)
    if chosen == "torch":
        logits = F.linear(hidden2d, weight, bias)
        loss = cross_entropy_reference(logits, target1d, **per_class, scale=scale, focal_gamma=focal_gamma,
                                       label_smoothing=label_smoothing, ignore_index=ignore_index,
                                       reduction=reduction)
    else:
        chunk = _chunk_rows(chunk_rows, hidden2d.shape[0], in_features, num_classes, hidden.element_size(),
                            hidden.device.type)
        grads = _needed_grads(hidden, weight, bias, code)
        loss = torch.ops.pycmlt.fused_linear_cb_cross_entropy(
            hidden2d, weight, target1d, bias, per_class["class_weight"], per_class["margins"],
            per_class["logit_bias"], None, scale, focal_gamma, label_smoothing, ignore_index, code, chunk,
            _kernel(chosen), *grads)[0]
    loss = loss.to(hidden.dtype)
    return loss.reshape(target.shape) if code == 0 else loss


@renamed_keywords(targets="target")
def fused_linear_class_balanced_bce(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    class_counts=None,
    beta: float | None = None,
    loss_weight: torch.Tensor | None = None,
    pos_weight: torch.Tensor | None = None,
    focal_gamma: float = 0.0,
    reduction: str = "mean",
    chunk_rows: int | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """class_balanced_bce(F.linear(hidden, weight, bias), target, ...) without the logits.

    hidden [..., D], weight [C, D] (e.g. word embeddings for word prediction), bias [C] or None,
    target [..., C] (multi-hot or soft labels; `targets=` is its deprecated name). The options of
    :func:`pycmlt.ops.class_balanced_bce`, except that its `weight` (broadcastable to the logits) is
    called `loss_weight` here, because `weight` is the classifier matrix.
    """
    options = BCEOptions.of(focal_gamma, reduction)
    hidden, weight, bias = check_linear(OP_BCE, hidden, weight, bias)
    num_classes = weight.shape[0]
    effective = effective_bce_weight(num_classes, hidden.device, class_counts=class_counts, beta=beta,
                                     weight=loss_weight, weight_name="loss_weight")
    return fused_linear_bce_with_class_tensors(hidden, weight, target, bias, loss_weight=effective,
                                               pos_weight=pos_weight, options=options, chunk_rows=chunk_rows,
                                               backend=backend)


@renamed_keywords(targets="target")
def fused_linear_bce_with_class_tensors(hidden, weight, target, bias=None, *, loss_weight=None, pos_weight=None,
                                        focal_gamma=0.0, reduction="mean", options: BCEOptions | None = None,
                                        chunk_rows=None, backend="auto") -> torch.Tensor:
    """The fused BCE with its weights already derived (what the nn module calls).

    `options` (a :class:`BCEOptions`) replaces focal_gamma and reduction."""
    options = bce_options_or_scalars(options, focal_gamma, reduction)
    focal_gamma, reduction, code = options.focal_gamma, options.reduction, options.reduction_code
    hidden, weight, bias = check_linear(OP_BCE, hidden, weight, bias)
    num_classes, in_features = weight.shape
    logits_shape = tuple(hidden.shape[:-1]) + (num_classes,)
    check_tensor("target", target)
    if tuple(target.shape) != logits_shape:
        raise ValueError(f"target must have the shape of the logits {list(logits_shape)} (hidden "
                         f"{list(hidden.shape)} @ weight^T {list(weight.shape[::-1])}), got {list(target.shape)}")
    targets = check_targets(target, _ShapeOnly(logits_shape, hidden.device))
    w2d = broadcast_weight_2d("loss_weight", loss_weight, logits_shape, hidden.device)
    pw2d = broadcast_weight_2d("pos_weight", pos_weight, logits_shape, hidden.device)
    check_chunk_rows(chunk_rows)

    hidden2d = hidden.reshape(math.prod(logits_shape[:-1]), in_features)  # explicit rows (D may be 0)
    targets2d = targets.reshape(-1, num_classes)
    chosen = _backend.resolve(backend, hidden2d, OP_BCE)
    if chosen == "torch":
        logits = F.linear(hidden2d, weight, bias)
        loss = bce_reference(logits.reshape(logits_shape), targets, loss_weight, pos_weight,
                             focal_gamma=focal_gamma, reduction=reduction)
    else:
        if targets.requires_grad and torch.is_grad_enabled():
            raise ValueError(f"target requires grad, but backend={chosen!r} differentiates with respect to "
                             "hidden, weight and bias only: detach the target, or use backend='torch'")
        if targets2d.dtype not in (hidden.dtype, torch.float32):
            targets2d = targets2d.float()
        chunk = _chunk_rows(chunk_rows, hidden2d.shape[0], in_features, num_classes, hidden.element_size(),
                            hidden.device.type)
        grads = _needed_grads(hidden, weight, bias, code)
        loss = torch.ops.pycmlt.fused_linear_cb_bce(
            hidden2d, weight, targets2d, bias, w2d, pw2d, None, focal_gamma, code, chunk, _kernel(chosen),
            *grads)[0]
    loss = loss.to(hidden.dtype)
    return loss.reshape(logits_shape) if code == 0 else loss


# The old name, kept for one release.
fused_linear_bce_with_weights = deprecated_alias(fused_linear_bce_with_class_tensors, "fused_linear_bce_with_weights")


class _ShapeOnly:
    """Stands in for the logits in check_targets (shape and device only; the logits never exist)."""

    def __init__(self, shape, device):
        self.shape = torch.Size(shape)
        self.device = device


# ----------------------------------------------------------------------------- checks and helpers

def check_linear(op, hidden, weight, bias):
    """Validated (hidden, weight, bias) of F.linear, cast to the autocast dtype under torch.autocast."""
    check_tensor("hidden", hidden, floating=True)
    check_tensor("weight", weight, floating=True)
    if weight.dim() != 2:
        raise ValueError(f"{op}: weight must be the classifier matrix [C, D] (as in F.linear), got shape "
                         f"{list(weight.shape)}")
    if hidden.dim() < 1:
        raise ValueError(f"{op}: hidden must have shape [..., D], got a scalar")
    if hidden.shape[-1] != weight.shape[1]:
        raise ValueError(f"{op}: hidden has {hidden.shape[-1]} features (last dimension of {list(hidden.shape)}) "
                         f"but weight [C, D] has shape {list(weight.shape)}: the inner dimensions must agree")
    check_same_device("hidden", hidden, weight=weight)
    if bias is not None:
        check_tensor("bias", bias, floating=True)
        check_same_device("hidden", hidden, bias=bias)
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"{op}: bias must have shape [{weight.shape[0]}] (one per class), got {list(bias.shape)}")
    device_type = hidden.device.type
    if torch.is_autocast_enabled(device_type):
        dtype = torch.get_autocast_dtype(device_type)
        hidden, weight = hidden.to(dtype), weight.to(dtype)
        bias = None if bias is None else bias.to(dtype)
    if hidden.dtype != weight.dtype:
        raise TypeError(f"{op}: hidden is {hidden.dtype} but weight is {weight.dtype}; the matmul needs one dtype: "
                        f"cast one of them (e.g. hidden.to(weight.dtype)) or run under torch.autocast")
    if bias is not None and bias.dtype != weight.dtype:
        raise TypeError(f"{op}: bias is {bias.dtype} but weight is {weight.dtype}; give them the same dtype")
    return hidden, weight, bias


def check_chunk_rows(chunk_rows) -> None:
    """chunk_rows is None or a positive int, whatever the backend (the `torch` one ignores it)."""
    if chunk_rows is None:
        return
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int):
        raise TypeError(f"chunk_rows must be a positive int (rows of logits per chunk) or None, got {chunk_rows!r}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive int (rows of logits per chunk) or None, got {chunk_rows!r}")


def _chunk_rows(chunk_rows, num_rows, in_features, num_classes, itemsize, device_type):
    if chunk_rows is None:
        return default_chunk_rows(num_rows, in_features, num_classes, itemsize, device_type)
    return chunk_rows


def _needed_grads(hidden, weight, bias, code):
    """(grad_hidden, grad_weight, grad_bias) flags computed in the forward pass (none for 'none')."""
    if code == 0 or not torch.is_grad_enabled():
        return False, False, False
    return hidden.requires_grad, weight.requires_grad, bias is not None and bias.requires_grad


def _kernel(backend: str) -> str:
    return "triton" if backend == "triton" else "native"


_OUT_DTYPE_ADDMM: dict[str, bool] = {}


def _addmm_out_dtype_works(device: torch.device) -> bool:
    """Whether torch.addmm(fp32 acc, bf16, bf16, out_dtype=fp32, out=acc) runs here (CUDA, recent torch)."""
    key = device.type
    if key not in _OUT_DTYPE_ADDMM:
        try:
            acc = torch.zeros(2, 2, device=device)
            a = torch.ones(2, 2, device=device, dtype=torch.bfloat16)
            torch.addmm(acc, a, a, out_dtype=torch.float32, out=acc)
            _OUT_DTYPE_ADDMM[key] = bool(torch.equal(acc, torch.full_like(acc, 2.0)))
        except (RuntimeError, TypeError, NotImplementedError):
            _OUT_DTYPE_ADDMM[key] = False
    return _OUT_DTYPE_ADDMM[key]


def _accumulate_grad_weight(acc: torch.Tensor, g: torch.Tensor, h: torch.Tensor) -> None:
    """acc (fp32 [C, D]) += g^T @ h, the product accumulated in fp32 whatever the inputs' dtype."""
    if g.dtype == torch.float32:
        acc.addmm_(g.t(), h)
    elif acc.device.type == "cuda" and _addmm_out_dtype_works(acc.device):
        torch.addmm(acc, g.t(), h, out_dtype=torch.float32, out=acc)
    else:
        acc.addmm_(g.t().float(), h.float())


def _linear_into(buf, h, weight_t, bias):
    if bias is None:
        torch.mm(h, weight_t, out=buf)
    else:
        torch.addmm(bias, h, weight_t, out=buf)


def _chunked_linear_loss(hidden, weight, bias, chunk_rows, need, loss_out, chunk_loss, chunk_grad, scale_chunk):
    """The chunk loop shared by both losses.

    chunk_loss(s, e, z) -> loss of rows [s, e) from logits z (no gradient);
    chunk_grad(s, e, z) -> loss of rows [s, e), replacing z by d loss / d z in place;
    scale_chunk(s, e, z) scales the gradient chunk by the incoming gradient (reduction 'none' backward).
    Returns (grad_hidden, grad_weight, grad_bias), empty where not needed.
    """
    need_h, need_w, need_b = need
    n, d = hidden.shape
    c = weight.shape[0]
    compute = need_h or need_w or need_b
    grad_h = hidden.new_empty((n, d) if need_h else (0,))
    acc_w = torch.zeros((c, d), device=hidden.device, dtype=torch.float32) if need_w else None
    acc_b = torch.zeros((c,), device=hidden.device, dtype=torch.float32) if need_b else None
    if n > 0:
        rows = max(1, min(chunk_rows, n))
        buf = hidden.new_empty((rows, c))
        weight_t = weight.t()
        for s in range(0, n, rows):
            e = min(n, s + rows)
            h = hidden[s:e]
            z = buf[: e - s]
            _linear_into(z, h, weight_t, bias)
            if not compute:
                loss_out(s, e, chunk_loss(s, e, z))
                continue
            loss_out(s, e, chunk_grad(s, e, z))
            if scale_chunk is not None:
                scale_chunk(s, e, z)
            if need_h:
                torch.mm(z, weight, out=grad_h[s:e])
            if need_w:
                _accumulate_grad_weight(acc_w, z, h)
            if need_b:
                acc_b += z.sum(0, dtype=torch.float32)
        del buf
    grad_w = acc_w.to(weight.dtype) if need_w else weight.new_empty((0,))
    grad_b = acc_b.to(bias.dtype) if need_b else hidden.new_empty((0,))
    return grad_h, grad_w, grad_b


# ----------------------------------------------------------------------------- custom ops

@torch.library.custom_op("pycmlt::fused_linear_cb_cross_entropy", mutates_args=())
def _fused_linear_cb_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, target: torch.Tensor, bias: torch.Tensor | None,
    class_weight: torch.Tensor | None, margins: torch.Tensor | None, logit_bias: torch.Tensor | None,
    row_scale: torch.Tensor | None, scale: float, focal_gamma: float, label_smoothing: float, ignore_index: int,
    reduction: int, chunk_rows: int, kernel: str, grad_hidden: bool, grad_weight: bool, grad_bias: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, grad_hidden, grad_weight, grad_bias) of the chunked fused linear + cross-entropy.

    row_scale [N] (the backward of reduction 'none', called with reduction 2 = sum): the gradients are
    those of sum_i row_scale_i l_i.
    Gradients not asked for come back as empty tensors.
    """
    n = hidden.shape[0]
    c = weight.shape[0]
    if _checks_enabled() and not (kernel == "native" and hidden.device.type == "cpu"):  # the C++ CPU kernel checks
        check_targets_in_range(target, c, ignore_index)
    grad_reduction = 0 if row_scale is not None else reduction
    aux, denom = loss_aux(target, class_weight, c, ignore_index, grad_reduction)
    loss_rows = torch.empty(n, device=hidden.device, dtype=torch.float32)
    if kernel == "triton":
        inplace, plain = (torch.ops.pycmlt.cb_cross_entropy_grad_inplace_triton,
                          torch.ops.pycmlt.cb_cross_entropy_triton)
    else:
        inplace, plain = torch.ops.pycmlt.cb_cross_entropy_grad_inplace, torch.ops.pycmlt.cb_cross_entropy

    def store(s, e, value):
        loss_rows[s:e] = value

    def chunk_loss(s, e, z):
        return plain(z, target[s:e], class_weight, margins, logit_bias, scale, focal_gamma, label_smoothing,
                     ignore_index, 0, False)[0]

    def chunk_grad(s, e, z):
        return inplace(z, target[s:e], class_weight, margins, logit_bias, aux, scale, focal_gamma, label_smoothing,
                       ignore_index)

    def scale_rows(s, e, z):
        z.mul_(row_scale[s:e, None])

    grads = _chunked_linear_loss(hidden, weight, bias, chunk_rows, (grad_hidden, grad_weight, grad_bias), store,
                                 chunk_loss, chunk_grad, scale_rows if row_scale is not None else None)
    if reduction == 0:
        loss = loss_rows
    else:
        total = loss_rows.sum()
        loss = total / denom if reduction == 1 else total
    return (loss,) + grads


@torch.library.custom_op("pycmlt::fused_linear_cb_bce", mutates_args=())
def _fused_linear_cb_bce(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, bias: torch.Tensor | None,
    loss_weight: torch.Tensor | None, pos_weight: torch.Tensor | None, elem_scale: torch.Tensor | None,
    focal_gamma: float, reduction: int, chunk_rows: int, kernel: str, grad_hidden: bool, grad_weight: bool,
    grad_bias: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, grad_hidden, grad_weight, grad_bias) of the chunked fused linear + BCE.

    loss_weight / pos_weight: fp32 [1 or N, 1 or C]. elem_scale [N, C] (the backward of reduction
    'none', called with reduction 2 = sum): the gradients are those of sum_ij elem_scale_ij l_ij.
    """
    n = hidden.shape[0]
    c = weight.shape[0]
    count = n * c
    grad_scale = 1.0 / count if (reduction == 1 and elem_scale is None and count > 0) else 1.0
    if kernel == "triton":
        inplace, plain = torch.ops.pycmlt.cb_bce_grad_inplace_triton, torch.ops.pycmlt.cb_bce_triton
    else:
        inplace, plain = torch.ops.pycmlt.cb_bce_grad_inplace, torch.ops.pycmlt.cb_bce
    elementwise = reduction == 0 and elem_scale is None
    loss_elems = torch.empty((n, c), device=hidden.device, dtype=torch.float32) if elementwise else None
    totals = []

    def rows_of(w, s, e):
        return w if (w is None or w.shape[0] == 1) else w[s:e]

    def store(s, e, value):
        if elementwise:
            loss_elems[s:e] = value
        else:
            totals.append(value.reshape(()))

    def chunk_loss(s, e, z):
        return plain(z, targets[s:e], rows_of(loss_weight, s, e), rows_of(pos_weight, s, e), focal_gamma,
                     0 if elementwise else 2, False)[0]

    def chunk_grad(s, e, z):
        return inplace(z, targets[s:e], rows_of(loss_weight, s, e), rows_of(pos_weight, s, e), focal_gamma,
                       grad_scale)

    def scale_elems(s, e, z):
        z.mul_(elem_scale[s:e])

    grads = _chunked_linear_loss(hidden, weight, bias, chunk_rows, (grad_hidden, grad_weight, grad_bias), store,
                                 chunk_loss, chunk_grad, scale_elems if elem_scale is not None else None)
    if elementwise:
        loss = loss_elems
    else:
        total = torch.stack(totals).sum() if totals else torch.zeros((), device=hidden.device)
        loss = total / count if reduction == 1 else total
    return (loss,) + grads


def _fake_outputs(hidden, weight, bias, loss_shape, grad_hidden, grad_weight, grad_bias):
    loss = hidden.new_empty(loss_shape, dtype=torch.float32)
    gh = hidden.new_empty(tuple(hidden.shape) if grad_hidden else (0,))
    gw = weight.new_empty(tuple(weight.shape) if grad_weight else (0,))
    gb = (bias.new_empty(tuple(bias.shape)) if (grad_bias and bias is not None) else hidden.new_empty((0,)))
    return loss, gh, gw, gb


@torch.library.register_fake("pycmlt::fused_linear_cb_cross_entropy")
def _fake_ce(hidden, weight, target, bias, class_weight, margins, logit_bias, row_scale, scale, focal_gamma,
             label_smoothing, ignore_index, reduction, chunk_rows, kernel, grad_hidden, grad_weight, grad_bias):
    loss_shape = (hidden.shape[0],) if reduction == 0 else ()
    return _fake_outputs(hidden, weight, bias, loss_shape, grad_hidden, grad_weight, grad_bias)


@torch.library.register_fake("pycmlt::fused_linear_cb_bce")
def _fake_bce(hidden, weight, targets, bias, loss_weight, pos_weight, elem_scale, focal_gamma, reduction, chunk_rows,
              kernel, grad_hidden, grad_weight, grad_bias):
    loss_shape = (hidden.shape[0], weight.shape[0]) if reduction == 0 else ()
    return _fake_outputs(hidden, weight, bias, loss_shape, grad_hidden, grad_weight, grad_bias)


def _ce_op_reference(hidden, weight, target, bias, class_weight, margins, logit_bias, row_scale, scale, focal_gamma,
                     label_smoothing, ignore_index, reduction, chunk_rows, kernel, grad_hidden, grad_weight, grad_bias):
    """pycmlt::fused_linear_cb_cross_entropy through F.linear and the differentiable `torch` reference."""
    loss = cross_entropy_reference(F.linear(hidden, weight, bias), target, class_weight, margins, logit_bias,
                                   scale=scale, focal_gamma=focal_gamma, label_smoothing=label_smoothing,
                                   ignore_index=ignore_index,
                                   reduction="none" if row_scale is not None else reduction_name(reduction))
    return (loss.float() * row_scale).sum() if row_scale is not None else loss.float()


def _bce_op_reference(hidden, weight, targets, bias, loss_weight, pos_weight, elem_scale, focal_gamma, reduction,
                      chunk_rows, kernel, grad_hidden, grad_weight, grad_bias):
    """pycmlt::fused_linear_cb_bce through F.linear and the differentiable `torch` reference."""
    loss = bce_reference(F.linear(hidden, weight, bias), targets, loss_weight, pos_weight, focal_gamma=focal_gamma,
                         reduction="none" if elem_scale is not None else reduction_name(reduction))
    return (loss.float() * elem_scale).sum() if elem_scale is not None else loss.float()


class _Autograd:
    """Autograd of a fused op: scale the gradients kept by the forward pass (mean/sum), or, for
    reduction 'none', call the op again with the incoming gradient as its per-row (CE) or
    per-element (BCE) scale and reduction 'sum'. Under create_graph=True, the differentiable
    recomputation through the `torch` reference (recompute_grads)."""

    def __init__(self, qualname: str, scale_arg: str, reduction_arg: str, reference):
        """scale_arg / reduction_arg: the names, in the op's schema, of its per-row (per-element)
        gradient scale and of its reduction code; their positions are read from the schema."""
        self.qualname = qualname
        self.op = getattr(torch.ops.pycmlt, qualname.split("::")[1])
        names = [argument.name for argument in self.op.default._schema.arguments]
        self.scale_index = names.index(scale_arg)
        self.reduction_index = names.index(reduction_arg)
        self.reference = reference

    def setup_context(self, ctx, inputs, output):
        ctx.mark_non_differentiable(*output[1:])
        ctx.set_materialize_grads(False)
        ctx.reduction = inputs[self.reduction_index]
        ctx.num_inputs = len(inputs)
        ctx.computed = inputs[-3:]  # which gradients the forward pass wrote (an N = 0 one is empty, not absent)
        keep_inputs(ctx, inputs, self.reference)
        if ctx.reduction == 0:
            ctx.inputs = [None if isinstance(v, torch.Tensor) else v for v in inputs]
            ctx.tensor_slots = [i for i, v in enumerate(inputs) if isinstance(v, torch.Tensor)]
            ctx.save_for_backward(*[inputs[i] for i in ctx.tensor_slots])
        else:
            ctx.save_for_backward(*output[1:])

    def backward(self, ctx, grad_loss, *_grads_of_grads):
        out = [None] * ctx.num_inputs
        if grad_loss is None:
            return tuple(out)
        if torch.is_grad_enabled():
            return recompute_grads(ctx, (grad_loss,), (0, 1, 3))
        needs = ctx.needs_input_grad
        if ctx.reduction != 0:
            for slot, computed, saved in zip((0, 1, 3), ctx.computed, ctx.saved_tensors):
                if needs[slot] and computed:
                    out[slot] = scale_saved_grad(saved, grad_loss)
            return tuple(out)
        inputs = list(ctx.inputs)
        for slot, tensor in zip(ctx.tensor_slots, ctx.saved_tensors):
            inputs[slot] = tensor
        flags = (bool(needs[0]), bool(needs[1]), bool(needs[3]) and inputs[3] is not None)
        inputs[self.scale_index] = grad_loss.to(torch.float32).contiguous()
        inputs[self.reduction_index] = 2
        _, gh, gw, gb = self.op(*inputs[:-3], *flags)
        for slot, flag, grad in zip((0, 1, 3), flags, (gh, gw, gb)):
            if flag:
                out[slot] = grad
        return tuple(out)

    def register(self):
        torch.library.register_autograd(self.qualname, self.backward, setup_context=self.setup_context)


_Autograd("pycmlt::fused_linear_cb_cross_entropy", scale_arg="row_scale", reduction_arg="reduction",
          reference=_ce_op_reference).register()
_Autograd("pycmlt::fused_linear_cb_bce", scale_arg="elem_scale", reduction_arg="reduction",
          reference=_bce_op_reference).register()
