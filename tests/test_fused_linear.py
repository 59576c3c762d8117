"""Fused linear + class-balanced CE / BCE: every backend against the torch reference and the PyTorch
functions they replace (F.linear + F.cross_entropy / F.binary_cross_entropy_with_logits), all
gradients, chunking, memory, errors, custom ops, torch.compile and the nn modules."""
import pytest
import torch
import torch.nn.functional as F
from conftest import all_backend_params, fast_backend_params
from tolerances import assert_no_worse_than_torch
from torch.profiler import ProfilerActivity, profile

import pycmlt
from pycmlt.ops import bce_reference, cross_entropy_reference, default_chunk_rows
from pycmlt.ops import fused_linear_class_balanced_bce as flbce
from pycmlt.ops import fused_linear_class_balanced_cross_entropy as flce

REDUCTIONS = ["mean", "sum", "none"]
TOL = dict(rtol=2e-5, atol=2e-5)


def make_linear(n, d, c, device, dtype=torch.float32, seed=0, bias=True):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, d, generator=g).to(device=device, dtype=dtype)
    w = (torch.randn(c, d, generator=g) / d ** 0.5 * 2).to(device=device, dtype=dtype)
    b = (torch.randn(c, generator=g) * 0.5).to(device=device, dtype=dtype) if bias else None
    return h, w, b


def make_target(n, c, device, seed=0, ignore=True):
    t = torch.randint(0, c, (n,), generator=torch.Generator().manual_seed(seed + 7))
    if ignore and n > 3:
        t[1] = -100
        t[n - 2] = -100
    return t.to(device)


def make_multilabel(n, c, device, dtype=torch.float32, seed=0, soft=False):
    g = torch.Generator().manual_seed(seed + 9)
    t = torch.rand(n, c, generator=g) if soft else (torch.rand(n, c, generator=g) < 0.2).float()
    return t.to(device=device, dtype=dtype)


def loss_and_grads(fn, h, w, b, seed=3):
    """(loss, d/dhidden, d/dweight, d/dbias) with a random incoming gradient."""
    leaves = [t.detach().clone().requires_grad_(True) for t in (h, w, b) if t is not None]
    loss = fn(*leaves) if b is not None else fn(*leaves, None)
    g = torch.Generator().manual_seed(seed)
    upstream = torch.rand(loss.shape, generator=g).to(loss) if loss.dim() else torch.tensor(1.7).to(loss)
    grads = torch.autograd.grad(loss, leaves, upstream)
    return (loss.detach(),) + tuple(grads)


def assert_all_close(ours, ref, **tol):
    for name, a, b in zip(("loss", "grad_hidden", "grad_weight", "grad_bias"), ours, ref):
        torch.testing.assert_close(a, b, **tol, msg=lambda m, name=name: f"{name}: {m}")


# ---------------------------------------------------------------------------- cross-entropy

@pytest.mark.parametrize("device,backend", all_backend_params())
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", ["plain", "weight-smooth", "ignore-3"])
def test_ce_drop_in_for_linear_plus_cross_entropy(device, backend, reduction, case):
    n, d, c = 21, 12, 19
    h, w, b = make_linear(n, d, c, device)
    t = make_target(n, c, device)
    kw, ref_kw = {}, {}
    if case == "weight-smooth":
        cw = torch.rand(c, device=device) + 0.2
        kw, ref_kw = dict(class_weight=cw, label_smoothing=0.1), dict(weight=cw, label_smoothing=0.1)
    if case == "ignore-3":
        t[(t == 3) | (t == -100)] = 5
        t[0] = 3
        t[4] = 3
        kw, ref_kw = dict(ignore_index=3), dict(ignore_index=3)
    ours = loss_and_grads(lambda *a: flce(*a[:2], t, a[2], reduction=reduction, chunk_rows=8, backend=backend, **kw),
                          h, w, b)
    ref = loss_and_grads(lambda *a: F.cross_entropy(F.linear(a[0], a[1], a[2]), t, reduction=reduction, **ref_kw),
                         h, w, b)
    assert_all_close(ours, ref, **TOL)


