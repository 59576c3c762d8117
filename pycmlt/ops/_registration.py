"""Helpers that attach fake (meta) kernels and autograd formulas to pycmlt custom ops.

cb_cross_entropy and cb_bce have their autograd in C++ (csrc/autograd.cpp): an eager call is one
dispatcher entry; here they only get fake kernels and the kernels of their `*_grad_reference` ops
(register_native_fused_loss). The other fused losses get a Python autograd formula (register_fused_loss).

First-order backward of a fused loss only scales the gradients its kernel wrote in forward. Those are
constants to autograd, so a backward that is itself differentiated (create_graph=True: hvp, gradient
penalties) instead recomputes the gradient from the inputs through the op's `torch` reference
formula, which autograd can differentiate again (see recompute_grads).
"""
from __future__ import annotations

from typing import Callable

import torch


def scale_saved_grad(grad: torch.Tensor, grad_output: torch.Tensor) -> torch.Tensor:
    """d loss / d x from the gradient saved in forward and the incoming gradient of the loss.

    grad_output is a scalar (mean/sum), one value per row ([N], reduction="none" of a row loss) or
    one value per element (grad's shape, reduction="none" of an element-wise loss). The product is
    computed in fp32 and written in grad's dtype. When the incoming gradient is exactly 1 on the CPU
    (the usual `loss.backward()`) the saved gradient is returned as is: no extra pass, no copy.
    """
    if grad_output.dim() == 0:
        # Only a plain eager CPU tensor is inspected: never under tracing, never with a GPU sync.
        if (type(grad_output) is torch.Tensor and grad_output.device.type == "cpu"
                and not torch.compiler.is_compiling() and grad_output.item() == 1.0):
            return grad
        factor = grad_output
    elif grad_output.shape == grad.shape:
        factor = grad_output
    else:
        factor = grad_output.reshape(grad.shape[:1] + (1,) * (grad.dim() - 1))
    return torch.mul(grad, factor, out=torch.empty_like(grad))


def keep_inputs(ctx, inputs: tuple, reference: Callable) -> None:
    """Keep references to an op's inputs (no copy) and its differentiable `reference(*inputs)`, for a
    backward under create_graph=True (recompute_grads). The inputs' versions are recorded so that an
    input modified in place before such a backward is an error, not a wrong second derivative."""
    ctx.op_inputs = inputs
    ctx.reference = reference
    ctx.input_versions = [t._version if isinstance(t, torch.Tensor) else None for t in inputs]


def recompute_grads(ctx, grad_outputs: tuple, positions: tuple[int, ...], offset: int = 0) -> tuple:
    """Differentiable gradients of ctx.reference(*inputs) for the inputs at `positions` that need one.

    grad_outputs: the incoming gradient of each output of the reference (None: no gradient). Called by a
    backward that runs with grad mode on (create_graph=True): the result carries its own graph, so a
    second backward (hvp, gradient penalty) differentiates the `torch` formula, never a constant.
    """
    out = [None] * len(ctx.needs_input_grad)
    inputs = ctx.op_inputs
    for k, (value, version) in enumerate(zip(inputs, ctx.input_versions)):
        if version is not None and value._version != version:
            raise RuntimeError(f"input {k} of {getattr(ctx.reference, '__name__', 'a fused loss')} was modified in "
                               "place after the forward pass; the second-order gradient (create_graph=True) "
                               "needs its original value: do not modify it in place before backward")
    wanted = [p for p in positions if ctx.needs_input_grad[offset + p]]
    if not wanted:
        return tuple(out)
    # Fresh aliases: the gradient must be the partial one of each input, not a total derivative through
    # another input computed from it (b = f(a)); they still carry the graph back to the originals.
    inputs = list(inputs)
    with torch.enable_grad():
        for p in wanted:
            inputs[p] = inputs[p].view_as(inputs[p])
        outputs = ctx.reference(*inputs)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    pairs = [(o, g) for o, g in zip(outputs, grad_outputs) if g is not None and o.requires_grad]
    if not pairs:
        return tuple(out)
    grads = torch.autograd.grad([o for o, _ in pairs], [inputs[p] for p in wanted],
                                [g.to(o.dtype) for o, g in pairs], create_graph=True, allow_unused=True)
    for p, grad in zip(wanted, grads):
        out[offset + p] = grad if grad is not None else torch.zeros_like(inputs[p])
    return tuple(out)


def save_kernel_grads(ctx, differentiable: tuple[int, ...], output, inputs: tuple = (), reference=None) -> None:
    """setup_context of a fused loss op `(loss, d loss / d inputs[p] for p in differentiable)`: the
    gradients written in forward are saved (and are not themselves differentiable); the inputs are
    kept by reference for a differentiable backward (keep_inputs)."""
    ctx.differentiable = differentiable
    ctx.mark_non_differentiable(*output[1:])
    ctx.save_for_backward(*output[1:])
    ctx.set_materialize_grads(False)
    keep_inputs(ctx, inputs, reference)


