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
