"""class_balanced_cross_entropy as a library citizen: errors, custom-op checks, torch.compile,
the nn module and the class-statistics helpers."""
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import all_backend_params, fast_backend_params
from hypothesis import given, settings
from hypothesis import strategies as st

import pycmlt
from pycmlt.ops import class_balanced_cross_entropy as cbce

# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("device,backend", all_backend_params())
@pytest.mark.parametrize("bad", [5, -1, -101])
def test_target_out_of_range_is_a_value_error(device, backend, bad):
    x = torch.randn(4, 5, device=device)
    t = torch.tensor([0, 1, bad, 2], device=device)
    with pytest.raises(ValueError, match=r"target\[2\] = .* out of range"):
        cbce(x, t, backend=backend)


@pytest.mark.parametrize("counts,match", [
    ([3, 0, 2], "class 1 has count 0"),
    ([3, -2, 2], "class 1 has count -2"),
    ([3, float("nan"), 2], "NaN"),
    ([3, float("inf"), 2], "infinite"),
    ([3, 2], "expected length 3"),
    ([[1, 2, 3]], "1-D"),
])
def test_bad_class_counts(counts, match):
    x, t = torch.randn(2, 3), torch.tensor([0, 2])
    with pytest.raises(ValueError, match=match):
        cbce(x, t, class_counts=counts, beta=0.9)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(class_counts=[1, 2, 3], beta=1.0), ValueError, "beta must be < 1"),
    (dict(class_counts=[1, 2, 3], beta=-0.1), ValueError, "beta must be >= 0"),
    (dict(beta=0.9), ValueError, "need class_counts"),
    (dict(ldam_max_margin=0.5), ValueError, "need class_counts"),
    (dict(logit_adjust_tau=1.0), ValueError, "need class_counts"),
    (dict(focal_gamma=2.0, label_smoothing=0.1), ValueError, "cannot be combined"),
    (dict(focal_gamma=-1.0), ValueError, "focal_gamma must be >= 0"),
    (dict(label_smoothing=1.5), ValueError, "label_smoothing must be <= 1"),
    (dict(ldam_scale=0.0), ValueError, "ldam_scale must be > 0"),
    (dict(reduction="avg"), ValueError, "reduction must be one of"),
    (dict(backend="gpu"), ValueError, "backend must be one of"),
    (dict(class_weight=torch.ones(4)), ValueError, r"class_weight must have shape \[3\]"),
    (dict(class_weight=torch.ones(3, dtype=torch.long)), TypeError, "class_weight must be a floating-point"),
])
def test_bad_options(kwargs, error, match):
    x, t = torch.randn(2, 3), torch.tensor([0, 2])
    with pytest.raises(error, match=match):
        cbce(x, t, **kwargs)


def test_bad_tensors():
    with pytest.raises(TypeError, match="logits must be a floating-point"):
        cbce(torch.ones(2, 3, dtype=torch.long), torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="target must be an integer"):
        cbce(torch.randn(2, 3), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"target must have shape \[2\]"):
        cbce(torch.randn(2, 3), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="target is on meta but logits is on cpu"):
        cbce(torch.randn(2, 3), torch.tensor([0, 1], device="meta"))
    with pytest.raises(ValueError, match="class_weight is on meta"):
        cbce(torch.randn(2, 3), torch.tensor([0, 1]), class_weight=torch.ones(3, device="meta"))


def test_unavailable_backend_explains_itself():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ValueError, match="backend='cuda' is not available"):
        cbce(torch.randn(2, 3), torch.tensor([0, 1]), backend="cuda")


def test_float64_runs_on_torch_backend_and_is_refused_by_kernels():
    x, t = torch.randn(3, 4, dtype=torch.float64), torch.tensor([0, 1, 3])
    torch.testing.assert_close(cbce(x, t), F.cross_entropy(x, t), rtol=1e-13, atol=0)  # float64 all the way
    with pytest.raises(TypeError, match="use backend='torch'"):
        cbce(x, t, backend="cpu")


# ---------------------------------------------------------------------------- custom ops


def _op_samples(device):
    c = 7
    x = torch.randn(5, c, device=device, requires_grad=True)
    t = torch.tensor([0, 1, -100, 3, 6], device=device)
    w, m, b = torch.rand(c, device=device) + 0.5, torch.rand(c, device=device), torch.randn(c, device=device)
    for red in (0, 1, 2):
        yield (x, t, None, None, None, 1.0, 0.0, 0.0, -100, red, True)
        yield (x, t, w, m, b, 2.0, 0.0, 0.1, -100, red, True)
        yield (x, t, w, None, b, 1.0, 1.5, 0.0, -100, red, True)
    yield (x.detach(), t, None, None, None, 1.0, 0.0, 0.0, -100, 1, False)
    yield (x.detach().bfloat16().requires_grad_(), t, w, None, None, 1.0, 0.0, 0.0, -100, 1, True)


def _op_for(backend):
    return (torch.ops.pycmlt.cb_cross_entropy_triton if backend == "triton"
            else torch.ops.pycmlt.cb_cross_entropy).default


@pytest.mark.parametrize("device,backend", fast_backend_params())
def test_opcheck(device, backend):
    for args in _op_samples(device):
        torch.library.opcheck(_op_for(backend), args)


