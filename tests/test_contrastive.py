"""cross_modal_contrastive: every backend against the torch reference (which materialises S), forward
and gradients of a, b and logit_scale; shapes, edge cases, errors, custom-op checks, torch.compile,
the memory contract of the cpu backend, and the nn module."""
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import all_backend_params, fast_backend_params
from hypothesis import given, settings
from hypothesis import strategies as st
from tolerances import assert_no_worse_than_torch

import pycmlt
from pycmlt.ops import contrastive_reference, cross_modal_contrastive as cmc

REDUCTIONS = ["mean", "sum", "none"]
TOL = dict(rtol=2e-5, atol=2e-6)


def features(n, d, device="cpu", dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g) * 2).to(device=device, dtype=dtype)


def labels_for(n, classes, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed + 100)
    return torch.randint(0, classes, (n,), generator=g).to(device)


def loss_and_grads(fn, a, b, logit_scale=1.7):
    """(loss, d/da, d/db, d/dlogit_scale) with a fixed random upstream gradient for reduction='none'."""
    a = a.detach().clone().requires_grad_(True)
    b = b.detach().clone().requires_grad_(True)
    scale = torch.tensor(float(logit_scale), device=a.device, requires_grad=True)
    loss = fn(a, b, scale)
    g = torch.Generator().manual_seed(7)
    upstream = (torch.rand(loss.shape, generator=g) + 0.5).to(loss) if loss.dim() else torch.tensor(1.3).to(loss)
    ga, gb, gs = torch.autograd.grad(loss, (a, b, scale), upstream)
    return loss.detach(), ga, gb, gs


def assert_close_all(ours, ref, rtol=TOL["rtol"], atol=TOL["atol"]):
    """fp32 comparison; the absolute tolerance scales with the size of the reference tensor."""
    names = ("loss", "grad a", "grad b", "grad logit_scale")
    for name, x, y in zip(names, ours, ref):
        scale = max(1.0, y.abs().max().item()) if y.numel() else 1.0
        torch.testing.assert_close(x, y, rtol=rtol, atol=atol * scale, msg=lambda m: f"{name}: {m}")


# (N, M, kwargs builder): CLIP, supervised with and without class-balanced weights, one direction, no normalisation
CASES = {
    "clip": (37, 37, lambda dev: dict()),
    "clip-one-direction": (37, 37, lambda dev: dict(symmetric=False)),
    "supervised": (37, 29, lambda dev: dict(labels=labels_for(37, 5, dev), b_labels=labels_for(29, 6, dev, 1))),
    "supervised-shared-labels": (33, 33, lambda dev: dict(labels=labels_for(33, 4, dev))),
    "supervised-class-balanced": (37, 29, lambda dev: dict(labels=labels_for(37, 5, dev), b_labels=labels_for(29, 5, dev, 2),
                                                          class_counts=[500, 120, 30, 8, 2], beta=0.99)),
    "supervised-one-direction-raw": (21, 40, lambda dev: dict(labels=labels_for(21, 3, dev), b_labels=labels_for(40, 3, dev, 3),
                                                             symmetric=False, normalize=False)),
}


@pytest.mark.parametrize("device,backend", fast_backend_params())
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", list(CASES))
def test_matches_reference_fp32(device, backend, reduction, case):
    n, m, make = CASES[case]
    kw = make(device)
    a, b = features(n, 19, device), features(m, 19, device, seed=1)
    if kw.get("normalize") is False:
        a, b = a * 0.3, b * 0.3
    ours = loss_and_grads(lambda x, y, s: cmc(x, y, logit_scale=s, reduction=reduction, backend=backend, **kw), a, b)
    ref = loss_and_grads(lambda x, y, s: cmc(x, y, logit_scale=s, reduction=reduction, backend="torch", **kw), a, b)
    assert_close_all(ours, ref)