CE_OPTIONS = {
    "cb": dict(beta=0.999),
    "cb-focal": dict(beta=0.9999, focal_gamma=1.0),
    "ldam-cb": dict(ldam_max_margin=0.5, ldam_scale=10.0, beta=0.99),
    "balanced-softmax-smooth": dict(logit_adjust_tau=1.0, label_smoothing=0.2),
}


@pytest.mark.parametrize("device,backend", fast_backend_params())
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", list(CE_OPTIONS))
def test_ce_options_match_reference(device, backend, reduction, name):
    n, d, c = 19, 10, 23
    h, w, b = make_linear(n, d, c, device, seed=1)
    t = make_target(n, c, device, seed=1)
    counts = (1000 * torch.rand(c, generator=torch.Generator().manual_seed(2)).pow(3) + 1).floor()
    kw = dict(CE_OPTIONS[name], class_counts=counts, reduction=reduction)
    ours = loss_and_grads(lambda *a: flce(*a[:2], t, a[2], chunk_rows=5, backend=backend, **kw), h, w, b)
    ref = loss_and_grads(lambda *a: pycmlt.ops.class_balanced_cross_entropy(F.linear(*a), t, backend="torch", **kw),
                         h, w, b)
    assert_all_close(ours, ref, **TOL)


@pytest.mark.parametrize("device,backend", fast_backend_params())
@pytest.mark.parametrize("n,d,c,chunk", [(1, 4, 1, None), (1, 8, 7, 3), (7, 5, 1, 2), (13, 6, 10, 13), (13, 6, 10, 14),
                                         (17, 3, 33, 4), (3, 8, 50257, 2)], ids=lambda v: str(v))
def test_ce_odd_shapes_and_chunks(device, backend, n, d, c, chunk):
    if backend == "triton" and c > 1000:
        n = 2  # the Triton interpreter is slow on long rows
    h, w, b = make_linear(n, d, c, device, seed=n + c)
    t = make_target(n, c, device, seed=c)
    ours = loss_and_grads(lambda *a: flce(*a[:2], t, a[2], chunk_rows=chunk, backend=backend), h, w, b)
    ref = loss_and_grads(lambda *a: F.cross_entropy(F.linear(*a), t), h, w, b)
    assert_all_close(ours, ref, **TOL)


@pytest.mark.parametrize("device,backend", fast_backend_params())
def test_ce_ignored_rows_across_chunks(device, backend):
    n, d, c = 24, 6, 9
    h, w, b = make_linear(n, d, c, device, seed=4)
    t = make_target(n, c, device, seed=4, ignore=False)
    t[:8] = -100  # a whole chunk ignored, and the mean's denominator must still be global
    t[13] = -100
    cw = torch.rand(c, device=device) + 0.1
    for chunk in (8, 5, 24):
        ours = loss_and_grads(lambda *a: flce(*a[:2], t, a[2], class_weight=cw, chunk_rows=chunk, backend=backend),
                              h, w, b)
        ref = loss_and_grads(lambda *a: F.cross_entropy(F.linear(*a), t, weight=cw), h, w, b)
        assert_all_close(ours, ref, **TOL)
        assert ours[1][:8].abs().max() == 0 and ours[1][13].abs().max() == 0


@pytest.mark.parametrize("device,backend", all_backend_params())
def test_ce_all_rows_ignored_like_pytorch(device, backend):
    h, w, b = make_linear(6, 4, 5, device)
    t = torch.full((6,), -100, device=device)
    ours = loss_and_grads(lambda *a: flce(*a[:2], t, a[2], chunk_rows=4, backend=backend), h, w, b)
    ref = loss_and_grads(lambda *a: F.cross_entropy(F.linear(*a), t), h, w, b)
    assert torch.isnan(ours[0])
    assert_all_close(ours[1:], ref[1:], **TOL)


