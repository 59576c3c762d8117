"""pycmlt.schedules (deferred re-weighting) and the update(epoch) hook of the loss modules."""
import pytest
import torch
import torch.nn.functional as F

import pycmlt
from pycmlt.schedules import DeferredReweighting, apply_epoch

COUNTS = [500, 120, 30, 8, 2]


def test_deferred_reweighting_is_uniform_then_class_balanced():
    drw = DeferredReweighting(COUNTS, beta=0.999, start_epoch=3)
    for epoch in range(3):
        torch.testing.assert_close(drw.weights(epoch), torch.ones(5))
        assert not drw.is_reweighting(epoch)
    for epoch in (3, 4, 100):
        torch.testing.assert_close(drw.weights(epoch), pycmlt.class_balanced_weights(COUNTS, 0.999))
        assert drw.is_reweighting(epoch)
    assert drw(7).dtype == torch.float32 and drw.num_classes == 5
    w = drw.weights(5)
    w.zero_()  # callers get a copy
    torch.testing.assert_close(drw.weights(5), pycmlt.class_balanced_weights(COUNTS, 0.999))
    assert "start_epoch=3" in repr(drw)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(class_counts=[3, 0, 1], start_epoch=1), ValueError, "class 1 has count 0"),
    (dict(class_counts=[3, 2, 1], beta=1.0, start_epoch=1), ValueError, "beta must be < 1"),
    (dict(class_counts=[3, 2, 1], start_epoch=-1), ValueError, "start_epoch must be an int >= 0"),
    (dict(class_counts=[3, 2, 1], start_epoch=1.5), ValueError, "start_epoch must be an int >= 0"),
])
def test_bad_schedule_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        DeferredReweighting(**kwargs)


def test_start_epoch_is_required():
    with pytest.raises(TypeError):
        DeferredReweighting(COUNTS)


def test_ldam_drw_with_the_cross_entropy_module():
    drw = DeferredReweighting(COUNTS, beta=0.9999, start_epoch=2)
    crit = pycmlt.nn.ClassBalancedCrossEntropy(COUNTS, ldam_max_margin=0.5, ldam_scale=30.0, schedule=drw)
    x, t = torch.randn(8, 5), torch.tensor([0, 1, 2, 3, 4, 4, 3, 0])
    plain_ldam = pycmlt.ops.class_balanced_cross_entropy(x, t, class_counts=COUNTS, ldam_max_margin=0.5,
                                                         ldam_scale=30.0)
    drw_ldam = pycmlt.ops.class_balanced_cross_entropy(x, t, class_counts=COUNTS, ldam_max_margin=0.5,
                                                       ldam_scale=30.0, beta=0.9999)
    torch.testing.assert_close(crit(x, t), plain_ldam)  # before any update: epoch-0 weights (uniform)
    crit.update(1)
    torch.testing.assert_close(crit(x, t), plain_ldam)
    buffer_before = crit.class_weight
    assert crit.update(2) is crit and crit.epoch == 2
    torch.testing.assert_close(crit(x, t), drw_ldam)
    assert crit.class_weight is buffer_before  # updated in place
    crit.update(0)  # schedules may go back (e.g. a restart)
    torch.testing.assert_close(crit(x, t), plain_ldam)


def test_update_without_a_schedule_only_records_the_epoch():
    crit = pycmlt.nn.ClassBalancedCrossEntropy(COUNTS, beta=0.99)
    w = crit.class_weight.clone()
    crit.update(4)
    assert crit.epoch == 4
    torch.testing.assert_close(crit.class_weight, w)
    with pytest.raises(TypeError, match="epoch must be an int"):
        crit.update(1.0)