def test_reference_is_clip_and_supervised_by_definition():
    """The torch backend against closed forms: CLIP = mean of the two cross-entropies; supervised
    with one positive per row = the same; class-balanced weights = weighted mean."""
    a, b = features(12, 8), features(12, 8, seed=1)
    s = math.exp(2.0) * F.normalize(a, dim=1) @ F.normalize(b, dim=1).T
    target = torch.arange(12)
    clip = 0.5 * (F.cross_entropy(s, target) + F.cross_entropy(s.T, target))
    torch.testing.assert_close(cmc(a, b, logit_scale=2.0, backend="torch"), clip)
    torch.testing.assert_close(cmc(a, b, logit_scale=2.0, labels=target, backend="torch"), clip)
    lab = torch.tensor([0, 0, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3])
    pos = (lab[:, None] == lab[None, :]).float()
    row = -(s.log_softmax(1) * pos).sum(1) / pos.sum(1)
    col = -(s.log_softmax(0) * pos).sum(0) / pos.sum(0)
    torch.testing.assert_close(cmc(a, b, logit_scale=2.0, labels=lab, backend="torch"), 0.5 * (row.mean() + col.mean()))
    w = pycmlt.class_balanced_weights([100, 40, 10, 3], 0.9)[lab]
    expected = 0.5 * ((w * row).sum() / w.sum() + (w * col).sum() / w.sum())
    got = cmc(a, b, logit_scale=2.0, labels=lab, class_counts=[100, 40, 10, 3], beta=0.9, backend="torch")
    torch.testing.assert_close(got, expected)
    none = cmc(a, b, logit_scale=2.0, labels=lab, reduction="none", backend="torch")
    assert none.shape == (24,)
    torch.testing.assert_close(none.sum(), cmc(a, b, logit_scale=2.0, labels=lab, reduction="sum", backend="torch"))


# ---------------------------------------------------------------------------- low precision

@pytest.mark.parametrize("device,backend", all_backend_params())
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("case", ["clip", "supervised-class-balanced"])
def test_low_precision_no_worse_than_pytorch(device, backend, dtype, case):
    n, m, make = CASES[case]
    kw = make(device)
    weights = None
    if "class_counts" in kw:
        weights = pycmlt.class_balanced_weights(kw.pop("class_counts"), kw.pop("beta")).to(device)
    a, b = features(n, 24, device, dtype), features(m, 24, device, dtype, seed=1)
    labels, b_labels = kw.get("labels"), kw.get("b_labels")

    def ours(x, y, s):
        return pycmlt.ops.contrastive_with_class_tensors(x, y, logit_scale=s, class_weight=weights, backend=backend,
                                                         **kw)

    def ref(upcast):
        return lambda x, y, s: contrastive_reference(x, y, labels, b_labels, s, class_weight=weights, upcast=upcast)

    got = loss_and_grads(ours, a, b)
    truth = loss_and_grads(ref(True), a.float(), b.float())
    lowp = loss_and_grads(ref(False), a, b)
    assert got[0].dtype == dtype and got[1].dtype == dtype and got[2].dtype == dtype
    for k, what in enumerate(("loss", "grad a", "grad b")):
        assert_no_worse_than_torch(got[k], lowp[k].to(dtype), truth[k], what)
    torch.testing.assert_close(got[3], truth[3], rtol=2e-2, atol=2e-2)


# ---------------------------------------------------------------------------- shapes and edge cases

@pytest.mark.parametrize("device,backend", fast_backend_params())
@pytest.mark.parametrize("n,m,d", [(1, 1, 5), (1, 7, 3), (6, 1, 130), (3, 5, 1)], ids=str)
def test_tiny_shapes(device, backend, n, m, d):
    a, b = features(n, d, device), features(m, d, device, seed=1)
    la, lb = labels_for(n, 2, device), labels_for(m, 2, device, 1)
    kw = dict(labels=la, b_labels=lb)
    # D = 1: the gradient through the normalisation is 0 up to rounding noise of the projection
    atol = 1e-4 if d == 1 else TOL["atol"]
    for red in REDUCTIONS:
        ours = loss_and_grads(lambda x, y, s: cmc(x, y, logit_scale=s, reduction=red, backend=backend, **kw), a, b)
        ref = loss_and_grads(lambda x, y, s: cmc(x, y, logit_scale=s, reduction=red, backend="torch", **kw), a, b)
        assert_close_all(ours, ref, atol=atol)
    if n == m:
        ours = loss_and_grads(lambda x, y, s: cmc(x, y, logit_scale=s, backend=backend), a, b)
        ref = loss_and_grads(lambda x, y, s: cmc(x, y, logit_scale=s, backend="torch"), a, b)
        assert_close_all(ours, ref, atol=atol)


