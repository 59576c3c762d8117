"""The gathered contrastive loss behind `cross_modal_contrastive(..., gather=True)` (docs/ops/contrastive.md).

Rank r holds a_r [n_r, D], b_r [m_r, D] (and labels). It scores its local anchors against the other
modality gathered from all ranks: rows of a_r against all of b (image -> text) and, when symmetric,
rows of b_r against all of a (text -> image); labels are gathered too, and the mean's denominators
(the summed anchor weights) are computed over the global batch from the gathered labels. Without
labels (CLIP) the positive of a_r[i] is b_r[i] (n_r == m_r on every rank). So the per-rank partial
losses add up to the single-process loss L on the concatenated batch. What each rank gets back
(reduction "mean" or "sum"):
  * the value: L itself (the partials all-reduced), identical on every rank;
  * the gradient: world_size x d(partial_r): the local inputs of rank r receive world_size times
    the single-process gradient of their rows, so that data-parallel training, which *averages*
    gradients over ranks (DDP, FSDP), ends up with exactly the single-process gradient of L.
reduction="none" returns the local anchors' terms (rows of a_r, then rows of b_r when symmetric),
whose gradients are the exact gradients of the sum of the ranks' outputs (no world_size factor).
The statistics (anchors without a positive) are global counts."""
from __future__ import annotations

import torch.distributed as dist

from pycmlt.distributed import all_gather_no_grad, all_gather_with_grad, gathered_sizes, require_initialized
from pycmlt.ops.contrastive_anchors import anchor_losses, anchor_weights, positive_counts, reduce_parts


def gathered_contrastive(a, b, la, lb, logit_scale, *, normalize, symmetric, class_weight, code, stats_fn, group=None):
    """The distributed form of pycmlt.ops.cross_modal_contrastive: (loss, rows_without_positive,
    cols_without_positive). stats_fn computes (row_lse, row_pos, col_lse, col_pos) as
    pycmlt::contrastive_stats does, for the backend that was chosen."""
    require_initialized()
    world, me = dist.get_world_size(group), dist.get_rank(group)
    sizes = gathered_sizes([a.shape[0], b.shape[0]], a.device, group)
    sizes_a, sizes_b = [s[0] for s in sizes], [s[1] for s in sizes]
    if la is None and sizes_a != sizes_b:
        raise ValueError(f"without labels (CLIP) the positive of a[i] is b[i]: every rank needs as many rows of a as "
                         f"of b, got {sizes_a} rows of a and {sizes_b} rows of b per rank")
    off_a, off_b = sum(sizes_a[:me]), sum(sizes_b[:me])
    n_all, m_all = sum(sizes_a), sum(sizes_b)
    b_all = all_gather_with_grad(b, group, sizes_b)
    a_all = all_gather_with_grad(a, group, sizes_a) if symmetric else None
    if la is not None:
        la_all = all_gather_no_grad(la, group, sizes_a)
        lb_all = all_gather_no_grad(lb, group, sizes_b)
        row_cnt_all, col_cnt_all = positive_counts(la_all, lb_all, n_all, m_all, a.device)
    else:
        la_all = lb_all = None
        row_cnt_all, col_cnt_all = positive_counts(None, None, n_all, m_all, a.device)
    # Image -> text: local rows of a against all of b (CLIP: the positive of local row i is column off_a + i).
    row_lse, row_pos, _, _ = stats_fn(a, b_all, logit_scale, la, lb_all, off_a, normalize, False)
    w_row_all = anchor_weights(row_cnt_all, class_weight, la_all)
    row_cnt = row_cnt_all[off_a:off_a + a.shape[0]]
    parts = [(anchor_losses(row_lse, row_pos, row_cnt), w_row_all[off_a:off_a + a.shape[0]])]
    dens = [w_row_all.sum()]
    if symmetric:
        # Text -> image: local rows of b against all of a (the columns of S owned by this rank).
        col_lse, col_pos, _, _ = stats_fn(b, a_all, logit_scale, lb, la_all, off_b, normalize, False)
        w_col_all = anchor_weights(col_cnt_all, class_weight, lb_all)
        col_cnt = col_cnt_all[off_b:off_b + b.shape[0]]
        parts.append((anchor_losses(col_lse, col_pos, col_cnt), w_col_all[off_b:off_b + b.shape[0]]))
        dens.append(w_col_all.sum())
    partial = reduce_parts(parts, code, dens)
    no_row, no_col = (row_cnt_all == 0).sum(), (col_cnt_all == 0).sum()
    if code == 0:
        return partial, no_row, no_col
    total = partial.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM, group=group)
    # Value: the global loss; gradient: world_size x d(partial) (data-parallel averaging, see the docstring).
    loss = partial * world + (total - partial.detach() * world)
    return loss, no_row, no_col