def scaled_kernel_grads(ctx, grad_loss, offset: int = 0) -> tuple:
    """backward of a fused loss op: the saved gradients times the incoming one, for every input that
    needs one; `offset` is the number of leading non-op arguments of the autograd.Function. With
    create_graph=True (grad mode on in backward), the differentiable recomputation instead."""
    out = [None] * len(ctx.needs_input_grad)
    if grad_loss is None:
        return tuple(out)
    if torch.is_grad_enabled():
        return recompute_grads(ctx, (grad_loss,), ctx.differentiable, offset)
    for position, grad in zip(ctx.differentiable, ctx.saved_tensors):
        if ctx.needs_input_grad[offset + position]:
            out[offset + position] = scale_saved_grad(grad, grad_loss)
    return tuple(out)


_REFERENCES: dict[str, Callable] = {}


def register_fused_loss(qualname: str, fake, differentiable: tuple[int, ...], reference: Callable) -> None:
    """Fake kernel and autograd formula of a fused loss custom op (what torch.compile traces).

    reference(*op_inputs) -> the op's loss through differentiable PyTorch (its `torch` backend): what a
    backward with create_graph=True differentiates.
    """
    _REFERENCES[qualname] = reference
    torch.library.register_fake(qualname)(fake)
    torch.library.register_autograd(
        qualname, lambda ctx, grad_loss, *_grads_of_grads: scaled_kernel_grads(ctx, grad_loss),
        setup_context=lambda ctx, inputs, output: save_kernel_grads(ctx, differentiable, output, inputs,
                                                                    reference))


_NATIVE_AUTOGRAD: dict = {}  # op packet -> its default overload, for ops whose autograd is in C++


def native_autograd_overload(op):
    """The default overload of `op` (a custom op's packet) when its autograd is C++, else None."""
    return _NATIVE_AUTOGRAD.get(op)


def register_native_fused_loss(qualname: str, fake, reference: Callable) -> None:
    """Fake kernel of a fused loss op whose autograd kernel is C++ (csrc/autograd.cpp), and the kernel of
    its `<qualname>_grad_reference(grad_loss, *op_inputs)` op: grad_loss times d reference / d logits,
    computed with a graph (what the C++ backward returns under create_graph=True)."""
    _REFERENCES[qualname] = reference
    torch.library.register_fake(qualname)(fake)
    torch.library.impl(qualname + "_grad_reference", "CompositeImplicitAutograd")(_grad_of(reference))
    namespace, name = qualname.split("::")
    packet = getattr(getattr(torch.ops, namespace), name)
    _NATIVE_AUTOGRAD[packet] = packet.default


def _grad_of(reference: Callable) -> Callable:
    def grad_reference(grad_loss, logits, *rest):
        alias = logits.view_as(logits)  # the partial derivative, even when another input is computed from logits
        with torch.enable_grad():
            loss = reference(alias, *rest)
        if not loss.requires_grad:
            return torch.zeros_like(logits)
        (grad,) = torch.autograd.grad(loss, alias, grad_loss.to(loss.dtype), create_graph=True, allow_unused=True)
        return torch.zeros_like(logits) if grad is None else grad
    return grad_reference


def call_fused_loss(op, inputs: tuple, differentiable: tuple[int, ...]) -> torch.Tensor:
    """Run a fused loss op `op(*inputs) -> (loss, d loss / d inputs[p] for p in differentiable)`.

    Under torch.compile the custom op itself is called (its registered fake kernel and autograd formula
    are what the compiler traces). In eager mode the op runs below the autograd dispatch key inside a
    plain autograd.Function with the same formula: the result is identical, but the per-call Python
    overhead of torch.library's generic autograd wrapper is gone (CE fwd+bwd at N=32, C=10: 86 -> 73 us).
    An op with C++ autograd (register_native_fused_loss) is called directly: one dispatcher entry; under a
    torch.func transform (which C++ autograd functions do not support) it takes the Python path below.
    """
    native = _NATIVE_AUTOGRAD.get(op)
    if native is not None and _functorch_level() is None:
        return native(*inputs)[0]
    if torch.compiler.is_compiling():
        return op(*inputs)[0]
    if not torch.is_grad_enabled() or not any(inputs[p].requires_grad for p in differentiable):
        with torch._C._AutoDispatchBelowAutograd():
            return op(*inputs)[0]
    return _FusedLossFunction.apply(op, differentiable, *inputs)[0]


_functorch_level = torch._C._functorch.peek_interpreter_stack


class _FusedLossFunction(torch.autograd.Function):
    """Eager autograd of a fused loss op, with the registered formula (setup_context is separate so that
    torch.func transforms such as torch.func.grad work too)."""

    @staticmethod
    def forward(op, differentiable, *inputs):
        with torch._C._AutoDispatchBelowAutograd():
            return tuple(op(*inputs))

    @staticmethod
    def setup_context(ctx, inputs, output):
        save_kernel_grads(ctx, inputs[1], output, inputs[2:], _REFERENCES[inputs[0]._qualified_op_name])

    @staticmethod
    def backward(ctx, grad_loss, *_grads_of_grads):
        return scaled_kernel_grads(ctx, grad_loss, offset=2)
