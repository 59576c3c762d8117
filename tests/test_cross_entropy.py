"""class_balanced_cross_entropy: every backend against the torch reference and F.cross_entropy."""
import pytest
import torch
import torch.nn.functional as F
from conftest import all_backend_params, fast_backend_params
from grad_helpers import loss_and_grad
from tolerances import FP32, assert_no_worse_than_torch

import pycmlt
from pycmlt.ops import class_balanced_cross_entropy as cbce
from pycmlt.ops import cross_entropy_reference

REDUCTIONS = ["mean", "sum", "none"]


def make_inputs(n, c, device, dtype=torch.float32, ignore=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(n, c, generator=g) * 3).to(device=device, dtype=dtype)
    t = torch.randint(0, c, (n,), generator=g)
    if ignore and n > 2:
        t[1] = -100
    return x, t.to(device)


def counts_for(c, seed=0):
    g = torch.Generator().manual_seed(seed + 1)
    return (1000 * torch.rand(c, generator=g).pow(3) + 1).floor()


# ---------------------------------------------------------------------------- drop-in for F.cross_entropy

def as_class_weight(kw):
    """F.cross_entropy's keywords as pycmlt's: its `weight` is our `class_weight`."""
    kw = dict(kw)
    if "weight" in kw:
        kw["class_weight"] = kw.pop("weight")
    return kw


DROP_IN_CASES = [
    dict(),
    dict(weight=True),
    dict(label_smoothing=0.1),
    dict(weight=True, label_smoothing=0.25),
    dict(ignore_index=3),
]


@pytest.mark.parametrize("device,backend", all_backend_params())
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", DROP_IN_CASES, ids=lambda c: "-".join(c) or "plain")
def test_drop_in_for_f_cross_entropy(device, backend, reduction, case):
    x, t = make_inputs(13, 11, device)
    kw = dict(case)
    t[1] = kw.get("ignore_index", -100)
    if kw.pop("weight", False):
        kw["weight"] = torch.rand(11, device=device) + 0.1
    ours = loss_and_grad(lambda z: cbce(z, t, reduction=reduction, backend=backend, **as_class_weight(kw)), x)
    ref = loss_and_grad(lambda z: F.cross_entropy(z, t, reduction=reduction, **kw), x)
    torch.testing.assert_close(ours[0], ref[0], **FP32)
    torch.testing.assert_close(ours[1], ref[1], **FP32)


@pytest.mark.parametrize("device,backend", all_backend_params())
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_one_dim_and_k_dim_inputs(device, backend, reduction):
    x1 = torch.randn(7, device=device)
    t1 = torch.tensor(4, device=device)
    ours = loss_and_grad(lambda z: cbce(z, t1, reduction=reduction, backend=backend), x1)
    ref = loss_and_grad(lambda z: F.cross_entropy(z, t1, reduction=reduction), x1)
    assert ours[0].shape == ref[0].shape
    torch.testing.assert_close(ours, ref, **FP32)
    xk = torch.randn(3, 5, 4, 2, device=device)
    tk = torch.randint(0, 5, (3, 4, 2), device=device)
    tk[0, 0, 0] = -100
    ours = loss_and_grad(lambda z: cbce(z, tk, reduction=reduction, backend=backend), xk)
    ref = loss_and_grad(lambda z: F.cross_entropy(z, tk, reduction=reduction), xk)
    assert ours[0].shape == ref[0].shape
    torch.testing.assert_close(ours, ref, **FP32)


# ---------------------------------------------------------------------------- long-tail options vs reference

OPTION_CASES = {
    "cb": dict(beta=0.999),
    "cb-smooth": dict(beta=0.99, label_smoothing=0.1),
    "focal": dict(focal_gamma=2.0),
    "cb-focal": dict(beta=0.9999, focal_gamma=0.5),
    "ldam": dict(ldam_max_margin=0.5, ldam_scale=30.0),
    "ldam-cb": dict(ldam_max_margin=0.5, ldam_scale=10.0, beta=0.9999),
    "balanced-softmax": dict(logit_adjust_tau=1.0),
    "logit-adjust-smooth": dict(logit_adjust_tau=1.5, label_smoothing=0.2),
    "everything-focal": dict(beta=0.99, focal_gamma=1.0, ldam_max_margin=0.3, ldam_scale=5.0,
                             logit_adjust_tau=0.5),
}


