"""Helpers that attach fake (meta) kernels and autograd formulas to pycmlt custom ops."""
from __future__ import annotations

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


def save_kernel_grads(ctx, differentiable: tuple[int, ...], output) -> None:
    """setup_context of a fused loss op `(loss, d loss / d inputs[p] for p in differentiable)`: the
    gradients written in forward are saved (and are not themselves differentiable)."""
    ctx.differentiable = differentiable
    ctx.mark_non_differentiable(*output[1:])
    ctx.save_for_backward(*output[1:])
    ctx.set_materialize_grads(False)


def scaled_kernel_grads(ctx, grad_loss, offset: int = 0) -> tuple:
    """backward of a fused loss op: the saved gradients times the incoming one, for every input that
    needs one; `offset` is the number of leading non-op arguments of the autograd.Function."""
    out = [None] * len(ctx.needs_input_grad)
    if grad_loss is None:
        return tuple(out)
    for position, grad in zip(ctx.differentiable, ctx.saved_tensors):
        if ctx.needs_input_grad[offset + position]:
            out[offset + position] = scale_saved_grad(grad, grad_loss)
    return tuple(out)


def register_fused_loss(qualname: str, fake, differentiable: tuple[int, ...]) -> None:
    """Fake kernel and autograd formula of a fused loss custom op (what torch.compile traces)."""
    torch.library.register_fake(qualname)(fake)
    torch.library.register_autograd(
        qualname, lambda ctx, grad_loss, *_grads_of_grads: scaled_kernel_grads(ctx, grad_loss),
        setup_context=lambda ctx, inputs, output: save_kernel_grads(ctx, differentiable, output))


def call_fused_loss(op, inputs: tuple, differentiable: tuple[int, ...]) -> torch.Tensor:
    """Run a fused loss op `op(*inputs) -> (loss, d loss / d inputs[p] for p in differentiable)`.

    Under torch.compile the custom op itself is called (its registered fake kernel and autograd formula
    are what the compiler traces). In eager mode the op runs below the autograd dispatch key inside a
    plain autograd.Function with the same formula: the result is identical, but the per-call Python
    overhead of torch.library's generic autograd wrapper is gone (CE fwd+bwd at N=32, C=10: 86 -> 73 us).
    """
    if torch.compiler.is_compiling():
        return op(*inputs)[0]
    if not torch.is_grad_enabled() or not any(inputs[p].requires_grad for p in differentiable):
        with torch._C._AutoDispatchBelowAutograd():
            return op(*inputs)[0]
    return _FusedLossFunction.apply(op, differentiable, *inputs)[0]


class _FusedLossFunction(torch.autograd.Function):
    """Eager autograd of a fused loss op, with the registered formula (setup_context is separate so that
    torch.func transforms such as torch.func.grad work too)."""

    @staticmethod
    def forward(op, differentiable, *inputs):
        with torch._C._AutoDispatchBelowAutograd():
            return tuple(op(*inputs))

    @staticmethod
    def setup_context(ctx, inputs, output):
        save_kernel_grads(ctx, inputs[1], output)

    @staticmethod
    def backward(ctx, grad_loss, *_grads_of_grads):
        return scaled_kernel_grads(ctx, grad_loss, offset=2)