@pytest.mark.parametrize("case", ["clip", "supervised"])
def test_cpu_tiles_that_do_not_divide(case):
    """Shapes across the cpu kernel's 256 x 512 tiles and its per-thread chunks."""
    if "cpu" not in pycmlt.ops.available_backends("cpu"):
        pytest.skip("C++ extension not built")
    n, m = (517, 517) if case == "clip" else (300, 1100)
    kw = {} if case == "clip" else dict(labels=labels_for(n, 9), b_labels=labels_for(m, 9, seed=2))
    a, b = features(n, 7), features(m, 7, seed=1)
    ours = loss_and_grads(lambda x, y, s: cmc(x, y, logit_scale=s, backend="cpu", **kw), a, b, 3.0)
    ref = loss_and_grads(lambda x, y, s: cmc(x, y, logit_scale=s, backend="torch", **kw), a, b, 3.0)
    assert_close_all(ours, ref, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("device,backend", all_backend_params())
def test_all_positive_and_no_positive_rows(device, backend):
    a, b = features(9, 6, device), features(7, 6, device, seed=1)
    # every pair positive: the loss is log M - mean_j S_ij per row (finite), all anchors count
    same = torch.zeros(9, dtype=torch.long, device=device)
    out = cmc(a, b, labels=same, b_labels=same[:7], backend=backend, return_stats=True)
    assert torch.isfinite(out.loss) and out.rows_without_positive == 0 and out.cols_without_positive == 0
    # rows 0..2 have label 5, which no column has: excluded and counted
    la = torch.tensor([5, 5, 5, 0, 1, 0, 1, 2, 2], device=device)
    lb = torch.tensor([0, 1, 2, 3, 0, 1, 2], device=device)
    for red in REDUCTIONS:
        kw = dict(labels=la, b_labels=lb, reduction=red)
        ours = loss_and_grads(lambda x, y, s: cmc(x, y, logit_scale=s, backend=backend, **kw), a, b)
        ref = loss_and_grads(lambda x, y, s: cmc(x, y, logit_scale=s, backend="torch", **kw), a, b)
        assert_close_all(ours, ref)
        assert all(torch.isfinite(t).all() for t in ours)
        if red == "none":
            assert torch.equal(ours[0][:3], torch.zeros(3, device=device))
    stats = cmc(a, b, labels=la, b_labels=lb, backend=backend, return_stats=True)
    assert int(stats.rows_without_positive) == 3 and int(stats.cols_without_positive) == 1  # label 3
    # nothing in common: loss 0 and zero gradients, never NaN
    none_pos = loss_and_grads(lambda x, y, s: cmc(x, y, logit_scale=s, labels=torch.zeros(9, dtype=torch.long, device=device),
                                                  b_labels=torch.ones(7, dtype=torch.long, device=device), backend=backend), a, b)
    for t in none_pos:
        assert torch.equal(t, torch.zeros_like(t))


@pytest.mark.parametrize("device,backend", all_backend_params())
def test_zero_vectors_give_finite_results(device, backend):
    a, b = features(8, 5, device), features(8, 5, device, seed=1)
    a[2] = 0
    b[5] = 0
    ours = loss_and_grads(lambda x, y, s: cmc(x, y, logit_scale=s, backend=backend), a, b)
    assert all(torch.isfinite(t).all() for t in ours)
    ref = loss_and_grads(lambda x, y, s: contrastive_reference(x, y, None, None, s), a, b)
    # the gradient of a zero row is g / eps (F.normalize): compare relative to its size
    for x, y in zip(ours, ref):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5 * max(1.0, y.abs().max().item()))


@pytest.mark.parametrize("device,backend", fast_backend_params())
def test_float_logit_scale_only_a_requires_grad_and_no_grad(device, backend):
    a, b = features(10, 6, device), features(10, 6, device, seed=1)
    x = a.clone().requires_grad_(True)
    loss = cmc(x, b, logit_scale=2.5, backend=backend)
    loss.backward()
    ref_x = a.clone().requires_grad_(True)
    ref = cmc(ref_x, b, logit_scale=2.5, backend="torch")
    ref.backward()
    torch.testing.assert_close(loss, ref, **TOL)
    torch.testing.assert_close(x.grad, ref_x.grad, **TOL)
    with torch.no_grad():
        torch.testing.assert_close(cmc(a, b, backend=backend), cmc(a, b, backend="torch"), **TOL)


