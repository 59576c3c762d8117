"""Shared by the loss tests: a loss and its gradient with respect to one input, under a fixed random
incoming gradient (so that reduction='none' checks every element's gradient, not just their sum)."""
import torch


def loss_and_grad(fn, x, grad_seed=3):
    """(fn(x) detached, d fn / d x) with a seeded uniform upstream gradient (1.7 for a scalar loss)."""
    x = x.detach().clone().requires_grad_(True)
    loss = fn(x)
    g = torch.Generator().manual_seed(grad_seed)
    upstream = torch.rand(loss.shape, generator=g).to(loss) if loss.dim() else torch.tensor(1.7).to(loss)
    (grad,) = torch.autograd.grad(loss, x, upstream)
    return loss.detach(), grad
