"""class_balanced_bce: every backend against the torch reference and F.binary_cross_entropy_with_logits,
errors, custom-op checks, torch.compile and the nn module."""
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import all_backend_params, fast_backend_params
from hypothesis import given, settings
from hypothesis import strategies as st
from grad_helpers import loss_and_grad
from tolerances import FP32, assert_no_worse_than_torch

import pycmlt
from pycmlt.ops import bce_reference
from pycmlt.ops import class_balanced_bce as cbbce

REDUCTIONS = ["mean", "sum", "none"]


def make_inputs(n, c, device, dtype=torch.float32, soft=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(n, c, generator=g) * 3).to(device=device, dtype=dtype)
    t = torch.rand(n, c, generator=g) if soft else (torch.rand(n, c, generator=g) < 0.3).float()
    return x, t.to(device=device, dtype=dtype)


def counts_for(c, seed=0):
    g = torch.Generator().manual_seed(seed + 1)
    return (1000 * torch.rand(c, generator=g).pow(3) + 1).floor()


# ---------------------------------------------------------------------------- drop-in for F.bce_with_logits

def _weights(case, n, c, device):
    g = torch.Generator().manual_seed(11)
    kw = {}
    shapes = {"w-class": (c,), "w-row": (n, 1), "w-full": (n, c), "w-scalar": ()}
    for name, shape in shapes.items():
        if name in case:
            kw["weight"] = (torch.rand(shape, generator=g) + 0.2).to(device)
    if "w-class-strided" in case:  # a [C] view with stride 2: not the zero-copy path of a contiguous fp32 [C]
        kw["weight"] = (torch.rand(2 * c, generator=g) + 0.2).to(device)[::2]
    if "w-class-fp64" in case:
        kw["weight"] = (torch.rand(c, generator=g, dtype=torch.float64) + 0.2).to(device)
    if "pw" in case:
        kw["pos_weight"] = (torch.rand(c, generator=g) * 3 + 0.1).to(device)
    if "pw-full" in case:
        kw["pos_weight"] = (torch.rand(n, c, generator=g) * 3 + 0.1).to(device)
    return kw


DROP_IN_CASES = [(), ("w-class",), ("w-class-strided",), ("w-class-fp64", "pw"), ("w-row",), ("w-full",), ("w-scalar",), ("pw",), ("pw-full",), ("w-class", "pw"),
                 ("soft",), ("soft", "w-row", "pw")]


@pytest.mark.parametrize("device,backend", all_backend_params())
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", DROP_IN_CASES, ids=lambda c: "-".join(c) or "plain")
def test_drop_in_for_f_bce_with_logits(device, backend, reduction, case):
    x, t = make_inputs(13, 11, device, soft="soft" in case)
    kw = _weights(case, 13, 11, device)
    ours = loss_and_grad(lambda z: cbbce(z, t, reduction=reduction, backend=backend, **kw), x)
    ref = loss_and_grad(lambda z: F.binary_cross_entropy_with_logits(z, t, reduction=reduction, **kw), x)
    assert ours[0].shape == ref[0].shape
    torch.testing.assert_close(ours[0], ref[0], **FP32)
    torch.testing.assert_close(ours[1], ref[1], **FP32)


@pytest.mark.parametrize("device,backend", all_backend_params())
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_any_shape_like_pytorch(device, backend, reduction):
    g = torch.Generator().manual_seed(2)
    for shape, wshape in [((), ()), ((7,), (7,)), ((3, 4, 5), (3, 1, 5)), ((3, 4, 5), (4, 1)), ((2, 3, 4), (1, 1, 4))]:
        x = torch.randn(shape, generator=g).to(device)
        t = torch.rand(shape, generator=g).to(device)
        w = (torch.rand(wshape, generator=g) + 0.5).to(device)
        pw = (torch.rand(shape[-1:] if shape else (), generator=g) + 0.5).to(device)
        ours = loss_and_grad(lambda z: cbbce(z, t, weight=w, pos_weight=pw, reduction=reduction, backend=backend), x)
        ref = loss_and_grad(lambda z: F.binary_cross_entropy_with_logits(z, t, weight=w, pos_weight=pw,
                                                                          reduction=reduction), x)
        assert ours[0].shape == ref[0].shape, shape
        torch.testing.assert_close(ours, ref, **FP32)


