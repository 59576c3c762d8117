"""pycmlt::ce_loss_aux, the one definition of the cross-entropy auxiliary ([gradient scale, sum of
class weights] and the mean's denominator): the op equals its torch reference, passes opcheck, and
loss_aux (what the Triton and fused-linear paths call) goes through it."""
import pytest
import torch
from conftest import DEVICES

from pycmlt import _extension
from pycmlt.ops.cross_entropy import ce_loss_aux_reference, loss_aux

pytestmark = pytest.mark.skipif(not _extension.native_available(), reason="the C++ extension is not built")

C = 5
NATIVE_DEVICES = [d for d in DEVICES if d == "cpu" or _extension.CUDA_KERNELS_COMPILED]


def _cases(device):
    """(name, target, ignore_index): ignored rows, an out-of-range ignore_index, all rows ignored, no rows."""
    t = torch.tensor([0, 2, -100, 1, 4, -100, 4], device=device)
    yield "ignored rows", t, -100
    yield "none ignored", t.clamp_min(0), -100
    yield "ignored index out of range", torch.tensor([0, 7, 3, 7, 1], device=device), 7
    yield "ignored index in range", torch.tensor([0, 2, 3, 2, 1], device=device), 2
    yield "all ignored", torch.full((4,), -100, device=device), -100
    yield "no rows", torch.empty(0, dtype=torch.int64, device=device), -100


def _weights(device):
    return [None, torch.tensor([0.5, 2.0, 1.25, 3.0, 0.75], device=device)]


@pytest.mark.parametrize("device", NATIVE_DEVICES)
@pytest.mark.parametrize("reduction", [0, 1, 2], ids=["none", "mean", "sum"])
@pytest.mark.parametrize("index_dtype", [torch.int64, torch.int32])
def test_op_equals_reference(device, reduction, index_dtype):
    for name, target, ignore_index in _cases(device):
        for w in _weights(device):
            t = target.to(index_dtype)
            aux, denom = torch.ops.pycmlt.ce_loss_aux(t, w, C, ignore_index, reduction)
            ref_aux, ref_denom = ce_loss_aux_reference(t, w, C, ignore_index, reduction)
            msg = f"{name}, class_weight={'yes' if w is not None else 'no'}"
            assert aux.dtype == denom.dtype == torch.float32, msg
            assert aux.shape == (2,) and denom.shape == () and aux.device == denom.device == t.device, msg
            torch.testing.assert_close(aux, ref_aux, msg=msg)
            torch.testing.assert_close(denom, ref_denom.to(torch.float32), msg=msg)


@pytest.mark.parametrize("device", NATIVE_DEVICES)
def test_all_ignored_mean_is_nan_like_torch(device):
    target = torch.full((3,), -100, device=device)
    aux, denom = torch.ops.pycmlt.ce_loss_aux(target, None, C, -100, 1)
    assert denom.item() == 0.0 and aux[0].item() == float("inf") and aux[1].item() == C
    assert torch.isnan(torch.zeros((), device=device) / denom)  # the mean loss: 0 / 0


def test_cpu_op_validates_targets_and_reference_does_not():
    target = torch.tensor([0, 5, 1])
    with pytest.raises(ValueError, match=r"target\[1\] = 5 is out of range"):
        torch.ops.pycmlt.ce_loss_aux(target, None, C, -100, 1)
    aux, denom = ce_loss_aux_reference(target, None, C, -100, 1)  # counts the row (its loss is NaN)
    assert denom.item() == 3.0


@pytest.mark.parametrize("kwargs,match", [
    (dict(class_weight=torch.ones(4)), r"class_weight must be a contiguous float32 tensor of shape \[5\]"),
    (dict(class_weight=torch.ones(5, dtype=torch.float64)), "class_weight must be a contiguous float32"),
    (dict(target=torch.zeros(2, 2, dtype=torch.int64)), "target must be a 1-D integer tensor"),
    (dict(target=torch.zeros(2)), "target must be a 1-D integer tensor"),
    (dict(reduction=3), "reduction code must be 0, 1 or 2"),
])
def test_bad_arguments(kwargs, match):
    args = dict(target=torch.tensor([0, 1]), class_weight=None, num_classes=C, ignore_index=-100, reduction=1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        torch.ops.pycmlt.ce_loss_aux(*args.values())


@pytest.mark.parametrize("device", NATIVE_DEVICES)
def test_opcheck(device):
    for _, target, ignore_index in _cases(device):
        for w in _weights(device):
            for reduction in (0, 1, 2):
                torch.library.opcheck(torch.ops.pycmlt.ce_loss_aux.default,
                                      (target, w, C, ignore_index, reduction))


def test_loss_aux_uses_the_op_and_falls_back_to_the_reference(monkeypatch):
    target = torch.tensor([0, 5, 1])  # out of range: only the op's CPU kernel refuses it
    with pytest.raises(ValueError, match="out of range"):
        loss_aux(target, None, C, -100, 1)
    monkeypatch.setattr(_extension, "native_available", lambda: False)
    aux, denom = loss_aux(target, None, C, -100, 1)
    assert denom.item() == 3.0
