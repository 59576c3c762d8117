"""Class-balanced softmax cross-entropy (docs/ops/cross_entropy.md): the public function, the torch reference,
and the custom-op registration of the fused kernels (C++ CPU/CUDA through TORCH_LIBRARY,
Triton as a Python custom op). The kernels compute the gradient in the forward pass."""
from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F

from pycmlt import _extension
from pycmlt.ops import _backend
from pycmlt.ops._checks import (
    check_same_device,
    check_targets_in_range,
    check_tensor,
    class_counts_tensor,
    compute_dtype,
    reduction_name,
)
from pycmlt.ops._deprecation import renamed_keywords
from pycmlt.ops._recorded_call import RecordedCall
from pycmlt.ops._registration import call_fused_loss, register_fused_loss, register_native_fused_loss
from pycmlt.ops.class_balance import class_balanced_weights, ldam_margins, logit_adjustment
from pycmlt.ops.loss_options import CrossEntropyOptions

OP_NAME = "class_balanced_cross_entropy"


@renamed_keywords(weight="class_weight")
def class_balanced_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
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
    backend: str = "auto",
) -> torch.Tensor:
    """Long-tail softmax cross-entropy; with no counts and no extras it equals F.cross_entropy.

    logits [N, C] (or [C], or [N, C, d1, ...]), target [N] class indices (ignore_index skipped).
    class_counts [C] (training counts) enables: class-balanced weights with `beta` in [0, 1),
    LDAM margins with `ldam_max_margin` > 0, logit adjustment with `logit_adjust_tau` != 0.
    An explicit `class_weight` [C] overrides the class-balanced weights (`weight=` is its deprecated
    name). `focal_gamma` > 0 gives the focal loss (not combinable with label smoothing). `ldam_scale`
    multiplies the adjusted logits. The scalar options are validated by :class:`CrossEntropyOptions`.
    """
    check_tensor("logits", logits, floating=True)
    num_classes = logits.shape[1] if logits.dim() >= 2 else (logits.shape[0] if logits.dim() == 1 else 0)
    if logits.dim() == 0:
        raise ValueError("logits must have shape [N, C], [C] or [N, C, d1, ...], got a scalar")
    options = CrossEntropyOptions.of(ldam_scale, focal_gamma, label_smoothing, ignore_index, reduction)
    class_weight, margins, bias = class_tensors(
        num_classes, logits.device, class_counts=class_counts, beta=beta, class_weight=class_weight,
        ldam_max_margin=ldam_max_margin, logit_adjust_tau=logit_adjust_tau)
    return cross_entropy_with_class_tensors(
        logits, target, class_weight=class_weight, margins=margins, logit_bias=bias, options=options,
        backend=backend)


def class_tensors(num_classes, device, *, class_counts=None, beta=None, class_weight=None, ldam_max_margin=0.0,
                  logit_adjust_tau=0.0):
    """(class weight, LDAM margins, logit offsets) [C] fp32 tensors (or None) from the options of
    class_balanced_cross_entropy: an explicit class_weight overrides the class-balanced weights of beta.

    The tensors derived from class_counts are remembered (see _derived_cache_key): a training loop that
    passes the same counts every step derives them once, not per call."""
    weight = class_weight
    if weight is not None:
        check_tensor("class_weight", weight, floating=True)
        if weight.device != device:
            raise ValueError(f"class_weight is on {weight.device} but the logits are on {device}; "
                             "move them to the same device")
        if weight.shape != (num_classes,):
            raise ValueError(f"class_weight must have shape [{num_classes}] (one weight per class), "
                             f"got {tuple(weight.shape)}")
    key = _derived_cache_key(class_counts, num_classes, device, beta if weight is None else None,
                             ldam_max_margin, logit_adjust_tau)
    hit = _DERIVED.get(key) if key is not None else None
    if hit is not None and (hit[0] is None or hit[0]() is class_counts):
        derived = hit[1]
    else:
        derived = _derive_class_tensors(num_classes, device, class_counts, beta, weight, ldam_max_margin,
                                        logit_adjust_tau)
        if key is not None:
            if len(_DERIVED) >= 64:
                _DERIVED.pop(next(iter(_DERIVED)))
            _DERIVED[key] = (weakref.ref(class_counts) if isinstance(class_counts, torch.Tensor) else None, derived)
    derived_weight, margins, bias = derived
    return (weight if weight is not None else derived_weight), margins, bias


