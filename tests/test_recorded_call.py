"""The loss modules' eager fast path (pycmlt/ops/_recorded_call.py): a replayed call equals the general
path, and every change the record depends on (class tensors replaced or edited in place, the options,
the backend, dtype, shapes, bad inputs) takes the general path again, with its checks and errors."""
from __future__ import annotations

import copy
import pickle

import pytest
import torch
import torch.nn.functional as F

import pycmlt.nn as pnn
from pycmlt.ops import available_backends, use_backend
from pycmlt.schedules import DeferredReweighting

pytestmark = pytest.mark.skipif("cpu" not in available_backends("cpu"), reason="needs the C++ extension")

COUNTS = torch.tensor([50.0, 20.0, 5.0, 1.0])


def _ce_inputs(n=6, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g, requires_grad=True), torch.randint(0, c, (n,), generator=g)


def _bce_inputs(n=6, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g, requires_grad=True), (torch.rand(n, c, generator=g) < 0.4).float()


def _loss_and_grad(module, x, t):
    loss = module(x, t)
    (grad,) = torch.autograd.grad(loss, x)
    return loss.detach(), grad


def _recorded(module):
    found = module.__dict__.get("_recorded")
    return None if found is None else found.state


def test_ce_replay_equals_pytorch_and_is_recorded():
    x, t = _ce_inputs()
    module = pnn.ClassBalancedCrossEntropy()
    first = _loss_and_grad(module, x, t)
    assert _recorded(module) is not None, "a plain CPU call must be recorded"
    second = _loss_and_grad(module, x, t)
    expected = F.cross_entropy(x, t)
    (expected_grad,) = torch.autograd.grad(expected, x)
    for loss, grad in (first, second):
        torch.testing.assert_close(loss, expected.detach())
        torch.testing.assert_close(grad, expected_grad)


def test_bce_replay_equals_pytorch_with_weights():
    x, y = _bce_inputs()
    w = torch.tensor([1.0, 2.0, 0.5, 3.0])
    module = pnn.ClassBalancedBCE(weight=w, pos_weight=torch.tensor([2.0, 1.0, 1.0, 4.0]))
    _loss_and_grad(module, x, y)
    assert _recorded(module) is not None
    loss, grad = _loss_and_grad(module, x, y)
    expected = F.binary_cross_entropy_with_logits(x, y, weight=w, pos_weight=module.pos_weight)
    (expected_grad,) = torch.autograd.grad(expected, x)
    torch.testing.assert_close(loss, expected.detach())
    torch.testing.assert_close(grad, expected_grad)


@pytest.mark.parametrize("buffer_dtype", [torch.float32, torch.float64])
def test_class_weights_edited_in_place_are_seen(buffer_dtype):
    # float64 buffers reach the kernel as float32 copies: only the version guard sees the edit.
    x, t = _ce_inputs()
    module = pnn.ClassBalancedCrossEntropy(class_weight=torch.ones(4)).to(buffer_dtype)
    module(x, t)
    assert _recorded(module) is not None
    with torch.no_grad():
        module.class_weight.copy_(torch.tensor([4.0, 1.0, 1.0, 0.25]))
    torch.testing.assert_close(module(x, t), F.cross_entropy(x, t, weight=module.class_weight.float()))


def test_replaced_buffer_is_seen():
    x, y = _bce_inputs()
    module = pnn.ClassBalancedBCE(weight=torch.ones(4))
    module(x, y)
    module.weight = torch.tensor([0.0, 1.0, 2.0, 3.0])
    torch.testing.assert_close(module(x, y), F.binary_cross_entropy_with_logits(x, y, weight=module.weight))


def test_schedule_update_is_seen():
    x, t = _ce_inputs()
    module = pnn.ClassBalancedCrossEntropy(COUNTS, schedule=DeferredReweighting(COUNTS, start_epoch=2))
    module.update(0)
    before = module(x, t)
    module.update(3)
    after = module(x, t)
    torch.testing.assert_close(after, F.cross_entropy(x, t, weight=module.class_weight))
    assert not torch.equal(before, after)


def test_new_options_are_seen():
    x, t = _ce_inputs()
    module = pnn.ClassBalancedCrossEntropy()
    module(x, t)
    module.options = type(module.options)(1.0, 0.0, 0.0, -100, "sum")
    torch.testing.assert_close(module(x, t), F.cross_entropy(x, t, reduction="sum"))


