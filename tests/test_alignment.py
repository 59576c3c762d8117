"""alignment_loss: every backend against the torch reference (F.normalize + autograd), forward and
both gradients; shapes, zero vectors, low precision, errors, custom-op checks, torch.compile, module."""
import pytest
import torch
import torch.nn.functional as F
from conftest import all_backend_params, fast_backend_params
from tolerances import assert_no_worse_than_torch

import pycmlt
from pycmlt.ops import alignment_loss, alignment_reference

REDUCTIONS = ["mean", "sum", "none"]
KINDS = ["cosine", "mse"]


def pair(shape, device="cpu", dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(shape, generator=g) * 1.5
    b = a * 0.6 + torch.randn(shape, generator=g)  # correlated, as aligned features are
    return a.to(device=device, dtype=dtype), b.to(device=device, dtype=dtype)


def loss_and_grads(fn, a, b, detach_b=False):
    a = a.detach().clone().requires_grad_(True)
    b = b.detach().clone().requires_grad_(not detach_b)
    loss = fn(a, b)
    g = torch.Generator().manual_seed(5)
    upstream = (torch.rand(loss.shape, generator=g) + 0.5).to(loss) if loss.dim() else torch.tensor(0.7).to(loss)
    leaves = (a,) if detach_b else (a, b)
    return (loss.detach(),) + torch.autograd.grad(loss, leaves, upstream)


def close(ours, ref, rtol=1e-5, atol=1e-6):
    for x, y in zip(ours, ref):
        scale = max(1.0, y.abs().max().item()) if y.numel() else 1.0
        torch.testing.assert_close(x, y, rtol=rtol, atol=atol * scale)


@pytest.mark.parametrize("device,backend", fast_backend_params())
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("normalize", [True, False], ids=["normalized", "raw"])
def test_matches_reference_fp32(device, backend, reduction, kind, normalize):
    a, b = pair((23, 37), device)
    kw = dict(kind=kind, normalize=normalize, reduction=reduction)
    ours = loss_and_grads(lambda x, y: alignment_loss(x, y, backend=backend, **kw), a, b)
    ref = loss_and_grads(lambda x, y: alignment_loss(x, y, backend="torch", **kw), a, b)
    close(ours, ref)


def test_reference_closed_forms():
    a, b = pair((9, 5))
    torch.testing.assert_close(alignment_loss(a, b, backend="torch"), (1 - F.cosine_similarity(a, b)).mean())
    torch.testing.assert_close(alignment_loss(a, b, kind="mse", normalize=False, reduction="sum", backend="torch"),
                               F.mse_loss(a, b, reduction="sum"))
    na, nb = F.normalize(a), F.normalize(b)
    # on unit vectors the squared distance is twice the cosine loss
    torch.testing.assert_close(alignment_loss(a, b, kind="mse", reduction="none", backend="torch"),
                               2 * alignment_loss(a, b, reduction="none", backend="torch"))
    torch.testing.assert_close(alignment_loss(na, nb, normalize=False, backend="torch"), (1 - (na * nb).sum(1)).mean())


@pytest.mark.parametrize("device,backend", all_backend_params())
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kind", KINDS)
def test_low_precision_no_worse_than_pytorch(device, backend, dtype, kind):
    a, b = pair((31, 70), device, dtype)
    for reduction in REDUCTIONS:
        got = loss_and_grads(lambda x, y: alignment_loss(x, y, kind=kind, reduction=reduction, backend=backend), a, b)
        truth = loss_and_grads(lambda x, y: alignment_reference(x, y, kind=kind, reduction=reduction), a.float(), b.float())
        lowp = loss_and_grads(lambda x, y: alignment_reference(x, y, kind=kind, reduction=reduction, upcast=False), a, b)
        assert all(t.dtype == dtype for t in got)
        for k, what in enumerate(("loss", "grad a", "grad b")):
            assert_no_worse_than_torch(got[k], lowp[k].to(dtype), truth[k], f"{reduction} {what}")


@pytest.mark.parametrize("device,backend", fast_backend_params())
@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (5, 1), (4, 1000), (2, 3, 6), (3, 2, 4, 5), (7,)], ids=str)
def test_shapes(device, backend, shape):
    a, b = pair(shape, device)
    for kind in KINDS:
        for reduction in ("mean", "none"):
            kw = dict(kind=kind, reduction=reduction)
            ours = loss_and_grads(lambda x, y: alignment_loss(x, y, backend=backend, **kw), a, b)
            ref = loss_and_grads(lambda x, y: alignment_reference(x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1]),
                                                                  **kw).reshape(shape[:-1] if reduction == "none" else ()),
                                 a, b)
            assert ours[0].shape == ref[0].shape
            close(ours, ref, atol=1e-5 if shape[-1] == 1 else 1e-6)