_DERIVED: dict = {}  # _derived_cache_key -> (weak reference to a counts tensor or None, derived tensors)


def _derived_cache_key(class_counts, num_classes, device, beta, ldam_max_margin, logit_adjust_tau):
    """A hashable key of the derivation, or None where it must not be cached: a plain counts tensor is
    keyed by identity and version (an in-place change derives afresh), a list/tuple of numbers by value;
    never under torch.compile."""
    if class_counts is None or torch.compiler.is_compiling():
        return None
    if type(class_counts) is torch.Tensor:
        counts_key = ("tensor", id(class_counts), class_counts._version)
    elif type(class_counts) in (list, tuple) and all(type(v) in (int, float) for v in class_counts):
        counts_key = ("values", tuple(class_counts))
    else:
        return None
    options = []
    for value in (beta, ldam_max_margin, logit_adjust_tau):
        if value is not None and type(value) not in (int, float):
            return None
        options.append((type(value), value))
    return counts_key, num_classes, device, tuple(options)


def _derive_class_tensors(num_classes, device, class_counts, beta, weight, ldam_max_margin, logit_adjust_tau):
    """(class-balanced weights or None, margins or None, offsets or None), validating every option."""
    needs_counts = {"beta": beta is not None, "ldam_max_margin": ldam_max_margin != 0.0,
                    "logit_adjust_tau": logit_adjust_tau != 0.0}
    counts = None
    if class_counts is not None:
        if isinstance(class_counts, torch.Tensor) and class_counts.device != device \
                and class_counts.device.type != "cpu":
            raise ValueError(f"class_counts is on {class_counts.device} but the logits are on {device}")
        counts = class_counts_tensor(class_counts, num_classes)
    else:
        missing = [name for name, used in needs_counts.items() if used]
        if missing:
            raise ValueError(f"{', '.join(missing)} need class_counts (the training count of each class)")
    class_weight = class_balanced_weights(counts, beta).to(device) if beta is not None and weight is None else None
    margins = ldam_margins(counts, ldam_max_margin).to(device) if ldam_max_margin != 0.0 else None
    bias = logit_adjustment(counts, logit_adjust_tau).to(device) if logit_adjust_tau != 0.0 else None
    return class_weight, margins, bias


def cross_entropy_module_call(record: RecordedCall, logits, target, class_weight, margins, logit_bias,
                              options: CrossEntropyOptions, backend: str) -> torch.Tensor:
    """What a cross-entropy module's forward runs: its recorded call (pycmlt.ops._recorded_call) when the
    guards hold (int64 targets [N] on the logits' device), else cross_entropy_with_class_tensors, which
    checks everything and records the call."""
    found = record.holds(logits, (class_weight, margins, logit_bias), options, backend)
    if (found is not None and type(target) is torch.Tensor and target.dtype is torch.int64 and target.dim() == 1
            and target.shape[0] == logits.shape[0] and target.device == logits.device):
        if found.check_range and _checks_enabled():
            check_targets_in_range(target, found.num_classes, options.ignore_index)
        return found.run(logits, target, logits.requires_grad and torch.is_grad_enabled())
    return cross_entropy_with_class_tensors(logits, target, class_weight=class_weight, margins=margins,
                                            logit_bias=logit_bias, options=options, backend=backend, record=record)