def test_default_backend_change_is_seen():
    x, t = _ce_inputs()
    module = pnn.ClassBalancedCrossEntropy()
    module(x, t)
    with use_backend("torch"):
        loss = module(x, t)
        assert _recorded(module) is None, "the torch backend must not be replayed by the fused op"
    assert loss.grad_fn is not None and "CrossEntropyOp" not in type(loss.grad_fn).__name__
    torch.testing.assert_close(loss, F.cross_entropy(x, t))


def test_other_dtype_shape_and_reduction_none():
    module = pnn.ClassBalancedCrossEntropy(reduction="none")
    x, t = _ce_inputs()
    module(x, t)
    xb = x.detach().to(torch.bfloat16)
    out = module(xb, t)
    assert out.dtype == torch.bfloat16 and out.shape == (6,)
    torch.testing.assert_close(out.float(), F.cross_entropy(xb.float(), t, reduction="none"), atol=2e-2, rtol=2e-2)
    x5, t5 = _ce_inputs(n=5, c=3)
    torch.testing.assert_close(module(x5, t5), F.cross_entropy(x5, t5, reduction="none"))
    # 4-D logits take the general path and are reshaped as F.cross_entropy does.
    x4 = torch.randn(2, 3, 4, 5)
    t4 = torch.randint(0, 3, (2, 4, 5))
    torch.testing.assert_close(module(x4, t4), F.cross_entropy(x4, t4, reduction="none"))


def test_bad_inputs_after_a_recorded_call_get_the_general_errors():
    x, t = _ce_inputs()
    ce = pnn.ClassBalancedCrossEntropy()
    ce(x, t)
    with pytest.raises(ValueError, match="out of range"):
        ce(x, torch.tensor([0, 1, 2, 3, 4, 1]))
    with pytest.raises(ValueError, match="target must have shape"):
        ce(x, t[:3])
    with pytest.raises(TypeError, match="target must be an integer tensor"):
        ce(x, t.float())
    torch.testing.assert_close(ce(x, t.int()), F.cross_entropy(x, t))  # int32 targets: the general path

    xb, y = _bce_inputs()
    bce = pnn.ClassBalancedBCE()
    bce(xb, y)
    with pytest.raises(ValueError, match="target must have the shape of logits"):
        bce(xb, y[:, :2])
    with pytest.raises(ValueError, match="target requires grad"):
        bce(xb, y.clone().requires_grad_(True))
    torch.testing.assert_close(bce(xb, y.double()), F.binary_cross_entropy_with_logits(xb, y))


def test_no_grad_and_detached_logits():
    x, y = _bce_inputs()
    module = pnn.ClassBalancedBCE()
    module(x, y)
    with torch.no_grad():
        loss = module(x, y)
    assert loss.grad_fn is None
    torch.testing.assert_close(loss, F.binary_cross_entropy_with_logits(x, y).detach())


def test_copies_and_pickles_start_without_a_record():
    x, t = _ce_inputs()
    module = pnn.ClassBalancedCrossEntropy(COUNTS, ldam_max_margin=0.5, ldam_scale=10.0)
    expected = module(x, t)
    assert _recorded(module) is not None
    for clone in (copy.deepcopy(module), pickle.loads(pickle.dumps(module))):
        assert _recorded(clone) is None
        torch.testing.assert_close(clone(x, t), expected)


def test_compile_after_eager_calls():
    x, t = _ce_inputs()
    module = pnn.ClassBalancedCrossEntropy(COUNTS, beta=0.9)
    eager = module(x, t)
    compiled = torch.compile(module, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(x, t), eager)
    assert _recorded(module) is not None, "tracing must leave the eager record alone"
    torch.testing.assert_close(module(x, t), eager)


def test_func_grad_takes_the_general_path():
    x, y = _bce_inputs()
    module = pnn.ClassBalancedBCE()
    module(x, y)
    grad = torch.func.grad(lambda z: module(z, y))(x.detach())
    (expected,) = torch.autograd.grad(F.binary_cross_entropy_with_logits(x, y), x)
    torch.testing.assert_close(grad, expected)


def test_double_backward_through_a_replayed_call():
    x, t = _ce_inputs()
    module = pnn.ClassBalancedCrossEntropy()
    module(x, t)
    (g,) = torch.autograd.grad(module(x, t), x, create_graph=True)
    (gg,) = torch.autograd.grad(g.pow(2).sum(), x)
    xr = x.detach().requires_grad_(True)
    (gr,) = torch.autograd.grad(F.cross_entropy(xr, t), xr, create_graph=True)
    (ggr,) = torch.autograd.grad(gr.pow(2).sum(), xr)
    torch.testing.assert_close(gg, ggr)