@pytest.mark.parametrize("device,backend", all_backend_params())
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_ce_leading_dims_and_no_bias(device, backend, reduction):
    h, w, _ = make_linear(2 * 5, 6, 11, device, bias=False)
    h = h.reshape(2, 5, 6)
    t = make_target(10, 11, device).reshape(2, 5)
    ours = loss_and_grads(lambda hh, ww, _: flce(hh, ww, t, reduction=reduction, chunk_rows=3, backend=backend),
                          h, w, None)
    ref = loss_and_grads(lambda hh, ww, _: F.cross_entropy(F.linear(hh, ww).reshape(10, 11), t.reshape(10),
                                                           reduction=reduction).reshape(
                             (2, 5) if reduction == "none" else ()), h, w, None)
    assert ours[0].shape == ref[0].shape
    assert_all_close(ours, ref, **TOL)


# ---------------------------------------------------------------------------- BCE

@pytest.mark.parametrize("device,backend", all_backend_params())
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", ["plain", "weights", "soft-row-weight"])
def test_bce_drop_in_for_linear_plus_bce(device, backend, reduction, case):
    n, d, c = 21, 12, 19
    h, w, b = make_linear(n, d, c, device)
    y = make_multilabel(n, c, device, soft=case.startswith("soft"))
    kw, ref_kw = {}, {}
    if case == "weights":
        lw, pw = torch.rand(c, device=device) + 0.2, torch.rand(c, device=device) * 3 + 0.2
        kw, ref_kw = dict(loss_weight=lw, pos_weight=pw), dict(weight=lw, pos_weight=pw)
    if case == "soft-row-weight":
        lw = torch.rand(n, 1, device=device)
        kw, ref_kw = dict(loss_weight=lw), dict(weight=lw)
    ours = loss_and_grads(lambda *a: flbce(*a[:2], y, a[2], reduction=reduction, chunk_rows=8, backend=backend, **kw),
                          h, w, b)
    ref = loss_and_grads(lambda *a: F.binary_cross_entropy_with_logits(F.linear(*a), y, reduction=reduction,
                                                                        **ref_kw), h, w, b)
    assert_all_close(ours, ref, **TOL)


@pytest.mark.parametrize("device,backend", fast_backend_params())
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_class_balanced_focal_matches_reference(device, backend, reduction):
    n, d, c = 17, 9, 29
    h, w, b = make_linear(n, d, c, device, seed=5)
    y = make_multilabel(n, c, device, seed=5)
    counts = y.sum(0).cpu() + 1
    pw = torch.rand(c, device=device) + 0.5
    kw = dict(class_counts=counts, beta=0.999, focal_gamma=2.0, pos_weight=pw, reduction=reduction)
    ours = loss_and_grads(lambda *a: flbce(*a[:2], y, a[2], chunk_rows=6, backend=backend, **kw), h, w, b)
    ref = loss_and_grads(lambda *a: pycmlt.ops.class_balanced_bce(F.linear(*a), y, backend="torch", **kw), h, w, b)
    assert_all_close(ours, ref, **TOL)


@pytest.mark.parametrize("device,backend", fast_backend_params())
@pytest.mark.parametrize("n,d,c,chunk", [(1, 4, 1, None), (7, 5, 1, 2), (13, 6, 10, 5), (3, 8, 50257, 2)],
                         ids=lambda v: str(v))
def test_bce_odd_shapes_and_chunks(device, backend, n, d, c, chunk):
    if backend == "triton" and c > 1000:
        n = 2
    h, w, b = make_linear(n, d, c, device, seed=n + c)
    y = make_multilabel(n, c, device, seed=c, soft=True)
    ours = loss_and_grads(lambda *a: flbce(*a[:2], y, a[2], chunk_rows=chunk, backend=backend), h, w, b)
    ref = loss_and_grads(lambda *a: F.binary_cross_entropy_with_logits(F.linear(*a), y), h, w, b)
    assert_all_close(ours, ref, **TOL)