def cross_entropy_with_class_tensors(
    logits, target, *, class_weight=None, margins=None, logit_bias=None, scale=1.0, focal_gamma=0.0,
    label_smoothing=0.0, ignore_index=-100, reduction="mean", options: CrossEntropyOptions | None = None,
    backend="auto", record: RecordedCall | None = None,
) -> torch.Tensor:
    """The op with its per-class tensors already derived (what nn modules call with cached buffers).

    `options` (a :class:`CrossEntropyOptions`, what the nn modules pass) replaces the scalar options
    scale .. reduction, which must then keep their defaults. `record` (a module's RecordedCall)
    remembers this call for the module's fast path."""
    options = options_or_scalars(options, scale, focal_gamma, label_smoothing, ignore_index, reduction)
    check_tensor("logits", logits, floating=True)
    check_tensor("target", target, integer=True)
    check_same_device("logits", logits, target=target)
    code, reduction, ignore_index = options.reduction_code, options.reduction, options.ignore_index
    scale, focal_gamma, label_smoothing = options.scale, options.focal_gamma, options.label_smoothing

    logits2d, target1d, out_shape = _as_rows(logits, target)
    if target1d.dtype != torch.int64:
        target1d = target1d.to(torch.int64)  # every backend reads int64 (F.cross_entropy itself rejects int32)
    num_classes = logits2d.shape[1]
    per_class = {"class_weight": class_weight, "margins": margins, "logit_bias": logit_bias}
    if class_weight is not None or margins is not None or logit_bias is not None:
        wanted = compute_dtype(logits.dtype)
        for name, value in per_class.items():
            if value is not None:
                check_same_device("logits", logits, **{name: value})
                if value.shape != (num_classes,):
                    raise ValueError(f"{name} must have shape [{num_classes}], got {tuple(value.shape)}")
                if value.dtype != wanted or not value.is_contiguous():
                    per_class[name] = value.to(wanted).contiguous()

    chosen = _backend.resolve(backend, logits2d, OP_NAME)
    # The C++ CPU kernel and the Triton op check the targets themselves (also under torch.compile).
    if chosen not in ("cpu", "triton") and not torch.compiler.is_compiling() and _checks_enabled():
        check_targets_in_range(target1d, num_classes, ignore_index)
    if chosen == "torch":
        if record is not None:
            record.forget()
        loss = cross_entropy_reference(logits2d, target1d, **per_class, scale=scale, focal_gamma=focal_gamma,
                                       label_smoothing=label_smoothing, ignore_index=ignore_index,
                                       reduction=reduction)
    else:
        op = torch.ops.pycmlt.cb_cross_entropy_triton if chosen == "triton" else torch.ops.pycmlt.cb_cross_entropy
        loss = call_fused_loss(op, (logits2d, target1d, per_class["class_weight"],
                                    per_class["margins"], per_class["logit_bias"], scale, focal_gamma, label_smoothing,
                                    ignore_index, code, logits2d.requires_grad and torch.is_grad_enabled()), (0,))
        if record is not None:
            record.record(op, (per_class["class_weight"], per_class["margins"], per_class["logit_bias"], scale,
                               focal_gamma, label_smoothing, ignore_index, code),
                          sources=(class_weight, margins, logit_bias), options=options, backend=backend,
                          logits=logits, check_range=chosen not in ("cpu", "triton"))
    if loss.dtype != logits.dtype:
        loss = loss.to(logits.dtype)
    return loss.reshape(out_shape) if code == 0 and logits.dim() != 2 else loss


_CE_DEFAULTS = (1.0, 0.0, 0.0, -100, "mean")


def options_or_scalars(options, scale, focal_gamma, label_smoothing, ignore_index, reduction) -> CrossEntropyOptions:
    """The CrossEntropyOptions of a second-layer call: `options` as given (the scalars left at their
    defaults), else the cached options of the scalars."""
    if options is None:
        return CrossEntropyOptions.of(scale, focal_gamma, label_smoothing, ignore_index, reduction)
    if not isinstance(options, CrossEntropyOptions):
        raise TypeError(f"options must be a pycmlt.ops.CrossEntropyOptions or None, got {type(options).__name__}")
    if (scale, focal_gamma, label_smoothing, ignore_index, reduction) != _CE_DEFAULTS:
        raise TypeError("pass the scalar options either in options=CrossEntropyOptions(...) or as keywords "
                        "(scale, focal_gamma, label_smoothing, ignore_index, reduction), not both")
    return options