@pytest.mark.parametrize("device,backend", fast_backend_params())
def test_non_contiguous_and_mixed_dtype_inputs(device, backend):
    base = features(20, 30, device)
    a, b = base[::2, 3:14], base[1::2, 3:14]
    assert not a.is_contiguous()
    ours = loss_and_grads(lambda x, y, s: cmc(x[:, ::1].t().contiguous().t(), y, logit_scale=s, backend=backend), a, b)
    ref = loss_and_grads(lambda x, y, s: cmc(x, y, logit_scale=s, backend="torch"), a, b)
    assert_close_all(ours, ref)
    mixed = cmc(a.half(), b, backend=backend)
    assert mixed.dtype == torch.float32


@pytest.mark.parametrize("device,backend", fast_backend_params())
def test_retain_graph_backward_twice(device, backend):
    a = features(8, 4, device).requires_grad_(True)
    b = features(8, 4, device, seed=1)
    loss = cmc(a, b, backend=backend)
    (g1,) = torch.autograd.grad(loss, a, retain_graph=True)
    (g2,) = torch.autograd.grad(loss, a, torch.tensor(3.0, device=device))
    torch.testing.assert_close(3 * g1, g2)


# ---------------------------------------------------------------------------- errors

def test_bad_input_errors():
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    lab = torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError, match="same feature dimension"):
        cmc(a, torch.randn(4, 5))
    with pytest.raises(ValueError, match="same number of rows"):
        cmc(a, torch.randn(6, 3))
    with pytest.raises(ValueError, match=r"labels must have shape \[4\]"):
        cmc(a, b, labels=torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"b_labels must have shape \[6\]"):
        cmc(a, torch.randn(6, 3), labels=lab, b_labels=lab)
    with pytest.raises(ValueError, match=r"labels \(used for b since b_labels is None\) must have shape \[6\]"):
        cmc(a, torch.randn(6, 3), labels=lab)
    with pytest.raises(ValueError, match="b_labels needs labels"):
        cmc(a, b, b_labels=lab)
    with pytest.raises(TypeError, match="a must be a floating-point"):
        cmc(a.long(), b)
    with pytest.raises(TypeError, match="b must be a floating-point"):
        cmc(a, b.int())
    with pytest.raises(TypeError, match="labels must be an integer"):
        cmc(a, b, labels=lab.float())
    with pytest.raises(ValueError, match="b is on meta but a is on cpu"):
        cmc(a, b.to("meta"))
    with pytest.raises(ValueError, match="labels is on meta"):
        cmc(a, b, labels=lab.to("meta"))
    with pytest.raises(ValueError, match="2-D"):
        cmc(a[0], b)
    with pytest.raises(ValueError, match="beta needs class_counts"):
        cmc(a, b, labels=lab, beta=0.9)
    with pytest.raises(ValueError, match="pass beta too"):
        cmc(a, b, labels=lab, class_counts=[3, 4])
    with pytest.raises(ValueError, match="need labels"):
        cmc(a, b, class_counts=[3, 4], beta=0.9)
    with pytest.raises(ValueError, match=r"labels\[1\] = 2 is out of range"):
        cmc(a, b, labels=torch.tensor([0, 2, 0, 1]), class_counts=[3, 4], beta=0.9)
    with pytest.raises(ValueError, match="logit_scale must be a scalar"):
        cmc(a, b, logit_scale=torch.ones(2))
    with pytest.raises(ValueError, match="logit_scale must be finite"):
        cmc(a, b, logit_scale=float("inf"))
    with pytest.raises(ValueError, match="reduction must be one of"):
        cmc(a, b, reduction="avg")
    with pytest.raises(ValueError, match="backend must be one of"):
        cmc(a, b, backend="gpu")
    with pytest.raises(TypeError, match="use backend='torch'"):
        cmc(a.double(), b.double(), backend="cpu")
    with pytest.raises(RuntimeError, match="init_process_group"):
        cmc(a, b, gather=True)


def test_float64_runs_on_the_reference():
    a, b = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    assert cmc(a, b).dtype == torch.float64


# ---------------------------------------------------------------------------- custom ops, compile