def reference_for(x, t, counts, reduction, upcast=True, **kw):
    weight = pycmlt.class_balanced_weights(counts, kw["beta"]) if "beta" in kw else None
    margins = pycmlt.ldam_margins(counts, kw["ldam_max_margin"]) if "ldam_max_margin" in kw else None
    bias = pycmlt.ops.logit_adjustment(counts, kw["logit_adjust_tau"]) if "logit_adjust_tau" in kw else None
    dev = x.device
    return cross_entropy_reference(
        x, t, None if weight is None else weight.to(dev), None if margins is None else margins.to(dev),
        None if bias is None else bias.to(dev), scale=kw.get("ldam_scale", 1.0),
        focal_gamma=kw.get("focal_gamma", 0.0), label_smoothing=kw.get("label_smoothing", 0.0),
        reduction=reduction, upcast=upcast)


@pytest.mark.parametrize("device,backend", fast_backend_params())
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", list(OPTION_CASES))
def test_options_match_reference_fp32(device, backend, reduction, name):
    kw = OPTION_CASES[name]
    x, t = make_inputs(17, 23, device)
    counts = counts_for(23)
    ours = loss_and_grad(lambda z: cbce(z, t, class_counts=counts, reduction=reduction, backend=backend, **kw), x)
    ref = loss_and_grad(lambda z: cbce(z, t, class_counts=counts, reduction=reduction, backend="torch", **kw), x)
    torch.testing.assert_close(ours, ref, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("name", list(OPTION_CASES))
def test_torch_backend_is_the_readable_reference(name):
    kw = OPTION_CASES[name]
    x, t = make_inputs(9, 6, "cpu")
    counts = counts_for(6)
    ours = loss_and_grad(lambda z: cbce(z, t, class_counts=counts, backend="torch", **kw), x)
    ref = loss_and_grad(lambda z: reference_for(z, t, counts, "mean", **kw), x)
    torch.testing.assert_close(ours, ref, **FP32)


def test_focal_matches_closed_form():
    x, t = make_inputs(5, 4, "cpu", ignore=False)
    loss = cbce(x, t, focal_gamma=2.0, reduction="none")
    p = x.softmax(1).gather(1, t[:, None]).squeeze(1)
    torch.testing.assert_close(loss, (1 - p) ** 2 * -p.log(), **FP32)


def test_ldam_and_logit_adjust_closed_form():
    counts = torch.tensor([100.0, 10.0, 1.0])
    x, t = make_inputs(4, 3, "cpu", ignore=False)
    m = 0.5 * counts.pow(-0.25) / counts.pow(-0.25).max()
    z = (x - F.one_hot(t, 3) * m[t][:, None]) * 30
    torch.testing.assert_close(cbce(x, t, class_counts=counts, ldam_max_margin=0.5, ldam_scale=30),
                               F.cross_entropy(z, t), **FP32)
    z = x + torch.log(counts / counts.sum())
    torch.testing.assert_close(cbce(x, t, class_counts=counts, logit_adjust_tau=1.0), F.cross_entropy(z, t), **FP32)


# ---------------------------------------------------------------------------- low precision

@pytest.mark.parametrize("device,backend", all_backend_params())
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", ["plain", "cb-smooth", "cb-focal", "ldam", "balanced-softmax"])
def test_low_precision_no_worse_than_pytorch(device, backend, dtype, reduction, name):
    kw = OPTION_CASES.get(name, {})
    x, t = make_inputs(33, 97, device, dtype=dtype)
    counts = counts_for(97)
    ours = loss_and_grad(lambda z: cbce(z, t, class_counts=counts, reduction=reduction, backend=backend, **kw), x)
    truth = loss_and_grad(lambda z: reference_for(z, t, counts, reduction, **kw), x.float())
    lowp = loss_and_grad(lambda z: reference_for(z, t, counts, reduction, upcast=False, **kw), x)
    assert ours[0].dtype == dtype and ours[1].dtype == dtype
    assert_no_worse_than_torch(ours[0], lowp[0], truth[0], "loss")
    assert_no_worse_than_torch(ours[1], lowp[1], truth[1], "grad")


# ---------------------------------------------------------------------------- shapes and layouts

@pytest.mark.parametrize("device,backend", fast_backend_params())
@pytest.mark.parametrize("n,c", [(1, 1), (1, 7), (5, 1), (3, 1000), (4, 4097), (2, 70001)],
                         ids=lambda v: str(v))
def test_odd_shapes(device, backend, n, c):
    x, t = make_inputs(n, c, device)
    for kw in (dict(), dict(label_smoothing=0.1, weight=torch.rand(c, device=device) + 0.5)):
        ours = loss_and_grad(lambda z: cbce(z, t, backend=backend, **as_class_weight(kw)), x)
        ref = loss_and_grad(lambda z: F.cross_entropy(z, t, **kw), x)
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("device,backend", all_backend_params())
def test_non_contiguous_inputs(device, backend):
    base = torch.randn(24, 40, device=device)
    t = torch.randint(0, 12, (12,), device=device)
    for x in (base[::2, 5:17], base[:12, :12].t().contiguous().t(), base.t()[:12, :12]):
        assert not x.is_contiguous()
        ours = loss_and_grad(lambda z: cbce(z, t, backend=backend, label_smoothing=0.05), x)
        ref = loss_and_grad(lambda z: F.cross_entropy(z, t, label_smoothing=0.05), x)
        torch.testing.assert_close(ours, ref, **FP32)


@pytest.mark.parametrize("device,backend", all_backend_params())
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_empty_batch_like_pytorch(device, backend, reduction):
    x = torch.randn(0, 5, device=device, requires_grad=True)
    t = torch.zeros(0, dtype=torch.long, device=device)
    ours = cbce(x, t, reduction=reduction, backend=backend)
    ref = F.cross_entropy(x, t, reduction=reduction)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, equal_nan=True)
    ours.sum().backward()
    assert x.grad.shape == (0, 5)


