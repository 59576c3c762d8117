"""Inputs on which the backends used to disagree or fail obscurely: strided targets, large logit
scales, D = 0, int32 targets, +inf logits, NaN weights of unused classes, meta tensors, bad
class_counts / chunk_rows, N = 0 gradients, out-of-range targets under torch.compile."""
import pytest
import torch
import torch.nn.functional as F
from conftest import fast_backend_params

from pycmlt import ops

CPU_BACKENDS = ops.available_backends("cpu")
FAST = [p for p in fast_backend_params() if p.values[0] == "cpu"]
ALL_CPU = [pytest.param(b, id=b) for b in CPU_BACKENDS]


def _needs(backend):
    if backend not in CPU_BACKENDS:
        pytest.skip(f"backend {backend!r} is not available here")


# ----------------------------------------------------------------------------- item 2: target strides

def _strided_targets():
    g = torch.Generator().manual_seed(3)
    base = torch.randint(0, 5, (16,), generator=g)
    return {"sliced": base[::2], "expanded": torch.tensor(3).expand(8),
            "column": torch.randint(0, 5, (8, 3), generator=g)[:, 1]}


@pytest.mark.parametrize("layout", ["sliced", "expanded", "column"])
@pytest.mark.parametrize("backend", ALL_CPU)
def test_cross_entropy_reads_target_strides(backend, layout):
    target = _strided_targets()[layout]
    assert not target.is_contiguous()
    x = torch.randn(8, 5, generator=torch.Generator().manual_seed(0), requires_grad=True)
    loss = ops.class_balanced_cross_entropy(x, target, backend=backend)
    (grad,) = torch.autograd.grad(loss, x)
    want_x = x.detach().clone().requires_grad_(True)
    want = F.cross_entropy(want_x, target.contiguous())
    want.backward()
    torch.testing.assert_close(loss, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, want_x.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layout", ["sliced", "expanded"])
@pytest.mark.parametrize("backend", ALL_CPU)
def test_fused_linear_cross_entropy_reads_target_strides(backend, layout):
    target = _strided_targets()[layout]
    g = torch.Generator().manual_seed(1)
    h, w = torch.randn(8, 4, generator=g), torch.randn(5, 4, generator=g)
    got = ops.fused_linear_class_balanced_cross_entropy(h, w, target, chunk_rows=3, backend=backend)
    torch.testing.assert_close(got, F.cross_entropy(h @ w.T, target.contiguous()), rtol=1e-5, atol=1e-6)


@pytest.mark.skipif("triton" not in CPU_BACKENDS, reason="needs Triton (interpreter)")
def test_triton_cross_entropy_reads_target_strides_compiled():
    target = _strided_targets()["sliced"]
    x = torch.randn(8, 5, generator=torch.Generator().manual_seed(0))
    fn = torch.compile(lambda z, t: ops.class_balanced_cross_entropy(z, t, backend="triton"), backend="aot_eager",
                       fullgraph=True)
    torch.testing.assert_close(fn(x, target), F.cross_entropy(x, target.contiguous()), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- item 3: contrastive overflow

@pytest.mark.parametrize("logit_scale", [24.0, 25.0, 50.0, 80.0])
@pytest.mark.parametrize("backend", ALL_CPU)
def test_contrastive_stays_finite_for_large_logit_scales(backend, logit_scale):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(8, 16, generator=g, requires_grad=True)
    b = torch.randn(8, 16, generator=g, requires_grad=True)
    loss = ops.cross_modal_contrastive(a, b, logit_scale=logit_scale, backend=backend)
    loss.backward()
    assert torch.isfinite(loss), f"loss {loss.item()} at logit_scale {logit_scale}"
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()
    # float64 truth: the loss is ~exp(logit_scale) large; fp32 keeps ~7 digits of it
    truth = ops.contrastive_reference(a.detach().double(), b.detach().double(), logit_scale=logit_scale)
    assert abs(loss.item() - truth.item()) <= 1e-4 * abs(truth.item())


# ----------------------------------------------------------------------------- item 4: consistency and errors

@pytest.mark.parametrize("backend", ALL_CPU)
def test_alignment_with_zero_features(backend):
    a = torch.randn(3, 0, requires_grad=True)
    got = ops.alignment_loss(a, torch.randn(3, 0), reduction="none", backend=backend)
    torch.testing.assert_close(got, torch.ones(3))  # 1 - cos with two zero vectors (F.normalize gives 0)
    assert ops.alignment_loss(torch.randn(2, 0), torch.randn(2, 0), kind="mse", backend=backend).item() == 0.0


@pytest.mark.parametrize("backend", ALL_CPU)
def test_fused_linear_with_zero_features(backend):
    h, w, b = torch.randn(3, 0), torch.randn(4, 0), torch.tensor([0.0, 1.0, 2.0, 3.0])
    t = torch.tensor([0, 1, 3])
    got = ops.fused_linear_class_balanced_cross_entropy(h, w, t, b, backend=backend)
    torch.testing.assert_close(got, F.cross_entropy(b.expand(3, 4), t), rtol=1e-5, atol=1e-6)
    bce = ops.fused_linear_class_balanced_bce(h, w, torch.ones(3, 4), b, backend=backend)
    torch.testing.assert_close(bce, F.binary_cross_entropy_with_logits(b.expand(3, 4), torch.ones(3, 4)))


def test_class_counts_string_is_a_type_error():
    x, t = torch.randn(4, 5), torch.tensor([0, 1, 2, 3])
    with pytest.raises(TypeError, match="class_counts must be a tensor or a sequence of numbers, got a str"):
        ops.class_balanced_cross_entropy(x, t, class_counts="12345", beta=0.9)


def test_cross_entropy_on_meta_tensors_works_like_pytorch():
    x, t = torch.randn(4, 5, device="meta"), torch.zeros(4, dtype=torch.long, device="meta")
    got = ops.class_balanced_cross_entropy(x, t, class_counts=torch.ones(5, device="meta"), beta=0.9)
    assert got.device.type == "meta" and got.shape == F.cross_entropy(x, t).shape
    assert ops.class_balanced_cross_entropy(x, t, reduction="none").shape == (4,)


@pytest.mark.parametrize("backend", ALL_CPU)
def test_int32_targets_accepted_by_every_backend(backend):
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0, 4, 2, 1])
    want = F.cross_entropy(x, t)
    torch.testing.assert_close(ops.class_balanced_cross_entropy(x, t.int(), backend=backend), want)
    h, w = torch.randn(4, 3), torch.randn(5, 3)
    torch.testing.assert_close(ops.fused_linear_class_balanced_cross_entropy(h, w, t.int(), backend=backend),
                               F.cross_entropy(h @ w.T, t), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("chunk_rows,error", [(0, ValueError), (-3, ValueError), (2.5, TypeError), (True, TypeError)])
@pytest.mark.parametrize("backend", ALL_CPU)
def test_bad_chunk_rows_rejected_by_every_backend(backend, chunk_rows, error):
    h, w, t = torch.randn(3, 2), torch.randn(4, 2), torch.tensor([0, 1, 2])
    with pytest.raises(error, match="chunk_rows must be a positive int"):
        ops.fused_linear_class_balanced_cross_entropy(h, w, t, chunk_rows=chunk_rows, backend=backend)
    with pytest.raises(error, match="chunk_rows must be a positive int"):
        ops.fused_linear_class_balanced_bce(h, w, torch.zeros(3, 4), chunk_rows=chunk_rows, backend=backend)


@pytest.mark.parametrize("reduction", ["sum", "mean", "none"])
@pytest.mark.parametrize("backend", ALL_CPU)
def test_fused_linear_hidden_grad_for_zero_rows(backend, reduction):
    h = torch.randn(0, 2, requires_grad=True)
    w = torch.randn(4, 2, requires_grad=True)
    loss = ops.fused_linear_class_balanced_cross_entropy(h, w, torch.zeros(0, dtype=torch.long),
                                                         reduction=reduction, backend=backend)
    loss.sum().backward()
    assert h.grad is not None and h.grad.shape == (0, 2)
    assert w.grad is not None and w.grad.shape == (4, 2)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("backend", ALL_CPU)
def test_nan_weight_of_an_unused_class_as_pytorch(backend, smoothing):
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0, 1, 2, 0])
    w = torch.tensor([1.0, 2.0, 3.0, float("nan"), 1.0])
    xs = [x.clone().requires_grad_(True) for _ in range(2)]
    got = ops.class_balanced_cross_entropy(xs[0], t, class_weight=w, label_smoothing=smoothing, backend=backend)
    want = F.cross_entropy(xs[1], t, weight=w, label_smoothing=smoothing)
    got.backward()
    want.backward()
    torch.testing.assert_close(got, want, equal_nan=True)
    torch.testing.assert_close(xs[0].grad, xs[1].grad, equal_nan=True)
    if smoothing == 0.0:
        assert torch.isfinite(xs[0].grad).all()