# ---------------------------------------------------------------------------- long-tail options vs reference

OPTION_CASES = {
    "cb": dict(beta=0.999),
    "focal": dict(focal_gamma=2.0),
    "focal-half": dict(focal_gamma=0.5),
    "cb-focal-pw": dict(beta=0.9999, focal_gamma=1.5, pos_weight=True),
}


def _option_kwargs(name, c, device):
    kw = dict(OPTION_CASES[name])
    if kw.pop("pos_weight", False):
        kw["pos_weight"] = (torch.rand(c, generator=torch.Generator().manual_seed(4)) * 2 + 0.5).to(device)
    if "beta" in kw:
        kw["class_counts"] = counts_for(c)
    return kw


@pytest.mark.parametrize("device,backend", fast_backend_params())
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", list(OPTION_CASES))
@pytest.mark.parametrize("soft", [False, True], ids=["multi-hot", "soft"])
def test_options_match_reference_fp32(device, backend, reduction, name, soft):
    x, t = make_inputs(17, 23, device, soft=soft)
    kw = _option_kwargs(name, 23, device)
    ours = loss_and_grad(lambda z: cbbce(z, t, reduction=reduction, backend=backend, **kw), x)
    ref = loss_and_grad(lambda z: cbbce(z, t, reduction=reduction, backend="torch", **kw), x)
    torch.testing.assert_close(ours, ref, rtol=2e-5, atol=2e-6)


def test_class_balanced_weights_are_per_class_weights():
    x, t = make_inputs(6, 5, "cpu")
    counts = torch.tensor([500.0, 50.0, 5.0, 2.0, 1.0])
    w = pycmlt.class_balanced_weights(counts, 0.99)
    torch.testing.assert_close(cbbce(x, t, class_counts=counts, beta=0.99),
                               F.binary_cross_entropy_with_logits(x, t, weight=w), **FP32)
    # an explicit weight overrides the class-balanced weights
    mine = torch.rand(5) + 0.5
    torch.testing.assert_close(cbbce(x, t, class_counts=counts, beta=0.99, weight=mine),
                               F.binary_cross_entropy_with_logits(x, t, weight=mine), **FP32)


