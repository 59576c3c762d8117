"""Generic collectives for the cross-modal losses under torch.distributed.

all_gather_with_grad(x) concatenates the rows of x from every rank (ranks may hold different numbers
of rows). Its backward sums, over ranks, the gradient each rank's loss sends to every slice and
returns to each rank the slice of its own rows: the exact gradient of sum_r loss_r.
all_gather_no_grad gathers rows without gradient (labels, counts); gathered_sizes exchanges a few
integers per rank. The gathered contrastive loss built on them is pycmlt.ops.gathered_contrastive."""
from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["all_gather_with_grad", "all_gather_no_grad", "gathered_sizes", "require_initialized", "world_size", "rank"]


def require_initialized() -> None:
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("gather=True / all_gather_with_grad need an initialised torch.distributed process group "
                           "(torch.distributed.init_process_group)")


def world_size(group=None) -> int:
    require_initialized()
    return dist.get_world_size(group)


def rank(group=None) -> int:
    require_initialized()
    return dist.get_rank(group)


def gathered_sizes(counts: list[int], device: torch.device, group=None) -> list[list[int]]:
    """sizes[r] = counts of rank r (one all_gather of a few integers, one host synchronisation)."""
    require_initialized()
    local = torch.tensor(counts, dtype=torch.int64, device=device)
    out = [torch.empty_like(local) for _ in range(dist.get_world_size(group))]
    dist.all_gather(out, local, group=group)
    return [[int(v) for v in t.tolist()] for t in out]


def _gather_rows(x: torch.Tensor, sizes: list[int], group) -> torch.Tensor:
    """Rows of x from every rank, concatenated (padded to the largest size for all_gather)."""
    longest = max(sizes)
    x = x.contiguous()
    if x.shape[0] < longest:
        x = torch.cat([x, x.new_zeros((longest - x.shape[0],) + tuple(x.shape[1:]))])
    out = [torch.empty_like(x) for _ in sizes]
    dist.all_gather(out, x, group=group)
    return torch.cat([t[:s] for t, s in zip(out, sizes)])


class _AllGatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, sizes, group):
        ctx.sizes, ctx.group = sizes, group
        ctx.rank = dist.get_rank(group)
        return _gather_rows(x, list(sizes), group)

    @staticmethod
    def backward(ctx, grad):
        # d(sum_k L_k)/dx_r = sum_k (gradient rank k sends to the slice of rank r): an all-reduce of the
        # whole gradient, then this rank's slice (gloo has no reduce_scatter; the volume is O(N D)).
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start:start + ctx.sizes[ctx.rank]], None, None


def all_gather_with_grad(x: torch.Tensor, group=None, sizes: list[int] | None = None) -> torch.Tensor:
    """Rows of x from all ranks, concatenated in rank order, differentiable (see the module docstring).

    sizes (the number of rows of every rank) saves the size exchange when known.
    """
    require_initialized()
    if sizes is None:
        sizes = [s[0] for s in gathered_sizes([x.shape[0]], x.device, group)]
    return _AllGatherWithGrad.apply(x, tuple(sizes), group)


def all_gather_no_grad(x: torch.Tensor, group=None, sizes: list[int] | None = None) -> torch.Tensor:
    """Rows of x from all ranks (no gradient): labels, counts."""
    require_initialized()
    if sizes is None:
        sizes = [s[0] for s in gathered_sizes([x.shape[0]], x.device, group)]
    with torch.no_grad():
        return _gather_rows(x.detach(), sizes, group)