@pytest.mark.parametrize("backend", ALL_CPU)
def test_positive_infinite_logit_as_pytorch(backend):
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    x[0, 1] = float("inf")
    x[2, 2] = float("-inf")
    t = torch.tensor([0, 1, 2, 3])
    got = ops.class_balanced_cross_entropy(x, t, reduction="none", backend=backend)
    torch.testing.assert_close(got, F.cross_entropy(x, t, reduction="none"), equal_nan=True)


def test_cuda_backends_not_listed_without_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert ops.available_backends("cuda") == ["torch"]


@pytest.mark.skipif("triton" not in CPU_BACKENDS, reason="needs Triton (interpreter)")
@pytest.mark.parametrize("op", ["cross_entropy", "fused_linear"])
def test_out_of_range_target_raises_under_compile_with_triton(op):
    x, h, w = torch.randn(4, 5), torch.randn(4, 3), torch.randn(5, 3)
    bad = torch.tensor([0, 1, 9, 2])
    if op == "cross_entropy":
        fn = torch.compile(lambda t: ops.class_balanced_cross_entropy(x, t, backend="triton"), backend="aot_eager")
    else:
        fn = torch.compile(lambda t: ops.fused_linear_class_balanced_cross_entropy(h, w, t, backend="triton"),
                           backend="aot_eager")
    with pytest.raises(ValueError, match=r"target\[2\] = 9 is out of range"):
        fn(bad)


@pytest.mark.skipif("cpu" not in ops.available_backends("cpu"), reason="needs the C++ extension")
def test_large_cpu_outputs_with_huge_page_advice_are_correct():
    """Gradients of 32 MiB and more are allocated with madvise(MADV_HUGEPAGE) (csrc/cpu/empty_output.h)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1024, 8192, generator=g, requires_grad=True)  # fp32 [1024, 8192]: exactly 32 MiB
    t = torch.randint(0, 8192, (1024,), generator=g)
    (grad,) = torch.autograd.grad(ops.class_balanced_cross_entropy(x, t, backend="cpu"), x)
    (expected,) = torch.autograd.grad(F.cross_entropy(x, t), x)
    torch.testing.assert_close(grad, expected)
    y = (torch.rand(1024, 8192, generator=g) < 0.1).float()
    (grad,) = torch.autograd.grad(ops.class_balanced_bce(x, y, backend="cpu"), x)
    (expected,) = torch.autograd.grad(F.binary_cross_entropy_with_logits(x, y), x)
    torch.testing.assert_close(grad, expected)