def test_schedule_conflicts_and_shape_are_checked():
    drw = DeferredReweighting(COUNTS, start_epoch=1)
    with pytest.raises(ValueError, match="schedule sets the class weights, so beta cannot be given"):
        pycmlt.nn.ClassBalancedCrossEntropy(COUNTS, beta=0.9, schedule=drw)
    with pytest.raises(ValueError, match="so weight cannot be given"):
        pycmlt.nn.ClassBalancedBCE(weight=torch.ones(5), schedule=drw)
    with pytest.raises(ValueError, match=r"must have shape \[3\]"):
        pycmlt.nn.ClassBalancedCrossEntropy([1, 2, 3], schedule=drw)
    with pytest.raises(TypeError, match="schedule must have a weights"):
        pycmlt.nn.ClassBalancedCrossEntropy(COUNTS, schedule=lambda epoch: torch.ones(5))


def test_every_module_follows_the_schedule_and_apply_epoch_drives_a_model():
    drw = DeferredReweighting(COUNTS, beta=0.999, start_epoch=1)
    model = torch.nn.ModuleDict({
        "ce": pycmlt.nn.ClassBalancedCrossEntropy(schedule=drw),
        "bce": pycmlt.nn.ClassBalancedBCE(COUNTS, schedule=drw),
        "fused_ce": pycmlt.nn.FusedLinearClassBalancedCrossEntropy(4, 5, schedule=drw, chunk_rows=3),
        "fused_bce": pycmlt.nn.FusedLinearClassBalancedBCE(4, 5, schedule=drw, chunk_rows=3),
        "other": torch.nn.Linear(2, 2),
    })
    assert apply_epoch(model, 0) == 4
    for name, buf in (("ce", "class_weight"), ("bce", "weight"), ("fused_ce", "class_weight"),
                      ("fused_bce", "loss_weight")):
        torch.testing.assert_close(getattr(model[name], buf), torch.ones(5))
    apply_epoch(model, 1)
    cb = pycmlt.class_balanced_weights(COUNTS, 0.999)
    h, t, y = torch.randn(7, 4), torch.randint(0, 5, (7,)), (torch.rand(7, 5) < 0.3).float()
    z = torch.randn(7, 5)
    torch.testing.assert_close(model["ce"](z, t), F.cross_entropy(z, t, weight=cb))
    torch.testing.assert_close(model["bce"](z, y), F.binary_cross_entropy_with_logits(z, y, weight=cb))
    lin = model["fused_ce"].linear
    torch.testing.assert_close(model["fused_ce"](h, t), F.cross_entropy(lin(h), t, weight=cb), rtol=1e-5, atol=1e-6)
    lin = model["fused_bce"].linear
    torch.testing.assert_close(model["fused_bce"](h, y), F.binary_cross_entropy_with_logits(lin(h), y, weight=cb),
                               rtol=1e-5, atol=1e-6)


def test_scheduled_weights_survive_state_dict_and_to():
    drw = DeferredReweighting(COUNTS, start_epoch=2)
    crit = pycmlt.nn.ClassBalancedBCE(COUNTS, schedule=drw, focal_gamma=1.0)
    crit.update(5)
    fresh = pycmlt.nn.ClassBalancedBCE(COUNTS, schedule=drw, focal_gamma=1.0)
    fresh.load_state_dict(crit.state_dict())
    torch.testing.assert_close(fresh.weight, crit.weight)
    moved = fresh.to(torch.device("meta"))
    assert moved.weight.device.type == "meta"
    moved.update(0)  # the schedule's weights are copied to the buffer's device
    assert moved.weight.device.type == "meta"


def test_compiled_loss_sees_the_updated_weights_without_recompiling():
    torch._dynamo.reset()
    drw = DeferredReweighting(COUNTS, beta=0.99, start_epoch=1)
    crit = pycmlt.nn.ClassBalancedCrossEntropy(schedule=drw)
    x, t = torch.randn(6, 5), torch.tensor([0, 1, 2, 3, 4, 4])
    compiled = torch.compile(crit, fullgraph=True)
    torch.testing.assert_close(compiled(x, t), F.cross_entropy(x, t))
    crit.update(1)
    torch.testing.assert_close(compiled(x, t), F.cross_entropy(x, t, weight=pycmlt.class_balanced_weights(COUNTS,
                                                                                                          0.99)))
