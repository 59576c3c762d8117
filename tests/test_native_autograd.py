"""The C++ autograd kernels of pycmlt::cb_cross_entropy and pycmlt::cb_bce (csrc/autograd.cpp): first-order
gradients for every reduction and incoming gradient, dtypes, the create_graph path, the compute_grad=False
error; and the per-call caches of the Python wrappers (backend choice, class tensors from class_counts)."""
import pytest
import torch
import torch.nn.functional as F

from pycmlt import ops
from pycmlt.ops import _backend
from pycmlt.ops.cross_entropy import class_tensors

pytestmark = pytest.mark.skipif("cpu" not in ops.available_backends("cpu"), reason="the C++ extension is not built")

CE = torch.ops.pycmlt.cb_cross_entropy.default
BCE = torch.ops.pycmlt.cb_bce.default


def _inputs(dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 5, generator=g).to(dtype).requires_grad_(True)
    t = torch.tensor([0, 4, 2, -100, 1, 3, 2])
    return x, t


def test_grad_fn_is_the_cpp_node():
    x, t = _inputs()
    loss = CE(x, t, None, None, None, 1.0, 0.0, 0.0, -100, 1, True)[0]
    assert loss.grad_fn is not None and "CppNode" in loss.grad_fn.name()  # C++, not a Python Function
    assert "CppNode" in ops.class_balanced_bce(x, torch.rand(7, 5)).grad_fn.name()


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cross_entropy_first_order_with_any_incoming_gradient(reduction, dtype):
    x, t = _inputs(dtype)
    w, m, b = torch.rand(5) + 0.5, torch.rand(5) * 0.5, torch.randn(5)
    ours = ops.cross_entropy_with_class_tensors(x, t, class_weight=w, margins=m, logit_bias=b, scale=2.0,
                                                reduction=reduction)
    ref = ops.cross_entropy_reference(x, t, w, m, b, scale=2.0, reduction=reduction)
    v = torch.rand(ref.shape, generator=torch.Generator().manual_seed(3)) + 0.5  # never exactly 1
    got = torch.autograd.grad(ours.float(), x, v)[0]
    want = torch.autograd.grad(ref.float(), x, v)[0]
    tol = dict(rtol=2e-2, atol=2e-2) if dtype == torch.bfloat16 else dict(rtol=1e-5, atol=1e-6)
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), want.float(), **tol)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_bce_first_order_with_any_incoming_gradient(reduction):
    x, _ = _inputs()
    y = (torch.rand(7, 5, generator=torch.Generator().manual_seed(1)) < 0.4).float()
    ours = ops.class_balanced_bce(x, y, focal_gamma=1.5, reduction=reduction)
    ref = ops.bce_reference(x, y, focal_gamma=1.5, reduction=reduction)
    v = torch.rand(ref.shape, generator=torch.Generator().manual_seed(3)) + 0.5
    torch.testing.assert_close(torch.autograd.grad(ours, x, v)[0], torch.autograd.grad(ref, x, v)[0],
                               rtol=1e-5, atol=1e-6)


def test_unit_incoming_gradient_returns_the_kernel_gradient():
    x, t = _inputs()
    (grad,) = torch.autograd.grad(ops.class_balanced_cross_entropy(x, t), x)
    torch.testing.assert_close(grad, torch.autograd.grad(F.cross_entropy(x, t), x)[0], rtol=1e-5, atol=1e-6)
    assert not grad.requires_grad


def test_create_graph_goes_through_the_reference():
    x, t = _inputs()
    (grad,) = torch.autograd.grad(CE(x, t, None, None, None, 1.0, 0.0, 0.0, -100, 2, True)[0], x, create_graph=True)
    assert grad.requires_grad
    (want,) = torch.autograd.grad(F.cross_entropy(x, t, reduction="sum"), x, create_graph=True)
    torch.testing.assert_close(torch.autograd.grad(grad.pow(2).sum(), x)[0],
                               torch.autograd.grad(want.pow(2).sum(), x)[0], rtol=1e-4, atol=1e-5)


def test_compute_grad_false_then_backward_is_a_clear_error():
    x, t = _inputs()
    loss = CE(x, t, None, None, None, 1.0, 0.0, 0.0, -100, 1, False)[0]
    with pytest.raises(ValueError, match="compute_grad=False"):
        loss.backward()


def test_no_grad_mode_builds_no_graph():
    x, t = _inputs()
    with torch.no_grad():
        assert CE(x, t, None, None, None, 1.0, 0.0, 0.0, -100, 1, False)[0].grad_fn is None


def test_opcheck_bce_with_class_tensors():
    x, _ = _inputs()
    y = torch.rand(7, 5)
    for red in (0, 1, 2):
        torch.library.opcheck(BCE, (x, y, torch.rand(1, 5), torch.rand(7, 1), 0.5, red, True))


def test_backend_choice_follows_the_default():
    x, t = _inputs()
    assert _backend.resolve("auto", x, "op") == "cpu"
    with ops.use_backend("torch"):
        assert _backend.resolve("auto", x, "op") == "torch"
    assert _backend.resolve("auto", x, "op") == "cpu"
    with pytest.raises(ValueError, match="backend must be one of"):
        _backend.resolve("gpu", x, "op")


def test_class_tensors_are_derived_once_per_counts():
    counts = [50, 20, 5, 2, 1]
    first = class_tensors(5, torch.device("cpu"), class_counts=counts, beta=0.9, ldam_max_margin=0.5)
    again = class_tensors(5, torch.device("cpu"), class_counts=list(counts), beta=0.9, ldam_max_margin=0.5)
    assert all(a is b for a, b in zip(first, again))
    other = class_tensors(5, torch.device("cpu"), class_counts=counts, beta=0.99, ldam_max_margin=0.5)
    assert not torch.equal(other[0], first[0])


def test_class_tensors_follow_in_place_changes_of_a_counts_tensor():
    counts = torch.tensor([50.0, 20.0, 5.0, 2.0, 1.0])
    before = class_tensors(5, torch.device("cpu"), class_counts=counts, ldam_max_margin=0.5)[1]
    counts[0] = 1.0
    after = class_tensors(5, torch.device("cpu"), class_counts=counts, ldam_max_margin=0.5)[1]
    torch.testing.assert_close(after, ops.ldam_margins(counts, 0.5))
    assert not torch.equal(before, after)
    with pytest.raises(ValueError, match="class_counts must be > 0"):
        counts[1] = 0.0
        class_tensors(5, torch.device("cpu"), class_counts=counts, ldam_max_margin=0.5)