# ---------------------------------------------------------------------------- low precision

@pytest.mark.parametrize("device,backend", all_backend_params())
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("loss", ["ce", "bce"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_low_precision_no_worse_than_pytorch(device, backend, dtype, loss, reduction):
    n, d, c = 29, 24, 67
    h, w, b = make_linear(n, d, c, device, dtype=dtype, seed=6)
    if loss == "ce":
        t = make_target(n, c, device, seed=6)
        cw = torch.rand(c, device=device) + 0.5

        def ours_fn(*a):
            return flce(*a[:2], t, a[2], class_weight=cw, reduction=reduction, chunk_rows=8, backend=backend)

        def ref_fn(upcast):
            return lambda *a: cross_entropy_reference(F.linear(*a), t, cw, reduction=reduction, upcast=upcast)
    else:
        y = make_multilabel(n, c, device, dtype=dtype, seed=6, soft=True)
        pw = torch.rand(c, device=device) + 0.5

        def ours_fn(*a):
            return flbce(*a[:2], y, a[2], pos_weight=pw, reduction=reduction, chunk_rows=8, backend=backend)

        def ref_fn(upcast):
            return lambda *a: bce_reference(F.linear(*a), y, None, pw, reduction=reduction, upcast=upcast)
    ours = loss_and_grads(ours_fn, h, w, b)
    truth = loss_and_grads(ref_fn(True), h.float(), w.float(), b.float())
    lowp = loss_and_grads(ref_fn(False), h, w, b)
    for name, o, lp, tr in zip(("loss", "grad_hidden", "grad_weight", "grad_bias"), ours, lowp, truth):
        assert o.dtype == dtype, name
        assert_no_worse_than_torch(o, lp, tr, name)


def test_autocast_runs_the_matmul_in_the_autocast_dtype():
    h, w, b = make_linear(9, 8, 13, "cpu", seed=8)
    t = make_target(9, 13, "cpu")
    hh, ww, bb = (x.clone().requires_grad_(True) for x in (h, w, b))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = flce(hh, ww, t, bb, backend="cpu")
    assert loss.dtype == torch.bfloat16
    loss.backward()
    assert ww.grad.dtype == torch.float32 and hh.grad.dtype == torch.float32
    ref = F.cross_entropy(F.linear(h.bfloat16(), w.bfloat16(), b.bfloat16()).float(), t)
    torch.testing.assert_close(loss.float(), ref, rtol=2e-2, atol=2e-2)


# ---------------------------------------------------------------------------- chunking and memory

def peak_allocated_bytes(fn) -> int:
    """Peak of the bytes allocated (minus freed) during fn(), from the profiler's allocator events
    (deterministic, and it sees the allocations made inside the custom ops)."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities, profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    current = peak = 0
    for _, nbytes in events:
        current += nbytes
        peak = max(peak, current)
    return peak


@pytest.mark.parametrize("device,backend", fast_backend_params())
@pytest.mark.parametrize("loss", ["ce", "bce"])
def test_full_logits_never_exist(device, backend, loss):
    n, d, c, chunk = 256, 16, 2048, 16
    h, w, b = make_linear(n, d, c, device)
    hh, ww, bb = (x.clone().requires_grad_(True) for x in (h, w, b))
    t, y = make_target(n, c, device), make_multilabel(n, c, device)

    def run(backend):
        if loss == "ce":
            out = flce(hh, ww, t, bb, chunk_rows=chunk, backend=backend)
        else:
            out = flbce(hh, ww, y, bb, chunk_rows=chunk, backend=backend)
        torch.autograd.grad(out, (hh, ww, bb))

    logits = n * c * 4
    fused = peak_allocated_bytes(lambda: run(backend))
    # the chunk buffer, grad_hidden, the fp32 grad_weight accumulator and small change
    assert fused <= (chunk * c + n * d + c * d + 2 * c) * 4 + (64 << 10), fused
    assert fused < logits / 4
    assert peak_allocated_bytes(lambda: run("torch")) >= logits  # the reference does hold the logits


@pytest.mark.parametrize("device,backend", fast_backend_params())
def test_frozen_parameters_get_no_gradient(device, backend):
    h, w, b = make_linear(10, 4, 7, device)
    t = make_target(10, 7, device)
    hh = h.clone().requires_grad_(True)
    loss = flce(hh, w, t, b, chunk_rows=3, backend=backend)
    (gh,) = torch.autograd.grad(loss, [hh])
    ref = torch.autograd.grad(F.cross_entropy(F.linear(hh, w, b), t), [hh])[0]
    torch.testing.assert_close(gh, ref, **TOL)
    ww = w.clone().requires_grad_(True)
    loss = flbce(h, ww, make_multilabel(10, 7, device), chunk_rows=4, backend=backend)
    (gw,) = torch.autograd.grad(loss, [ww])
    assert gw.shape == w.shape
    with torch.no_grad():
        torch.testing.assert_close(flce(h, w, t, b, backend=backend), F.cross_entropy(F.linear(h, w, b), t), **TOL)


def test_default_chunk_rows():
    # the chunk's logits are about the size of hidden (rounded up to a power of two) ...
    assert default_chunk_rows(16384, 2048, 32000, 2, "cuda") == 1024
    # ... but never under the byte floor (8 MiB on GPUs, 64 MiB on CPUs), and never more than N
    assert default_chunk_rows(4096, 512, 32000, 4, "cuda") == 128
    assert default_chunk_rows(4096, 512, 32000, 4, "cpu") == (64 << 20) // (32000 * 4)
    assert default_chunk_rows(100, 64, 50257, 4, "cuda") == 41
    assert default_chunk_rows(5, 64, 50257, 4, "cpu") == 5
    assert default_chunk_rows(0, 8, 8, 4) == 1


# ---------------------------------------------------------------------------- in-place CE gradient entry

@pytest.mark.parametrize("device,backend", fast_backend_params())
@pytest.mark.parametrize("c", [7, 5000, 20000], ids=lambda c: f"C{c}")
def test_ce_inplace_entry_writes_the_scaled_gradient(device, backend, c):
    n = 3 if c > 1000 else 9
    g = torch.Generator().manual_seed(c)
    x = (torch.randn(n, c, generator=g) * 3).to(device)
    t = make_target(n, c, device, ignore=False)
    t[0] = -100
    cw, m, lb = (torch.rand(c, generator=g).to(device) + 0.5, torch.rand(c, generator=g).to(device),
                 torch.randn(c, generator=g).to(device))
    aux = torch.tensor([0.25, float(cw.sum())], device=device)
    op = (torch.ops.pycmlt.cb_cross_entropy_grad_inplace_triton if backend == "triton"
          else torch.ops.pycmlt.cb_cross_entropy_grad_inplace)
    buf = x.clone()
    rows = op(buf, t, cw, m, lb, aux, 2.0, 0.0, 0.1, -100)
    z = x.clone().requires_grad_(True)
    ref = cross_entropy_reference(z, t, cw, m, lb, scale=2.0, label_smoothing=0.1, reduction="none")
    (grad,) = torch.autograd.grad(ref.sum(), z)
    torch.testing.assert_close(rows, ref.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(buf, 0.25 * grad, rtol=1e-5, atol=1e-7)
    torch.library.opcheck(op.default, (x.clone(), t, cw, None, lb, aux, 1.0, 1.5, 0.0, -100))


# ---------------------------------------------------------------------------- errors

def test_bad_input_explained():
    h, w, b = make_linear(4, 6, 5, "cpu")
    t = make_target(4, 5, "cpu", ignore=False)
    with pytest.raises(ValueError, match=r"hidden has 6 features .* weight \[C, D\] has shape \[5, 7\]"):
        flce(h, torch.randn(5, 7), t)
    with pytest.raises(ValueError, match=r"weight must be the classifier matrix \[C, D\]"):
        flce(h, torch.randn(6), t)
    with pytest.raises(TypeError, match="hidden is torch.float32 but weight is torch.bfloat16"):
        flce(h, w.bfloat16(), t)
    with pytest.raises(TypeError, match="bias is torch.float16 but weight is torch.float32"):
        flce(h, w, t, b.half())
    with pytest.raises(ValueError, match=r"bias must have shape \[5\]"):
        flce(h, w, t, torch.zeros(4))
    with pytest.raises(ValueError, match=r"target must have shape \[4\]"):
        flce(h, w, t[:3])
    with pytest.raises(TypeError, match="target must be an integer"):
        flce(h, w, t.float())
    with pytest.raises(ValueError, match=r"target\[2\] = 9 is out of range"):
        flce(h, w, torch.tensor([0, 1, 9, 2]), backend="cpu")
    with pytest.raises(ValueError, match=r"target\[2\] = 9 is out of range"):
        flce(h, w, torch.tensor([0, 1, 9, 2]), backend="triton")
    with pytest.raises(ValueError, match="weight is on meta but hidden is on cpu"):
        flce(h, w.to("meta"), t)
    with pytest.raises(ValueError, match="chunk_rows must be a positive int"):
        flce(h, w, t, chunk_rows=0)
    with pytest.raises(ValueError, match=r"class_weight must have shape \[5\]"):
        flce(h, w, t, class_weight=torch.ones(3))
    with pytest.raises(ValueError, match="need class_counts"):
        flce(h, w, t, beta=0.9)
    with pytest.raises(ValueError, match="cannot be combined"):
        flce(h, w, t, focal_gamma=1.0, label_smoothing=0.1)
    y = make_multilabel(4, 5, "cpu")
    with pytest.raises(ValueError, match=r"target must have the shape of the logits \[4, 5\]"):
        flbce(h, w, y[:, :4])
    with pytest.raises(TypeError, match="target must be a floating-point tensor"):
        flbce(h, w, y.bool())
    with pytest.raises(ValueError, match=r"loss_weight of shape \[3\] does not broadcast"):
        flbce(h, w, y, loss_weight=torch.ones(3))
    with pytest.raises(ValueError, match="class_counts is only used"):
        flbce(h, w, y, class_counts=[1, 2, 3, 4, 5])
    with pytest.raises(ValueError, match="target is on meta"):
        flbce(h, w, y.to("meta"))


# ---------------------------------------------------------------------------- custom ops and compile

def _fused_samples(device, kernel):
    h, w, b = make_linear(7, 5, 6, device)
    h.requires_grad_(True)
    w.requires_grad_(True)
    b.requires_grad_(True)
    t = make_target(7, 6, device)
    cw = torch.rand(6, device=device) + 0.5
    for red, flags in ((1, (True, True, True)), (2, (True, False, True)), (0, (False, False, False))):
        yield torch.ops.pycmlt.fused_linear_cb_cross_entropy, (
            h, w, t, b, cw, None, None, None, 1.0, 0.0, 0.1, -100, red, 3, kernel, *flags)
    y = make_multilabel(7, 6, device, soft=True)
    pw = torch.rand(1, 6, device=device) + 0.5
    for red, flags in ((1, (True, True, True)), (0, (False, False, False))):
        yield torch.ops.pycmlt.fused_linear_cb_bce, (h, w, y, b, None, pw, None, 1.0, red, 4, kernel, *flags)


@pytest.mark.parametrize("device,backend", fast_backend_params())
def test_opcheck(device, backend):
    kernel = "triton" if backend == "triton" else "native"
    for op, args in _fused_samples(device, kernel):
        torch.library.opcheck(op.default, args)


@pytest.mark.parametrize("device,backend", all_backend_params())
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_torch_compile_fullgraph(device, backend, reduction):
    torch._dynamo.reset()
    counts = torch.tensor([500.0, 50.0, 5.0, 1.0, 20.0])
    h, w, b = make_linear(6, 4, 5, device)
    t = torch.tensor([0, 1, 2, 3, 4, -100], device=device)
    y = make_multilabel(6, 5, device, soft=True)

    def loss_fn(hh, ww, bb):
        ce = flce(hh, ww, t, bb, class_counts=counts, beta=0.99, logit_adjust_tau=1.0, reduction=reduction,
                  chunk_rows=4, backend=backend)
        bce = flbce(hh, ww, y, bb, class_counts=counts, beta=0.9, reduction=reduction, chunk_rows=4, backend=backend)
        return ce.sum() + bce.sum()

    compiled = torch.compile(loss_fn, fullgraph=True)
    eager = loss_and_grads(loss_fn, h, w, b)
    got = loss_and_grads(compiled, h, w, b)
    assert_all_close(got, eager, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------- nn modules

def test_ce_module_owns_a_linear_and_matches_the_plain_pair():
    torch.manual_seed(0)
    counts = [300, 100, 30, 10, 3]
    crit = pycmlt.nn.FusedLinearClassBalancedCrossEntropy(8, 5, class_counts=counts, beta=0.99, chunk_rows=3)
    assert {n for n, _ in crit.named_parameters()} == {"linear.weight", "linear.bias"}
    assert {n for n, _ in crit.named_buffers()} == {"class_counts", "class_weight"}
    assert crit.weight is crit.linear.weight and crit.bias is crit.linear.bias
    h, t = torch.randn(10, 8), torch.randint(0, 5, (10,))
    loss = crit(h, t)
    loss.backward()
    ref_lin = torch.nn.Linear(8, 5)
    ref_lin.load_state_dict(crit.linear.state_dict())
    ref = pycmlt.nn.ClassBalancedCrossEntropy(counts, beta=0.99, backend="torch")(ref_lin(h), t)
    ref.backward()
    torch.testing.assert_close(loss, ref, **TOL)
    torch.testing.assert_close(crit.linear.weight.grad, ref_lin.weight.grad, **TOL)
    torch.testing.assert_close(crit.linear.bias.grad, ref_lin.bias.grad, **TOL)
    torch.testing.assert_close(crit.logits(h), ref_lin(h))
    clone = pycmlt.nn.FusedLinearClassBalancedCrossEntropy(8, 5, class_counts=counts, beta=0.99)
    clone.load_state_dict(crit.state_dict())
    torch.testing.assert_close(clone(h, t), loss.detach())
    with pytest.raises(ValueError, match="expected length 5"):
        pycmlt.nn.FusedLinearClassBalancedCrossEntropy(8, 5, class_counts=[1, 2, 3], beta=0.9)


def test_module_from_linear_shares_parameters():
    fc = torch.nn.Linear(6, 9, bias=False)
    crit = pycmlt.nn.FusedLinearClassBalancedBCE.from_linear(fc, pos_weight=torch.full((9,), 2.0), chunk_rows=4)
    assert crit.linear is fc and crit.bias is None
    h, y = torch.randn(7, 6), make_multilabel(7, 9, "cpu")
    crit(h, y).backward()
    fc2 = torch.nn.Linear(6, 9, bias=False)
    fc2.load_state_dict(fc.state_dict())
    F.binary_cross_entropy_with_logits(fc2(h), y, pos_weight=torch.full((9,), 2.0)).backward()
    torch.testing.assert_close(fc.weight.grad, fc2.weight.grad, **TOL)
    with pytest.raises(TypeError, match="linear must be an nn.Linear"):
        pycmlt.nn.FusedLinearClassBalancedCrossEntropy(6, 9, linear=torch.nn.Conv1d(6, 9, 1))