def cross_entropy_reference(logits, target, class_weight=None, margins=None, logit_bias=None, *, scale=1.0,
                            focal_gamma=0.0, label_smoothing=0.0, ignore_index=-100, reduction="mean",
                            upcast=True):
    """Readable PyTorch reference on [N, C] logits, autograd for the gradient.

    upcast=True (the `torch` backend) computes in fp32 (fp64 inputs in fp64); upcast=False keeps the input
    dtype, which is what plain PyTorch does with fp16/bf16 and what the tests use as the low-precision baseline.
    """
    z = logits.to(compute_dtype(logits.dtype)) if upcast else logits
    class_weight, margins, logit_bias = (None if t is None else t.to(z.dtype)
                                         for t in (class_weight, margins, logit_bias))
    keep = target != ignore_index
    safe = torch.where(keep, target, 0)
    if logit_bias is not None:
        z = z + logit_bias
    if margins is not None:
        z = z - F.one_hot(safe, z.shape[1]) * (margins[safe] * keep)[:, None]
    z = z * scale
    if focal_gamma == 0:
        return F.cross_entropy(z, target, weight=class_weight, ignore_index=ignore_index,
                               label_smoothing=label_smoothing, reduction=reduction)
    log_p_y = z.log_softmax(dim=1).gather(1, safe[:, None]).squeeze(1)
    one_minus_p = (-torch.expm1(log_p_y)).clamp_min(torch.finfo(z.dtype).tiny)
    w_y = class_weight[safe] if class_weight is not None else torch.ones_like(log_p_y)
    w_y = torch.where(keep, w_y, 0.0)
    loss = w_y * one_minus_p.pow(focal_gamma) * -log_p_y
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.sum() / w_y.sum()


def _as_rows(logits, target):
    """[N, C] logits and [N] targets from the shapes F.cross_entropy accepts; the 'none' output shape."""
    if logits.dim() == 1:
        if target.dim() != 0:
            raise ValueError(f"target must be a scalar index for 1-D logits [C], got shape {tuple(target.shape)}")
        return logits.unsqueeze(0), target.reshape(1), ()
    expected = (logits.shape[0],) + tuple(logits.shape[2:])
    if tuple(target.shape) != expected:
        raise ValueError(f"target must have shape {list(expected)} for logits of shape {list(logits.shape)}, "
                         f"got {list(target.shape)}")
    if logits.dim() == 2:
        return logits, target, expected
    c = logits.shape[1]
    return logits.movedim(1, -1).reshape(-1, c), target.reshape(-1), expected


_target_checks = True


def _checks_enabled() -> bool:
    return _target_checks


def set_target_checks(enabled: bool) -> None:
    """Turn the host-synchronising target range check of the GPU backends on (default) or off.

    Off, an out-of-range target gives a NaN loss instead of an exception (never a memory error).
    """
    global _target_checks
    _target_checks = bool(enabled)


# ----------------------------------------------------------------------------- custom-op plumbing

def _fake(logits, target, class_weight, margins, logit_bias, scale, focal_gamma, label_smoothing,
          ignore_index, reduction, compute_grad):
    n, c = logits.shape
    loss = logits.new_empty((n,) if reduction == 0 else (), dtype=torch.float32)
    grad = logits.new_empty((n, c) if compute_grad else (0,))
    return loss, grad


