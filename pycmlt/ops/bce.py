"""Class-balanced sigmoid (multi-label) BCE (docs/ops/bce.md): the public function, the torch reference,
and the custom-op registration of the fused kernels (C++ CPU/CUDA through TORCH_LIBRARY, Triton as
a Python custom op). The kernels compute the gradient in the forward pass."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from pycmlt import _extension
from pycmlt.ops import _backend
from pycmlt.ops._checks import (
    check_finite_scalar,
    check_same_device,
    check_tensor,
    class_counts_tensor,
    compute_dtype,
    reduction_name,
)
from pycmlt.ops._deprecation import deprecated_alias, renamed_keywords
from pycmlt.ops._recorded_call import RecordedCall
from pycmlt.ops._registration import call_fused_loss, register_fused_loss, register_native_fused_loss
from pycmlt.ops.class_balance import class_balanced_weights
from pycmlt.ops.loss_options import BCEOptions

OP_NAME = "class_balanced_bce"


@renamed_keywords(targets="target")
def class_balanced_bce(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    class_counts=None,
    beta: float | None = None,
    weight: torch.Tensor | None = None,
    pos_weight: torch.Tensor | None = None,
    focal_gamma: float = 0.0,
    reduction: str = "mean",
    backend: str = "auto",
) -> torch.Tensor:
    """Long-tail multi-label sigmoid BCE; with no extras it equals F.binary_cross_entropy_with_logits.

    logits [..., C] (any shape; the last dimension is the class), target of the same shape:
    multi-hot {0, 1} or soft labels in [0, 1]. `class_counts` [C] (for multi-label data: the number
    of training examples in which each class is positive) with `beta` in [0, 1) gives the
    class-balanced weights of Cui et al. 2019 (normalised to sum to C), applied per class.
    An explicit `weight` (broadcastable to logits, as in PyTorch: an element weight, not only a
    per-class one, hence not `class_weight`) overrides the class-balanced weights; to combine both,
    pass weight=pycmlt.class_balanced_weights(counts, beta) * yours.
    `pos_weight` (broadcastable to logits; usually [C]) weighs the positive term as in PyTorch.
    `focal_gamma` > 0 multiplies each element's loss by (1 - p_t)^gamma (sigmoid focal loss).
    `mean` is the plain mean over all elements, as in PyTorch. Gradients flow to `logits` only.
    `targets=` is the deprecated name of `target`.
    """
    options = BCEOptions.of(focal_gamma, reduction)
    check_tensor("logits", logits, floating=True)
    num_classes = logits.shape[-1] if logits.dim() else 1
    effective = effective_bce_weight(num_classes, logits.device, class_counts=class_counts, beta=beta,
                                     weight=weight)
    return bce_with_class_tensors(logits, target, weight=effective, pos_weight=pos_weight, options=options,
                                  backend=backend)


def effective_bce_weight(num_classes, device, *, class_counts=None, beta=None, weight=None, weight_name="weight"):
    """The weight the BCE applies: the explicit `weight` when given (it overrides), else the
    class-balanced weights [C] of (class_counts, beta), else None."""
    if beta is not None and class_counts is None:
        raise ValueError("beta needs class_counts (for multi-label data: the number of training examples "
                         "in which each class is positive)")
    if class_counts is not None and beta is None:
        raise ValueError("class_counts is only used for class-balanced weights: pass beta as well "
                         "(e.g. beta=0.9999), or drop class_counts")
    if class_counts is None:
        return weight
    if isinstance(class_counts, torch.Tensor) and class_counts.device != device \
            and class_counts.device.type != "cpu":
        raise ValueError(f"class_counts is on {class_counts.device} but the logits are on {device}")
    counts = class_counts_tensor(class_counts, num_classes)
    if weight is not None:  # still validate beta: a bad value is a bug even when the explicit weight wins
        check_finite_scalar("beta", beta, low=0.0, high=1.0, high_open=True)
        return weight
    return class_balanced_weights(counts, beta).to(device)


def bce_module_call(record: RecordedCall, logits, target, weight, pos_weight, options: BCEOptions,
                    backend: str) -> torch.Tensor:
    """What a BCE module's forward runs: its recorded call (pycmlt.ops._recorded_call) when the guards
    hold, else bce_with_class_tensors, which checks everything and records the call."""
    found = record.holds(logits, (weight, pos_weight), options, backend)
    if (found is not None and type(target) is torch.Tensor and target.shape == logits.shape
            and (target.dtype is logits.dtype or target.dtype is torch.float32) and target.device == logits.device):
        grad_mode = torch.is_grad_enabled()
        if not (grad_mode and target.requires_grad):
            return found.run(logits, target, grad_mode and logits.requires_grad)
    return bce_with_class_tensors(logits, target, weight=weight, pos_weight=pos_weight, options=options,
                                  backend=backend, record=record)


@renamed_keywords(targets="target")
def bce_with_class_tensors(logits, target, *, weight=None, pos_weight=None, focal_gamma=0.0, reduction="mean",
                           options: BCEOptions | None = None, backend="auto",
                           record: RecordedCall | None = None) -> torch.Tensor:
    """The op with its weights already derived (what nn modules call with cached buffers).

    `options` (a :class:`BCEOptions`, what the nn modules pass) replaces focal_gamma and reduction,
    which must then keep their defaults. `record` (a module's RecordedCall) remembers this call for
    the module's fast path."""
    options = bce_options_or_scalars(options, focal_gamma, reduction)
    focal_gamma, reduction, code = options.focal_gamma, options.reduction, options.reduction_code
    check_tensor("logits", logits, floating=True)
    targets = check_targets(target, logits)
    shape = tuple(logits.shape)
    num_classes = shape[-1] if shape else 1
    w2d = broadcast_weight_2d("weight", weight, shape, logits.device)
    pw2d = broadcast_weight_2d("pos_weight", pos_weight, shape, logits.device)

    chosen = _backend.resolve(backend, logits, OP_NAME)
    if chosen == "torch":
        if record is not None:
            record.forget()
        loss = bce_reference(logits, targets, weight, pos_weight, focal_gamma=focal_gamma, reduction=reduction)
        return loss.to(logits.dtype)
    if targets.requires_grad and torch.is_grad_enabled():
        raise ValueError(f"target requires grad, but backend={chosen!r} differentiates with respect to logits "
                         "only: detach the target, or use backend='torch' to differentiate through it")
    if targets.dtype not in (logits.dtype, torch.float32):
        targets = targets.float()  # exact for fp16/bf16 labels; fp64 labels are rounded to fp32
    if len(shape) == 2:  # the usual [N, C]: no reshape (each costs a tensor object on every call)
        logits2d, targets2d = logits, targets
    else:
        logits2d, targets2d = logits.reshape(-1, num_classes), targets.reshape(-1, num_classes)
    op = torch.ops.pycmlt.cb_bce_triton if chosen == "triton" else torch.ops.pycmlt.cb_bce
    loss = call_fused_loss(op, (logits2d, targets2d, w2d, pw2d, focal_gamma, code,
                                logits.requires_grad and torch.is_grad_enabled()), (0,))
    if record is not None:
        record.record(op, (w2d, pw2d, focal_gamma, code), sources=(weight, pos_weight), options=options,
                      backend=backend, logits=logits)
    if loss.dtype != logits.dtype:
        loss = loss.to(logits.dtype)
    return loss.reshape(shape) if code == 0 and logits.dim() != 2 else loss


# The old name, kept for one release.
bce_with_weights = deprecated_alias(bce_with_class_tensors, "bce_with_weights")


def bce_options_or_scalars(options, focal_gamma, reduction) -> BCEOptions:
    """The BCEOptions of a second-layer call: `options` as given (the scalars left at their defaults),
    else the cached options of the scalars."""
    if options is None:
        return BCEOptions.of(focal_gamma, reduction)
    if not isinstance(options, BCEOptions):
        raise TypeError(f"options must be a pycmlt.ops.BCEOptions or None, got {type(options).__name__}")
    if (focal_gamma, reduction) != (0.0, "mean"):
        raise TypeError("pass focal_gamma and reduction either in options=BCEOptions(...) or as keywords, not both")
    return options


def check_targets(target, logits) -> torch.Tensor:
    """The BCE labels: a floating-point tensor of the logits' shape and device."""
    check_tensor("target", target)
    if not target.is_floating_point():
        raise TypeError(f"target must be a floating-point tensor (multi-hot 0/1 or soft labels in [0, 1]), got "
                        f"{target.dtype}: convert with target.to(logits.dtype) or target.float()")
    check_same_device("logits", logits, target=target)
    if target.shape != logits.shape:
        raise ValueError(f"target must have the shape of logits {list(logits.shape)} (one label per logit), "
                         f"got {list(target.shape)}")
    return target


def broadcasts_to(value_shape: tuple, shape: tuple) -> bool:
    """Whether torch.broadcast_shapes(value_shape, shape) == shape. Plain integer sizes are compared here:
    torch.broadcast_shapes costs ~15 us a call on the CPU (its symbolic-shape checks), once per weight
    on every eager call of a small loss. Symbolic sizes (tracing) keep torch's rules and guards."""
    if not all(type(s) is int for s in value_shape + shape):
        try:
            return torch.broadcast_shapes(value_shape, shape) == shape
        except RuntimeError:
            return False
    if len(value_shape) > len(shape):
        return False
    return all(v == 1 or v == s for v, s in zip(reversed(value_shape), reversed(shape)))


def broadcast_weight_2d(name, value, shape, device) -> torch.Tensor | None:
    """`value` (broadcastable to the logits' shape [..., C]) as the fp32 [1 or N, 1 or C] contiguous
    tensor the kernels read, N = prod(shape[:-1]). A weight that broadcasts over the leading
    dimensions in part only (e.g. [B, 1, C] against [A, B, C]) is expanded to [N, C]."""
    if value is None:
        return None
    check_tensor(name, value, floating=True)
    if value.device != device:
        raise ValueError(f"{name} is on {value.device} but the logits are on {device}; move them to the same device")
    if (value.dim() == 1 and shape and value.shape[0] == shape[-1] and value.dtype == torch.float32
            and value.is_contiguous() and not value.requires_grad):
        # A per-class [C] fp32 vector (what the nn modules hold): a view, no copy (~15 -> ~2 us a call).
        return value.view(1, -1)
    shape = tuple(shape)
    if not broadcasts_to(tuple(value.shape), shape):
        raise ValueError(f"{name} of shape {list(value.shape)} does not broadcast to the logits' shape "
                         f"{list(shape)} (it must broadcast to it, as in F.binary_cross_entropy_with_logits)")
    value = value.detach().to(torch.float32)
    if not shape:
        return value.reshape(1, 1).contiguous()
    value = value.reshape((1,) * (len(shape) - value.dim()) + tuple(value.shape))
    cols = value.shape[-1]
    if all(s == 1 for s in value.shape[:-1]):
        return value.reshape(1, cols).contiguous()
    return value.expand(*shape[:-1], cols).reshape(-1, cols).contiguous()


def bce_reference(logits, targets, weight=None, pos_weight=None, *, focal_gamma=0.0, reduction="mean",
                  upcast=True):
    """Readable PyTorch reference (autograd for the gradient), any shape.

    upcast=True (the `torch` backend) computes in fp32 (fp64 inputs in fp64); upcast=False keeps the input
    dtype, which is what plain PyTorch does with fp16/bf16 and what the tests use as the low-precision baseline.
    """
    z = logits.to(compute_dtype(logits.dtype)) if upcast else logits
    t = targets.to(z.dtype)
    w = None if weight is None else weight.to(z.dtype)
    pw = None if pos_weight is None else pos_weight.to(z.dtype)
    if focal_gamma == 0:
        return F.binary_cross_entropy_with_logits(z, t, weight=w, pos_weight=pw, reduction=reduction)
    bce = F.binary_cross_entropy_with_logits(z, t, pos_weight=pw, reduction="none")
    one_minus_pt = t * torch.sigmoid(-z) + (1 - t) * torch.sigmoid(z)
    loss = one_minus_pt.clamp_min(torch.finfo(z.dtype).tiny).pow(focal_gamma) * bce
    if w is not None:
        loss = loss * w
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.mean()


# ----------------------------------------------------------------------------- custom-op plumbing

def _fake(logits, targets, weight, pos_weight, focal_gamma, reduction, compute_grad):
    n, c = logits.shape
    loss = logits.new_empty((n, c) if reduction == 0 else (), dtype=torch.float32)
    grad = logits.new_empty((n, c) if compute_grad else (0,))
    return loss, grad


def _fake_inplace(logits, targets, weight, pos_weight, focal_gamma, grad_scale):
    return logits.new_empty((), dtype=torch.float32)


@torch.library.custom_op("pycmlt::cb_bce_triton", mutates_args=())
def _cb_bce_triton(
    logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor | None, pos_weight: torch.Tensor | None,
    focal_gamma: float, reduction: int, compute_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    from pycmlt.kernels.bce import cb_bce_rows

    count = logits.numel()
    grad_scale = 1.0 / count if (reduction == 1 and count > 0) else 1.0
    loss, grad = cb_bce_rows(logits, targets, weight, pos_weight, focal_gamma, grad_scale,
                             elementwise=reduction == 0, compute_grad=compute_grad)
    if reduction == 0:
        return loss, grad
    total = loss.sum()
    return (total / count if reduction == 1 else total), grad


@torch.library.custom_op("pycmlt::cb_bce_grad_inplace_triton", mutates_args=("logits",))
def _cb_bce_grad_inplace_triton(
    logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor | None, pos_weight: torch.Tensor | None,
    focal_gamma: float, grad_scale: float,
) -> torch.Tensor:
    """Triton twin of pycmlt::cb_bce_grad_inplace: logits <- grad_scale * d loss / d logits."""
    from pycmlt.kernels.bce import cb_bce_rows

    partial, _ = cb_bce_rows(logits, targets, weight, pos_weight, focal_gamma, grad_scale, elementwise=False,
                             compute_grad=True, out=logits)
    return partial.sum()


def _op_reference(logits, targets, weight, pos_weight, focal_gamma, reduction, compute_grad):
    """The op's loss through the differentiable `torch` reference (for create_graph=True backward)."""
    return bce_reference(logits, targets, weight, pos_weight, focal_gamma=focal_gamma,
                         reduction=reduction_name(reduction)).float()


def _register(qualname: str) -> None:
    register_fused_loss(qualname, _fake, differentiable=(0,), reference=_op_reference)


_register("pycmlt::cb_bce_triton")
torch.library.register_fake("pycmlt::cb_bce_grad_inplace_triton")(_fake_inplace)
if _extension.native_available():
    register_native_fused_loss("pycmlt::cb_bce", _fake, _op_reference)
    torch.library.register_fake("pycmlt::cb_bce_grad_inplace")(_fake_inplace)