def _stats_op(backend):
    return (torch.ops.pycmlt.contrastive_stats_triton if backend == "triton" else torch.ops.pycmlt.contrastive_stats).default


def _grad_op(backend):
    return (torch.ops.pycmlt.contrastive_grad_triton if backend == "triton" else torch.ops.pycmlt.contrastive_grad).default


@pytest.mark.parametrize("device,backend", fast_backend_params())
def test_opcheck(device, backend):
    a = features(7, 5, device).requires_grad_(True)
    b = features(6, 5, device, seed=1).requires_grad_(True)
    scale = torch.tensor(1.2, device=device, requires_grad=True)
    la, lb = labels_for(7, 3, device), labels_for(6, 3, device, 1)
    sq = features(6, 5, device, seed=2).requires_grad_(True)
    samples = [(a, b, scale, la, lb, 0, True, True), (a, b, scale, la, lb, 0, False, False),
               (sq, b, scale, None, None, 0, True, True), (sq.detach().bfloat16(), b.detach().bfloat16(), scale, None, None, 2, True, True)]
    for args in samples:
        torch.library.opcheck(_stats_op(backend), args)
    n, m = 7, 6
    vec = lambda k, s: features(1, k, device, seed=s)[0]  # noqa: E731
    grad_args = (a.detach(), b.detach(), scale.detach(), la, lb, 0, True, vec(n, 3), vec(m, 4), vec(n, 5), vec(n, 6),
                 vec(m, 7), None)
    torch.library.opcheck(_grad_op(backend), grad_args, test_utils=("test_schema", "test_faketensor"))


@pytest.mark.parametrize("device,backend", all_backend_params())
def test_torch_compile_fullgraph(device, backend):
    torch._dynamo.reset()
    counts = torch.tensor([50.0, 20.0, 5.0, 1.0])

    def loss_fn(x, y, s, lab):
        return cmc(x, y, labels=lab, logit_scale=s, class_counts=counts, beta=0.9, backend=backend)

    compiled = torch.compile(loss_fn, fullgraph=True)
    a, b = features(9, 6, device), features(9, 6, device, seed=1)
    lab = labels_for(9, 4, device)
    eager = loss_and_grads(lambda x, y, s: loss_fn(x, y, s, lab), a, b)
    got = loss_and_grads(lambda x, y, s: compiled(x, y, s, lab), a, b)
    assert_close_all(got, eager)


# ---------------------------------------------------------------------------- memory contract

def test_cpu_backend_never_materialises_the_similarity():
    """Peak extra memory of forward + backward at N = M = 4096 stays far below one N x M fp32 matrix,
    while the reference (checked to validate the probe) needs at least that much."""
    from benchmarks.harness import cpu_peak_tracking_available, peak_memory_bytes

    if "cpu" not in pycmlt.ops.available_backends("cpu") or not cpu_peak_tracking_available():
        pytest.skip("needs the C++ extension and Linux /proc peak-RSS tracking")
    n, d = 4096, 32
    a = features(n, d).requires_grad_(True)
    b = features(n, d, seed=1).requires_grad_(True)
    lab = labels_for(n, 50)
    cpu = torch.device("cpu")

    def run(backend):
        return lambda: torch.autograd.grad(cmc(a, b, labels=lab, backend=backend), (a, b))

    run("cpu")()  # warm-up (thread pools, first-touch of allocator pages)
    ours = min(peak_memory_bytes(run("cpu"), cpu) for _ in range(2))
    matrix = n * n * 4
    assert ours < 0.15 * matrix, f"cpu backend used {ours / 2**20:.1f} MB, an N x M matrix is {matrix / 2**20:.0f} MB"
    reference = peak_memory_bytes(run("torch"), cpu)
    assert reference >= matrix, f"the probe should see the reference's N x M matrices, got {reference / 2**20:.1f} MB"


# ---------------------------------------------------------------------------- module