def test_focal_matches_closed_form():
    x, t = make_inputs(5, 4, "cpu", soft=True)
    p = torch.sigmoid(x)
    p_t = t * p + (1 - t) * (1 - p)
    bce = -(t * torch.log(p) + (1 - t) * torch.log(1 - p))
    for backend in ("cpu", "torch"):
        loss = cbbce(x, t, focal_gamma=2.0, reduction="none", backend=backend)
        torch.testing.assert_close(loss, (1 - p_t) ** 2 * bce, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("device,backend", fast_backend_params())
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_focal_gamma_two_path_matches_general_path(device, backend, dtype):
    """gamma = 2 takes its own kernel path (q * q instead of exp(2 log q)); a gamma one float step
    above 2 takes the general one. Both must agree with each other and with the reference, loss and
    gradient, on the flat (few classes) and the row path."""
    for n, c in ((37, 5), (6, 700)):
        x, t = make_inputs(n, c, device, soft=True)
        x = (x * 4).to(dtype)
        t = t.to(dtype)
        two = loss_and_grad(lambda z: cbbce(z, t, focal_gamma=2.0, backend=backend), x)
        near = loss_and_grad(lambda z: cbbce(z, t, focal_gamma=2.0 + 2.5e-7, backend=backend), x)
        ref = loss_and_grad(lambda z: bce_reference(z.double(), t.double(), focal_gamma=2.0, upcast=False), x)
        assert two[1].dtype == dtype
        tol = dict(rtol=1e-4, atol=1e-6) if dtype == torch.float32 else dict(rtol=2e-2, atol=1e-4)
        torch.testing.assert_close(two[0].double(), ref[0], **tol)
        torch.testing.assert_close(two[1].double(), ref[1].double(), **tol)
        torch.testing.assert_close(two[0].double(), near[0].double(), **tol)
        torch.testing.assert_close(two[1].double(), near[1].double(), **tol)


@pytest.mark.parametrize("device,backend", fast_backend_params())
def test_extreme_logits(device, backend):
    x = torch.tensor([[-200.0, -90.0, -30.0, -1e-3, 0.0, 1e-3, 30.0, 90.0, 200.0]] * 3, device=device)
    t = torch.tensor([[0.0] * 9, [1.0] * 9, [0.25] * 9], device=device)
    for gamma in (0.0, 0.5, 2.0):
        ours = loss_and_grad(lambda z: cbbce(z, t, focal_gamma=gamma, reduction="sum", backend=backend), x)
        ref = loss_and_grad(lambda z: bce_reference(z.double(), t.double(), focal_gamma=gamma, reduction="sum",
                                                    upcast=False), x)
        assert torch.isfinite(ours[0]) and torch.isfinite(ours[1]).all()
        torch.testing.assert_close(ours[0].double(), ref[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ours[1].double(), ref[1].double(), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------- low precision

@pytest.mark.parametrize("device,backend", all_backend_params())
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", ["plain", "cb", "cb-focal-pw"])
def test_low_precision_no_worse_than_pytorch(device, backend, dtype, reduction, name):
    x, t = make_inputs(33, 97, device, dtype=dtype, soft=True)
    kw = _option_kwargs(name, 97, device) if name != "plain" else {}
    counts = kw.pop("class_counts", None)
    w = pycmlt.class_balanced_weights(counts, kw.pop("beta")).to(device) if counts is not None else None
    ours = loss_and_grad(lambda z: cbbce(z, t, weight=w, reduction=reduction, backend=backend, **kw), x)
    truth = loss_and_grad(lambda z: bce_reference(z, t.float(), w, kw.get("pos_weight"), reduction=reduction,
                                                  focal_gamma=kw.get("focal_gamma", 0.0)), x.float())
    lowp = loss_and_grad(lambda z: bce_reference(z, t, w, kw.get("pos_weight"), reduction=reduction, upcast=False,
                                                 focal_gamma=kw.get("focal_gamma", 0.0)), x)
    assert ours[0].dtype == dtype and ours[1].dtype == dtype
    assert_no_worse_than_torch(ours[0], lowp[0], truth[0], "loss")
    assert_no_worse_than_torch(ours[1], lowp[1], truth[1], "grad")


@pytest.mark.parametrize("device,backend", fast_backend_params())
def test_fp32_targets_with_low_precision_logits(device, backend):
    x, t = make_inputs(9, 12, device, dtype=torch.bfloat16, soft=True)
    t32 = t.float() + 0.001  # values a bf16 target could not hold
    ours = loss_and_grad(lambda z: cbbce(z, t32, backend=backend), x)
    truth = loss_and_grad(lambda z: F.binary_cross_entropy_with_logits(z, t32), x.float())
    torch.testing.assert_close(ours[0].float(), truth[0], rtol=1e-2, atol=1e-3)
    torch.testing.assert_close(ours[1].float(), truth[1], rtol=1e-2, atol=1e-4)


def test_float64_targets_with_fp32_logits():
    x, t = make_inputs(5, 6, "cpu", soft=True)
    ours = loss_and_grad(lambda z: cbbce(z, t.double(), backend="cpu"), x)
    ref = loss_and_grad(lambda z: F.binary_cross_entropy_with_logits(z, t), x)
    torch.testing.assert_close(ours, ref, **FP32)


# ---------------------------------------------------------------------------- shapes and layouts

@pytest.mark.parametrize("device,backend", fast_backend_params())
@pytest.mark.parametrize("n,c", [(1, 1), (1, 7), (5, 1), (3, 1000), (2, 50257)], ids=lambda v: str(v))
def test_odd_shapes(device, backend, n, c):
    x, t = make_inputs(n, c, device, soft=True)
    pw = torch.rand(c, device=device) + 0.5
    for kw in (dict(), dict(weight=torch.rand(c, device=device) + 0.5, pos_weight=pw, focal_gamma=1.0)):
        ours = loss_and_grad(lambda z: cbbce(z, t, backend=backend, **kw), x)
        ref = loss_and_grad(lambda z: bce_reference(z, t, kw.get("weight"), kw.get("pos_weight"),
                                                    focal_gamma=kw.get("focal_gamma", 0.0)), x)
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("device,backend", fast_backend_params())
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", [("w-row", "pw"), ("w-full",), ("w-class", "pw-full")], ids="-".join)
def test_rows_wider_than_a_kernel_chunk(device, backend, dtype, reduction, case):
    """The CPU kernel walks rows of more than 2048 columns in chunks (fp32 scratch kept in cache): two
    full chunks and a remainder, on sliced rows (the row path), with every weight layout and focal."""
    n, c = 5, 2 * 2048 + 3
    base_x, base_t = make_inputs(n + 2, c + 6, device, dtype=dtype, soft=True)
    x, t = base_x[1:-1, 2:-4], base_t[1:-1, 3:-3]
    assert not x.is_contiguous()
    kw = _weights(case, n, c, device)
    ours = loss_and_grad(lambda z: cbbce(z, t, reduction=reduction, focal_gamma=1.5, backend=backend, **kw), x)
    truth = loss_and_grad(lambda z: bce_reference(z, t.float(), kw.get("weight"), kw.get("pos_weight"),
                                                  reduction=reduction, focal_gamma=1.5), x.float())
    if dtype == torch.float32:
        torch.testing.assert_close(ours, truth, rtol=1e-4, atol=1e-6)
    else:
        lowp = loss_and_grad(lambda z: bce_reference(z, t, kw.get("weight"), kw.get("pos_weight"), upcast=False,
                                                     reduction=reduction, focal_gamma=1.5), x)
        assert_no_worse_than_torch(ours[0], lowp[0], truth[0], "loss")
        assert_no_worse_than_torch(ours[1], lowp[1], truth[1], "grad")


@pytest.mark.parametrize("device,backend", all_backend_params())
def test_non_contiguous_inputs(device, backend):
    base = torch.randn(24, 40, device=device)
    tbase = torch.rand(40, 24, device=device)
    for x, t in ((base[::2, 5:17], tbase.t()[::2, 3:15]), (base.t()[:12, :12], tbase[:12, :12])):
        assert not x.is_contiguous()
        ours = loss_and_grad(lambda z: cbbce(z, t, backend=backend, pos_weight=torch.ones(12, device=device) * 2), x)
        ref = loss_and_grad(lambda z: F.binary_cross_entropy_with_logits(z, t, pos_weight=torch.ones(12, device=device)
                                                                          * 2), x)
        torch.testing.assert_close(ours, ref, **FP32)


@pytest.mark.parametrize("device,backend", all_backend_params())
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_empty_batch_like_pytorch(device, backend, reduction):
    x = torch.randn(0, 5, device=device, requires_grad=True)
    t = torch.zeros(0, 5, device=device)
    ours = cbbce(x, t, reduction=reduction, backend=backend)
    ref = F.binary_cross_entropy_with_logits(x, t, reduction=reduction)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, equal_nan=True)
    ours.sum().backward()
    assert x.grad.shape == (0, 5)


@pytest.mark.parametrize("device,backend", fast_backend_params())
def test_no_grad_path_and_retain_graph(device, backend):
    x, t = make_inputs(8, 10, device)
    with torch.no_grad():
        loss = cbbce(x, t, backend=backend)
    torch.testing.assert_close(loss, F.binary_cross_entropy_with_logits(x, t), **FP32)
    x.requires_grad_(True)
    loss = cbbce(x, t, backend=backend)
    (g1,) = torch.autograd.grad(loss, x, retain_graph=True)
    (g2,) = torch.autograd.grad(loss * 1.0, x, torch.tensor(2.0, device=device))
    torch.testing.assert_close(2 * g1, g2)


# ---------------------------------------------------------------------------- bad input

def test_bad_input_explained():
    x, t = torch.randn(2, 3), torch.rand(2, 3)
    with pytest.raises(ValueError, match=r"target must have the shape of logits \[2, 3\]"):
        cbbce(x, torch.rand(2, 4))
    with pytest.raises(ValueError, match=r"target must have the shape of logits"):
        cbbce(x, torch.rand(6))
    with pytest.raises(TypeError, match="target must be a floating-point tensor.*torch.bool"):
        cbbce(x, t > 0.5)
    with pytest.raises(TypeError, match="target must be a floating-point tensor.*torch.int64"):
        cbbce(x, (t > 0.5).long())
    with pytest.raises(TypeError, match="logits must be a floating-point"):
        cbbce(torch.ones(2, 3, dtype=torch.long), t)
    with pytest.raises(ValueError, match=r"weight of shape \[4\] does not broadcast to the logits' shape \[2, 3\]"):
        cbbce(x, t, weight=torch.ones(4))
    with pytest.raises(ValueError, match=r"pos_weight of shape \[2, 2, 3\] does not broadcast"):
        cbbce(x, t, pos_weight=torch.ones(2, 2, 3))
    with pytest.raises(ValueError, match="target is on meta but logits is on cpu"):
        cbbce(x, torch.rand(2, 3, device="meta"))
    with pytest.raises(ValueError, match="weight is on meta"):
        cbbce(x, t, weight=torch.ones(3, device="meta"))
    with pytest.raises(ValueError, match="beta needs class_counts"):
        cbbce(x, t, beta=0.9)
    with pytest.raises(ValueError, match="class_counts is only used for class-balanced weights"):
        cbbce(x, t, class_counts=[1, 2, 3])
    with pytest.raises(ValueError, match="class 1 has count 0"):
        cbbce(x, t, class_counts=[1, 0, 3], beta=0.9)
    with pytest.raises(ValueError, match="expected length 3"):
        cbbce(x, t, class_counts=[1, 2], beta=0.9)
    with pytest.raises(ValueError, match="beta must be < 1"):
        cbbce(x, t, class_counts=[1, 2, 3], beta=1.0)
    with pytest.raises(ValueError, match="focal_gamma must be >= 0"):
        cbbce(x, t, focal_gamma=-1.0)
    with pytest.raises(ValueError, match="reduction must be one of"):
        cbbce(x, t, reduction="avg")


@pytest.mark.parametrize("device,backend", fast_backend_params())
def test_targets_requiring_grad_are_refused_by_kernels(device, backend):
    x = torch.randn(2, 3, device=device, requires_grad=True)
    t = torch.rand(2, 3, device=device, requires_grad=True)
    with pytest.raises(ValueError, match="target requires grad"):
        cbbce(x, t, backend=backend)
    loss = cbbce(x, t, backend="torch")  # the reference differentiates through them
    loss.backward()
    assert t.grad is not None


def test_float64_runs_on_torch_backend_and_is_refused_by_kernels():
    x, t = torch.randn(3, 4, dtype=torch.float64), torch.rand(3, 4, dtype=torch.float64)
    torch.testing.assert_close(cbbce(x, t), F.binary_cross_entropy_with_logits(x, t))
    with pytest.raises(TypeError, match="use backend='torch'"):
        cbbce(x, t, backend="cpu")


# ---------------------------------------------------------------------------- custom ops


def _op_samples(device):
    n, c = 5, 7
    x = torch.randn(n, c, device=device, requires_grad=True)
    t = torch.rand(n, c, device=device)
    w, pw, wr = torch.rand(1, c, device=device) + 0.5, torch.rand(1, c, device=device) + 0.5, torch.rand(n, 1,
                                                                                                       device=device)
    for red in (0, 1, 2):
        yield (x, t, None, None, 0.0, red, True)
        yield (x, t, w, pw, 0.0, red, True)
        yield (x, t, wr, None, 2.0, red, True)
    yield (x.detach(), t, None, None, 0.0, 1, False)
    yield (x.detach().bfloat16().requires_grad_(), t, w, None, 0.0, 1, True)
    yield (x.detach().half().requires_grad_(), t.half(), None, pw, 0.5, 0, True)


@pytest.mark.parametrize("device,backend", fast_backend_params())
def test_opcheck(device, backend):
    op = torch.ops.pycmlt.cb_bce_triton if backend == "triton" else torch.ops.pycmlt.cb_bce
    for args in _op_samples(device):
        torch.library.opcheck(op.default, args)
    inplace = torch.ops.pycmlt.cb_bce_grad_inplace_triton if backend == "triton" else torch.ops.pycmlt.cb_bce_grad_inplace
    x, t = make_inputs(4, 6, device)
    torch.library.opcheck(inplace.default, (x.clone(), t, None, torch.rand(1, 6, device=device), 1.0, 0.25))


@pytest.mark.parametrize("device,backend", fast_backend_params())
@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_inplace_entry_writes_the_scaled_gradient(device, backend, gamma):
    x, t = make_inputs(6, 9, device, soft=True)
    w = torch.rand(6, 1, device=device) + 0.5
    pw = torch.rand(1, 9, device=device) + 0.5
    inplace = torch.ops.pycmlt.cb_bce_grad_inplace_triton if backend == "triton" else torch.ops.pycmlt.cb_bce_grad_inplace
    buf = x.clone()
    total = inplace(buf, t, w, pw, gamma, 0.5)
    z = x.clone().requires_grad_(True)
    ref = bce_reference(z, t, w, pw, focal_gamma=gamma, reduction="sum")
    (g,) = torch.autograd.grad(ref, z)
    torch.testing.assert_close(total, ref.detach(), **FP32)
    torch.testing.assert_close(buf, 0.5 * g, **FP32)


@pytest.mark.parametrize("device,backend", all_backend_params())
def test_torch_compile_fullgraph(device, backend):
    torch._dynamo.reset()
    counts = torch.tensor([500.0, 50.0, 5.0, 1.0, 20.0])
    pw = torch.rand(5) + 0.5

    def loss_fn(z, t):
        return cbbce(z, t, class_counts=counts, beta=0.99, pos_weight=pw.to(z.device), focal_gamma=1.0,
                     backend=backend)

    compiled = torch.compile(loss_fn, fullgraph=True)
    x, t = make_inputs(6, 5, device, soft=True)
    eager = _loss_grad(loss_fn, x, t)
    got = _loss_grad(compiled, x, t)
    torch.testing.assert_close(got, eager, rtol=1e-5, atol=1e-6)


def _loss_grad(fn, x, t):
    x = x.clone().requires_grad_(True)
    loss = fn(x, t)
    loss.backward()
    return loss.detach(), x.grad


# ---------------------------------------------------------------------------- module


def test_module_is_a_drop_in_for_bce_with_logits_loss():
    pw = torch.rand(4) + 0.5
    w = torch.rand(4)
    ours = pycmlt.nn.ClassBalancedBCE(weight=w, pos_weight=pw, reduction="sum")
    ref = torch.nn.BCEWithLogitsLoss(weight=w, pos_weight=pw, reduction="sum")
    x, t = make_inputs(6, 4, "cpu", soft=True)
    torch.testing.assert_close(ours(x, t), ref(x, t), **FP32)
    assert {n for n, _ in ours.named_buffers()} == {"weight", "pos_weight"}


def test_module_holds_class_statistics_as_buffers():
    counts = [400, 100, 10, 3]
    crit = pycmlt.nn.ClassBalancedBCE(counts, beta=0.999, focal_gamma=2.0)
    assert {n for n, _ in crit.named_buffers()} == {"class_counts", "weight"}
    x, t = make_inputs(6, 4, "cpu")
    torch.testing.assert_close(crit(x, t), cbbce(x, t, class_counts=counts, beta=0.999, focal_gamma=2.0))
    clone = pycmlt.nn.ClassBalancedBCE(counts, beta=0.999)
    clone.load_state_dict(crit.state_dict())
    assert "num_classes=4" in repr(crit)
    with pytest.raises(ValueError, match="class_counts is only used"):
        pycmlt.nn.ClassBalancedBCE(counts)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 9), c=st.integers(1, 40), gamma=st.sampled_from([0.0, 0.5, 2.0]),
       beta=st.sampled_from([None, 0.9, 0.9999]), with_pw=st.booleans(), soft=st.booleans(),
       reduction=st.sampled_from(["mean", "sum", "none"]), seed=st.integers(0, 2**16))
def test_cpu_kernel_property(n, c, gamma, beta, with_pw, soft, reduction, seed):
    if "cpu" not in pycmlt.ops.available_backends("cpu"):
        pytest.skip("C++ extension not built")
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, generator=g) * 6
    t = torch.rand(n, c, generator=g) if soft else (torch.rand(n, c, generator=g) < 0.2).float()
    counts = torch.randint(1, 300, (c,), generator=g) if beta is not None else None
    pw = torch.rand(c, generator=g) * 4 + 0.1 if with_pw else None
    results = []
    for backend in ("cpu", "torch"):
        z = x.clone().requires_grad_(True)
        loss = cbbce(z, t, class_counts=counts, beta=beta, pos_weight=pw, focal_gamma=gamma, reduction=reduction,
                     backend=backend)
        loss.sum().backward()
        results.append((loss.detach(), z.grad))
    torch.testing.assert_close(results[0], results[1], rtol=1e-4, atol=1e-5)
    assert all(math.isfinite(v) for v in results[0][1].flatten().tolist())