@pytest.mark.parametrize("device,backend", all_backend_params())
def test_torch_compile_fullgraph(device, backend):
    torch._dynamo.reset()
    counts = torch.tensor([500.0, 50.0, 5.0, 1.0, 20.0])

    def loss_fn(z, t):
        return cbce(z, t, class_counts=counts, beta=0.99, logit_adjust_tau=1.0, backend=backend)

    compiled = torch.compile(loss_fn, fullgraph=True)
    x = torch.randn(6, 5, device=device)
    t = torch.tensor([0, 1, 2, 3, 4, -100], device=device)
    eager = _loss_grad(loss_fn, x, t)
    got = _loss_grad(compiled, x, t)
    torch.testing.assert_close(got, eager, rtol=1e-5, atol=1e-6)


def _loss_grad(fn, x, t):
    x = x.clone().requires_grad_(True)
    loss = fn(x, t)
    loss.backward()
    return loss.detach(), x.grad


# ---------------------------------------------------------------------------- module and helpers


def test_module_holds_class_statistics_as_buffers():
    counts = [400, 100, 10, 3]
    crit = pycmlt.nn.ClassBalancedCrossEntropy(counts, beta=0.999, ldam_max_margin=0.5, ldam_scale=10)
    names = {n for n, _ in crit.named_buffers()}
    assert names == {"class_counts", "class_weight", "margins"}
    x, t = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 3, 2])
    torch.testing.assert_close(
        crit(x, t), cbce(x, t, class_counts=counts, beta=0.999, ldam_max_margin=0.5, ldam_scale=10))
    clone = pycmlt.nn.ClassBalancedCrossEntropy(counts, beta=0.999, ldam_max_margin=0.5, ldam_scale=10)
    clone.load_state_dict(crit.state_dict())
    assert "num_classes=4" in repr(crit)


def test_module_without_counts_is_plain_cross_entropy():
    crit = pycmlt.nn.ClassBalancedCrossEntropy(label_smoothing=0.1)
    x, t = torch.randn(5, 3), torch.tensor([0, 1, 2, 1, 0])
    torch.testing.assert_close(crit(x, t), F.cross_entropy(x, t, label_smoothing=0.1))
    with pytest.raises(ValueError, match="need class_counts"):
        pycmlt.nn.ClassBalancedCrossEntropy(beta=0.9)


def test_class_balanced_weights():
    counts = torch.tensor([1000.0, 100.0, 10.0, 1.0])
    w = pycmlt.class_balanced_weights(counts, 0.999)
    assert w.dtype == torch.float32 and w.shape == (4,)
    torch.testing.assert_close(w.sum(), torch.tensor(4.0))
    assert torch.all(w[1:] > w[:-1])
    raw = (1 - 0.999) / (1 - 0.999 ** counts.double())
    torch.testing.assert_close(w.double(), raw * 4 / raw.sum())
    torch.testing.assert_close(pycmlt.class_balanced_weights(counts, 0.0), torch.ones(4))
    # beta -> 1 approaches inverse frequency
    w = pycmlt.class_balanced_weights(counts, 1 - 1e-9)
    inv = 1 / counts
    torch.testing.assert_close(w, (inv * 4 / inv.sum()).float(), rtol=1e-3, atol=1e-5)


def test_ldam_margins_and_logit_adjustment():
    counts = torch.tensor([10000.0, 100.0, 1.0])
    m = pycmlt.ldam_margins(counts, 0.5)
    torch.testing.assert_close(m, torch.tensor([0.05, 0.5 * 100 ** -0.25, 0.5]))
    b = pycmlt.ops.logit_adjustment(counts, 1.0)
    torch.testing.assert_close(b.exp().sum(), torch.tensor(1.0))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 9), c=st.integers(1, 40), gamma=st.sampled_from([0.0, 0.5, 2.0]),
       smoothing=st.sampled_from([0.0, 0.3]), beta=st.sampled_from([None, 0.9, 0.9999]),
       tau=st.sampled_from([0.0, 1.0]), margin=st.sampled_from([0.0, 0.4]),
       reduction=st.sampled_from(["mean", "sum", "none"]), seed=st.integers(0, 2**16))
def test_cpu_kernel_property(n, c, gamma, smoothing, beta, tau, margin, reduction, seed):
    if gamma > 0:
        smoothing = 0.0
    if "cpu" not in pycmlt.ops.available_backends("cpu"):
        pytest.skip("C++ extension not built")
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, generator=g) * 4
    t = torch.randint(0, c, (n,), generator=g)
    counts = torch.randint(1, 300, (c,), generator=g)
    kw = dict(class_counts=counts, beta=beta, focal_gamma=gamma, label_smoothing=smoothing,
              logit_adjust_tau=tau, ldam_max_margin=margin, ldam_scale=2.0, reduction=reduction)
    results = []
    for backend in ("cpu", "torch"):
        z = x.clone().requires_grad_(True)
        loss = cbce(z, t, backend=backend, **kw)
        loss.sum().backward()
        results.append((loss.detach(), z.grad))
    torch.testing.assert_close(results[0], results[1], rtol=1e-4, atol=1e-5)
    assert all(math.isfinite(v) for v in results[0][1].flatten().tolist())