@torch.library.custom_op("pycmlt::cb_cross_entropy_triton", mutates_args=())
def _cb_cross_entropy_triton(
    logits: torch.Tensor, target: torch.Tensor, class_weight: torch.Tensor | None, margins: torch.Tensor | None,
    logit_bias: torch.Tensor | None, scale: float, focal_gamma: float, label_smoothing: float, ignore_index: int,
    reduction: int, compute_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    from pycmlt.kernels.cross_entropy import cb_cross_entropy_rows

    if _checks_enabled():  # here, not in the caller: the op also runs compiled, where the caller skips checks
        check_targets_in_range(target, logits.shape[1], ignore_index)
    aux, denom = loss_aux(target, class_weight, logits.shape[1], ignore_index, reduction)
    loss_rows, grad = cb_cross_entropy_rows(logits, target, class_weight, margins, logit_bias, aux, scale,
                                            focal_gamma, label_smoothing, ignore_index, compute_grad)
    if reduction == 0:
        return loss_rows, grad
    total = loss_rows.sum()
    return (total / denom if reduction == 1 else total), grad


@torch.library.custom_op("pycmlt::cb_cross_entropy_grad_inplace_triton", mutates_args=("logits",))
def _cb_cross_entropy_grad_inplace_triton(
    logits: torch.Tensor, target: torch.Tensor, class_weight: torch.Tensor | None, margins: torch.Tensor | None,
    logit_bias: torch.Tensor | None, aux: torch.Tensor, scale: float, focal_gamma: float, label_smoothing: float,
    ignore_index: int,
) -> torch.Tensor:
    """Triton twin of pycmlt::cb_cross_entropy_grad_inplace: logits <- aux[0] * d loss / d logits."""
    from pycmlt.kernels.cross_entropy import cb_cross_entropy_rows

    loss_rows, _ = cb_cross_entropy_rows(logits, target, class_weight, margins, logit_bias, aux, scale, focal_gamma,
                                         label_smoothing, ignore_index, True, out=logits)
    return loss_rows


def _fake_inplace(logits, target, class_weight, margins, logit_bias, aux, scale, focal_gamma, label_smoothing,
                  ignore_index):
    return logits.new_empty((logits.shape[0],), dtype=torch.float32)


def loss_aux(target, class_weight, num_classes, ignore_index, reduction):
    """(aux, denom) of a whole batch: pycmlt::ce_loss_aux where the extension has a kernel for the
    target's device, else ce_loss_aux_reference. class_weight: contiguous fp32 [C] or None."""
    if _native_aux(target.device):
        return torch.ops.pycmlt.ce_loss_aux(target, class_weight, num_classes, ignore_index, reduction)
    return ce_loss_aux_reference(target, class_weight, num_classes, ignore_index, reduction)


def _native_aux(device: torch.device) -> bool:
    if not _extension.native_available():
        return False
    return device.type == "cpu" or (device.type == "cuda" and _extension.CUDA_KERNELS_COMPILED)


def ce_loss_aux_reference(target, class_weight, num_classes, ignore_index, reduction):
    """Torch reference of pycmlt::ce_loss_aux (docs/ops/cross_entropy.md, "The auxiliary"):
    aux = [gradient scale (1 / denom for mean, else 1), sum of the class weights (C without)] fp32 [2]
    and denom = sum of the class weights of the counted rows, on the target's device, no host sync.
    Unlike the op's CPU kernel it does not validate the targets (an out-of-range one counts class 0)."""
    counted = target != ignore_index
    safe = torch.where(counted & (target >= 0) & (target < num_classes), target, 0)
    if class_weight is not None:
        w_y = torch.where(counted, class_weight[safe], 0.0)
        w_total = class_weight.sum()
    else:
        w_y = counted.to(torch.float32)
        w_total = torch.tensor(float(num_classes), device=target.device)
    denom = w_y.sum()
    grad_scale = 1.0 / denom if reduction == 1 else torch.ones((), device=target.device)
    return torch.stack([grad_scale.to(torch.float32), w_total.to(torch.float32)]), denom


def _fake_loss_aux(target, class_weight, num_classes, ignore_index, reduction):
    return target.new_empty((2,), dtype=torch.float32), target.new_empty((), dtype=torch.float32)


def _op_reference(logits, target, class_weight, margins, logit_bias, scale, focal_gamma, label_smoothing,
                  ignore_index, reduction, compute_grad):
    """The op's loss through the differentiable `torch` reference (for create_graph=True backward)."""
    return cross_entropy_reference(logits, target, class_weight, margins, logit_bias, scale=scale,
                                   focal_gamma=focal_gamma, label_smoothing=label_smoothing,
                                   ignore_index=ignore_index, reduction=reduction_name(reduction)).float()


def _register(qualname: str) -> None:
    register_fused_loss(qualname, _fake, differentiable=(0,), reference=_op_reference)


_register("pycmlt::cb_cross_entropy_triton")
torch.library.register_fake("pycmlt::cb_cross_entropy_grad_inplace_triton")(_fake_inplace)
if _extension.native_available():
    register_native_fused_loss("pycmlt::cb_cross_entropy", _fake, _op_reference)
    torch.library.register_fake("pycmlt::cb_cross_entropy_grad_inplace")(_fake_inplace)
    torch.library.register_fake("pycmlt::ce_loss_aux")(_fake_loss_aux)