@pytest.mark.parametrize("device,backend", all_backend_params())
def test_all_rows_ignored_like_pytorch(device, backend):
    x = torch.randn(4, 5, device=device, requires_grad=True)
    t = torch.full((4,), -100, device=device)
    loss = cbce(x, t, backend=backend)
    assert torch.isnan(loss)
    loss.backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


@pytest.mark.parametrize("device,backend", fast_backend_params())
def test_masked_classes_and_int32_targets(device, backend):
    x, t = make_inputs(6, 9, device, ignore=False)
    x[:, 0] = float("-inf")
    t = torch.where(t == 0, 1, t).to(torch.int32)
    ours = loss_and_grad(lambda z: cbce(z, t, backend=backend), x)
    ref = loss_and_grad(lambda z: F.cross_entropy(z, t.long()), x)
    torch.testing.assert_close(ours, ref, **FP32)


@pytest.mark.parametrize("device,backend", fast_backend_params())
def test_no_grad_path(device, backend):
    x, t = make_inputs(8, 10, device)
    with torch.no_grad():
        loss = cbce(x, t, backend=backend)
    torch.testing.assert_close(loss, F.cross_entropy(x, t), **FP32)


@pytest.mark.parametrize("device,backend", fast_backend_params())
def test_retain_graph_backward_twice(device, backend):
    x, t = make_inputs(8, 10, device)
    x.requires_grad_(True)
    loss = cbce(x, t, backend=backend)
    (g1,) = torch.autograd.grad(loss, x, retain_graph=True)
    (g2,) = torch.autograd.grad(loss * 1.0, x, torch.tensor(2.0, device=device))
    torch.testing.assert_close(2 * g1, g2)
