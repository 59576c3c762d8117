"""pycmlt.distributed with 2 CPU processes (gloo): the gathered contrastive loss and its gradients equal
the single-process result on the concatenated batch, for every backend; all_gather_with_grad alone."""
import datetime

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import pycmlt
from pycmlt.ops import cross_modal_contrastive as cmc

WORLD = 2
TOL = dict(rtol=2e-5, atol=2e-6)


def _split(n_per_rank, rank):
    start = sum(n_per_rank[:rank])
    return slice(start, start + n_per_rank[rank])


def _data(n, m, d, classes, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g), torch.randn(m, d, generator=g),
            torch.randint(0, classes, (n,), generator=g), torch.randint(0, classes + 1, (m,), generator=g))


# name -> (rows of a per rank, rows of b per rank, options); labels=True: supervised
CONFIGS = {
    "clip": ([5, 5], [5, 5], dict()),
    "clip-one-direction-sum": ([4, 4], [4, 4], dict(symmetric=False, reduction="sum")),
    "supervised-uneven-class-balanced": ([3, 7], [6, 2], dict(labels=True, class_counts=[40, 9, 3, 1], beta=0.9)),
    "supervised-one-direction": ([6, 2], [3, 5], dict(labels=True, symmetric=False)),
    "supervised-none": ([3, 4], [5, 3], dict(labels=True, reduction="none")),
}


def _check_contrastive(rank, backend, name):
    sa, sb, opts = CONFIGS[name]
    opts = dict(opts)
    a, b, la, lb = _data(sum(sa), sum(sb), 6, 3, seed=len(name))
    if opts.pop("labels", False):
        opts.update(labels=la, b_labels=lb)
    reduction = opts.get("reduction", "mean")

    # single process, the whole batch (the reference backend)
    a_full, b_full = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
    scale_full = torch.tensor(1.1, requires_grad=True)
    ref = cmc(a_full, b_full, logit_scale=scale_full, backend="torch", **opts)
    upstream = torch.linspace(0.5, 1.5, ref.numel()).reshape(ref.shape)
    ref.backward(upstream)

    # this rank's slice, gathered
    ra, rb = _split(sa, rank), _split(sb, rank)
    local = dict(opts)
    if "labels" in opts:
        local.update(labels=la[ra], b_labels=lb[rb])
    a_loc, b_loc = a[ra].clone().requires_grad_(True), b[rb].clone().requires_grad_(True)
    scale_loc = torch.tensor(1.1, requires_grad=True)
    out = cmc(a_loc, b_loc, logit_scale=scale_loc, backend=backend, gather=True, return_stats=True, **local)
    if reduction == "none":
        # local anchors: rows of a_r then rows of b_r; gradients are exact for the sum over ranks
        n_total = sum(sa)
        rows = torch.arange(ra.start, ra.stop)
        cols = n_total + torch.arange(rb.start, rb.stop) if opts.get("symmetric", True) else torch.arange(0)
        idx = torch.cat([rows, cols])
        torch.testing.assert_close(out.loss, ref.detach()[idx], **TOL)
        out.loss.backward(upstream[idx])
        factor = 1.0
    else:
        torch.testing.assert_close(out.loss, ref.detach(), **TOL)
        out.loss.backward(upstream)
        factor = float(WORLD)  # data-parallel convention: local gradients are world_size x the single-process ones
    torch.testing.assert_close(a_loc.grad / factor, a_full.grad[ra], **TOL)
    torch.testing.assert_close(b_loc.grad / factor, b_full.grad[rb], **TOL)
    # the replicated logit_scale: mean/sum: its gradients averaged over ranks (what DDP does) = the
    # single-process one; none: summed over ranks
    g_scale = scale_loc.grad.clone()
    dist.all_reduce(g_scale)
    torch.testing.assert_close(g_scale / factor, scale_full.grad, **TOL)
    # statistics are global
    assert int(out.rows_without_positive) == int(cmc(a, b, backend="torch", return_stats=True,
                                                     **opts).rows_without_positive)


def _check_all_gather(rank):
    sizes = [2, 3]
    x = (torch.arange(sizes[rank] * 2, dtype=torch.float32).reshape(-1, 2) + 10 * rank).requires_grad_(True)
    y = pycmlt.distributed.all_gather_with_grad(x)
    assert y.shape == (5, 2)
    torch.testing.assert_close(y[sizes[0]:] if rank == 1 else y[:sizes[0]], x.detach())
    weights = [torch.full((5, 2), 1.0), torch.arange(10.0).reshape(5, 2)]
    (y * weights[rank]).sum().backward()
    expected = (weights[0] + weights[1])[_split(sizes, rank)]  # d(sum over ranks of the losses)/dx_rank
    torch.testing.assert_close(x.grad, expected)
    labels = pycmlt.distributed.all_gather_no_grad(torch.tensor([rank] * sizes[rank]))
    assert labels.tolist() == [0, 0, 1, 1, 1]


def _check_data_parallel_training_step(rank, backend):
    """A linear image and text encoder replicated on both ranks, the module with gather=True and a
    learnable temperature: gradients averaged over ranks (DDP) equal the single-process ones."""
    torch.manual_seed(0)
    enc_a, enc_b = torch.nn.Linear(6, 4), torch.nn.Linear(5, 4)
    crit = pycmlt.nn.CrossModalContrastiveLoss([30, 10, 2], beta=0.9, backend=backend, gather=True)
    single = pycmlt.nn.CrossModalContrastiveLoss([30, 10, 2], beta=0.9, backend="torch")
    g = torch.Generator().manual_seed(3)
    x, t = torch.randn(8, 6, generator=g), torch.randn(8, 5, generator=g)
    lab = torch.randint(0, 3, (8,), generator=g)
    params = list(enc_a.parameters()) + list(enc_b.parameters()) + [crit.logit_scale]
    loss_single = single(enc_a(x), enc_b(t), lab)
    ref = torch.autograd.grad(loss_single, list(enc_a.parameters()) + list(enc_b.parameters()) + [single.logit_scale])
    part = _split([3, 5], rank)
    loss = crit(enc_a(x[part]), enc_b(t[part]), lab[part])
    torch.testing.assert_close(loss, loss_single.detach(), **TOL)
    grads = torch.autograd.grad(loss, params)
    for got, want in zip(grads, ref):
        got = got.clone()
        dist.all_reduce(got)
        torch.testing.assert_close(got / WORLD, want, **TOL)


def _worker(rank, world, init_file, backends):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=120))
    try:
        _check_all_gather(rank)
        for backend in backends:
            for name in CONFIGS:
                _check_contrastive(rank, backend, name)
        _check_data_parallel_training_step(rank, backends[0])
        with pytest.raises(ValueError, match="as many rows of a as of b"):
            cmc(torch.randn(3 + rank, 4), torch.randn(3, 4), gather=True)
    finally:
        dist.destroy_process_group()


def test_gathered_loss_equals_single_process(tmp_path):
    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    backends = pycmlt.ops.available_backends("cpu")  # cpu (C++), triton (interpreter, when enabled), torch
    mp.spawn(_worker, args=(WORLD, str(tmp_path / "store"), backends), nprocs=WORLD, join=True)