def test_module_learnable_scale_clamp_and_buffers():
    crit = pycmlt.nn.CrossModalContrastiveLoss([300, 30, 3], beta=0.99)
    assert {n for n, _ in crit.named_parameters()} == {"logit_scale"}
    assert {n for n, _ in crit.named_buffers()} == {"class_counts", "class_weight"}
    torch.testing.assert_close(crit.logit_scale.detach(), torch.tensor(math.log(1 / 0.07)))
    a, b = features(6, 4), features(6, 4, seed=1)
    lab = torch.tensor([0, 1, 2, 0, 1, 2])
    loss = crit(a, b, lab)
    torch.testing.assert_close(loss, cmc(a, b, labels=lab, class_counts=[300, 30, 3], beta=0.99))
    loss.backward()
    assert crit.logit_scale.grad is not None and crit.logit_scale.grad != 0
    # above the cap the forward uses log 100 (scale 100) and the parameter gets no gradient
    with torch.no_grad():
        crit.logit_scale.fill_(7.0)
    crit.logit_scale.grad = None
    capped = crit(a, b, lab)
    torch.testing.assert_close(capped, cmc(a, b, labels=lab, logit_scale=math.log(100), class_counts=[300, 30, 3], beta=0.99))
    capped.backward()
    assert crit.logit_scale.grad == 0
    crit.clamp_()
    torch.testing.assert_close(crit.logit_scale.detach(), torch.tensor(math.log(100.0)))
    assert abs(crit.temperature - 0.01) < 1e-6
    out = crit(a, b, lab, return_stats=True)
    assert isinstance(out, pycmlt.ops.ContrastiveOutput)
    fixed = pycmlt.nn.CrossModalContrastiveLoss(logit_scale=2.0, learnable_scale=False, symmetric=False)
    assert not list(fixed.parameters())
    torch.testing.assert_close(fixed(a, b), cmc(a, b, logit_scale=2.0, symmetric=False))
    clone = pycmlt.nn.CrossModalContrastiveLoss([300, 30, 3], beta=0.99)
    clone.load_state_dict(crit.state_dict())
    assert "temperature" in repr(crit)
    with pytest.raises(ValueError, match="both class_counts and beta"):
        pycmlt.nn.CrossModalContrastiveLoss([3, 4])


# ---------------------------------------------------------------------------- property test (cpu kernel)

@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 40), m=st.integers(1, 40), d=st.integers(1, 20), classes=st.integers(1, 6),
       symmetric=st.booleans(), normalize=st.booleans(), scale=st.floats(-1.0, 4.6),
       reduction=st.sampled_from(REDUCTIONS), seed=st.integers(0, 2**16))
def test_cpu_kernel_property(n, m, d, classes, symmetric, normalize, scale, reduction, seed):
    if "cpu" not in pycmlt.ops.available_backends("cpu"):
        pytest.skip("C++ extension not built")
    a, b = features(n, d, seed=seed), features(m, d, seed=seed + 1)
    kw = dict(labels=labels_for(n, classes, seed=seed), b_labels=labels_for(m, classes, seed=seed + 1),
              symmetric=symmetric, normalize=normalize, reduction=reduction)
    if not normalize:
        a, b = a * 0.2, b * 0.2
    ours = loss_and_grads(lambda x, y, s: cmc(x, y, logit_scale=s, backend="cpu", **kw), a, b, scale)
    # Ground truth in float64: the fp32 reference's own rounding, amplified by 1 / |row| through the
    # normalisation, can exceed atol (e.g. D=1, where the exact gradient of normalize is zero).
    ref = loss_and_grads(lambda x, y, s: contrastive_reference(x, y, logit_scale=s, upcast=False, **kw),
                         a.double(), b.double(), scale)
    # Like flash attention, the kernel keeps lse_i = max_i + log(sum_i) in fp32 and forms p_ij = exp(S_ij - lse_i),
    # so p carries a relative error of eps * |S|max (|S|max = s |a| |b|); the gradients multiply it by s |b|
    # (or by S for logit_scale), and a gradient row sums max(N, M) such terms unless reduction='mean'
    # divides them back down. Hence an absolute tolerance of eps * |S|max * max(1, |S|max) * rows.
    norm = lambda x: max(1.0, x.norm(dim=1).max().item()) if not normalize else 1.0  # noqa: E731
    s_max = math.exp(scale) * norm(a) * norm(b)
    rows = max(n, m) if reduction != "mean" else 1
    atol = max(1e-5, torch.finfo(torch.float32).eps * s_max * max(1.0, s_max) * rows)
    assert_close_all(ours, tuple(t.float() for t in ref), rtol=1e-4, atol=atol)