@pytest.mark.parametrize("device,backend", all_backend_params())
def test_zero_vectors_and_identical_rows(device, backend):
    a, b = pair((6, 9), device)
    a[1] = 0
    b[2] = 0
    b[3] = a[3] * 2.5  # same direction: cosine loss 0, mse (normalised) 0
    for kind in KINDS:
        ours = loss_and_grads(lambda x, y: alignment_loss(x, y, kind=kind, reduction="none", backend=backend), a, b)
        assert all(torch.isfinite(t).all() for t in ours)
        ref = loss_and_grads(lambda x, y: alignment_reference(x, y, kind=kind, reduction="none"), a, b)
        close(ours, ref, rtol=1e-4, atol=1e-5)
        assert abs(ours[0][3].item()) < 1e-5
        assert ours[0][1].item() == pytest.approx(1.0, abs=1e-6)  # a zero vector against a unit vector: 1 either way


@pytest.mark.parametrize("device,backend", fast_backend_params())
def test_detached_target_and_no_grad(device, backend):
    a, b = pair((8, 16), device)
    ours = loss_and_grads(lambda x, y: alignment_loss(x, y, backend=backend), a, b, detach_b=True)
    ref = loss_and_grads(lambda x, y: alignment_loss(x, y, backend="torch"), a, b, detach_b=True)
    close(ours, ref)
    crit = pycmlt.nn.AlignmentLoss("mse", detach_target=True, backend=backend)
    x = a.clone().requires_grad_(True)
    y = b.clone().requires_grad_(True)
    crit(x, y).backward()
    assert y.grad is None and x.grad is not None
    with torch.no_grad():
        torch.testing.assert_close(alignment_loss(a, b, backend=backend), alignment_loss(a, b, backend="torch"))


@pytest.mark.parametrize("device,backend", all_backend_params())
def test_empty_batch(device, backend):
    a = torch.randn(0, 4, device=device, requires_grad=True)
    b = torch.randn(0, 4, device=device)
    assert alignment_loss(a, b, reduction="none", backend=backend).shape == (0,)
    assert alignment_loss(a, b, reduction="sum", backend=backend).item() == 0.0
    loss = alignment_loss(a, b, reduction="mean", backend=backend)
    assert torch.isnan(loss)  # the mean of nothing, as torch.mean
    loss.backward()
    assert a.grad.shape == (0, 4)


def test_bad_input_errors():
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    with pytest.raises(ValueError, match="same shape"):
        alignment_loss(a, torch.randn(4, 5))
    with pytest.raises(ValueError, match="same shape"):
        alignment_loss(a, torch.randn(5, 3))
    with pytest.raises(TypeError, match="a must be a floating-point"):
        alignment_loss(a.long(), b)
    with pytest.raises(ValueError, match="b is on meta"):
        alignment_loss(a, b.to("meta"))
    with pytest.raises(ValueError, match="kind must be one of"):
        alignment_loss(a, b, kind="l1")
    with pytest.raises(ValueError, match="reduction must be one of"):
        alignment_loss(a, b, reduction="avg")
    with pytest.raises(ValueError, match="at least 1-D"):
        alignment_loss(torch.tensor(1.0), torch.tensor(2.0))
    with pytest.raises(ValueError, match="kind must be one of"):
        pycmlt.nn.AlignmentLoss("dot")


def _op(backend):
    return (torch.ops.pycmlt.alignment_triton if backend == "triton" else torch.ops.pycmlt.alignment).default


@pytest.mark.parametrize("device,backend", fast_backend_params())
def test_opcheck(device, backend):
    a, b = pair((5, 6), device)
    a.requires_grad_(True)
    b.requires_grad_(True)
    for kind in (0, 1):
        for red in (0, 1, 2):
            torch.library.opcheck(_op(backend), (a, b, kind, True, red, True, True))
    torch.library.opcheck(_op(backend), (a, b.detach(), 1, False, 1, True, False))
    torch.library.opcheck(_op(backend), (a.detach().bfloat16().requires_grad_(), b.detach().bfloat16(), 0, True, 0,
                                         True, False))


@pytest.mark.parametrize("device,backend", all_backend_params())
def test_torch_compile_fullgraph(device, backend):
    torch._dynamo.reset()
    crit = pycmlt.nn.AlignmentLoss("cosine", backend=backend)
    compiled = torch.compile(crit, fullgraph=True)
    a, b = pair((6, 10), device)
    eager = loss_and_grads(crit, a, b)
    got = loss_and_grads(compiled, a, b)
    close(got, eager)
