"""The per-family options objects (pycmlt/ops/loss_options.py), the renamed keywords and second-layer
functions and their deprecation, and the fused autograd's schema-named argument positions."""
import importlib
import warnings

import pytest
import torch

import pycmlt
from pycmlt import ops
from pycmlt.ops import BCEOptions, CrossEntropyOptions
from pycmlt.ops.fused_linear import _Autograd

COUNTS = [50, 20, 8, 3, 1]


def test_cross_entropy_options_validate_once_and_are_frozen():
    o = CrossEntropyOptions(2, 1, 0, -1, "sum")
    assert (o.scale, o.focal_gamma, o.label_smoothing, o.ignore_index, o.reduction_code) == (2.0, 1.0, 0.0, -1, 2)
    assert isinstance(o.scale, float)
    with pytest.raises(AttributeError):
        o.scale = 3.0
    with pytest.raises(ValueError, match="ldam_scale must be > 0"):
        CrossEntropyOptions(scale=0.0)
    with pytest.raises(ValueError, match="focal_gamma > 0 cannot be combined with label_smoothing"):
        CrossEntropyOptions(focal_gamma=1.0, label_smoothing=0.1)
    with pytest.raises(TypeError, match="ignore_index must be an int"):
        CrossEntropyOptions(ignore_index=1.5)
    with pytest.raises(ValueError, match="reduction must be one of"):
        CrossEntropyOptions(reduction="avg")
    with pytest.raises(ValueError, match="focal_gamma must be >= 0"):
        BCEOptions(focal_gamma=-1.0)
    assert BCEOptions(2, "none").reduction_code == 0


def test_functional_options_are_cached_and_exact_in_type():
    assert CrossEntropyOptions.of(2.0, 0.0, 0.1) is CrossEntropyOptions.of(2.0, 0.0, 0.1)
    assert BCEOptions.of(1.0, "sum") is BCEOptions.of(1.0, "sum")
    assert CrossEntropyOptions.of(1, 0, 0, True).ignore_index == 1  # a bool key is not confused with 1.0
    with pytest.raises(ValueError, match="label_smoothing must be <= 1"):
        CrossEntropyOptions.of(1.0, 0.0, 2.0)
    with pytest.raises(ValueError, match="label_smoothing must be <= 1"):  # nothing invalid was cached
        CrossEntropyOptions.of(1.0, 0.0, 2.0)


def test_nn_modules_validate_their_options_in_init():
    with pytest.raises(ValueError, match="focal_gamma > 0 cannot be combined"):
        pycmlt.nn.ClassBalancedCrossEntropy(focal_gamma=2.0, label_smoothing=0.1)
    with pytest.raises(ValueError, match="focal_gamma > 0 cannot be combined"):
        pycmlt.nn.FusedLinearClassBalancedCrossEntropy(3, 5, focal_gamma=2.0, label_smoothing=0.1)
    with pytest.raises(TypeError, match="chunk_rows must be a positive int"):
        pycmlt.nn.FusedLinearClassBalancedBCE(3, 5, chunk_rows=2.5)
    m = pycmlt.nn.ClassBalancedCrossEntropy(COUNTS, beta=0.9, ldam_scale=3.0, reduction="sum")
    assert m.options == CrossEntropyOptions(3.0, 0.0, 0.0, -100, "sum")


def test_second_layer_takes_options_or_scalars_but_not_both():
    x, t = torch.randn(6, 5, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 3, 4, 0])
    by_options = ops.cross_entropy_with_class_tensors(x, t, options=CrossEntropyOptions(2.0, reduction="sum"),
                                                      backend="torch")
    by_scalars = ops.cross_entropy_with_class_tensors(x, t, scale=2.0, reduction="sum", backend="torch")
    torch.testing.assert_close(by_options, by_scalars)
    with pytest.raises(TypeError, match="not both"):
        ops.cross_entropy_with_class_tensors(x, t, scale=2.0, options=CrossEntropyOptions(), backend="torch")
    with pytest.raises(TypeError, match="options must be a pycmlt.ops.BCEOptions"):
        ops.bce_with_class_tensors(x, torch.rand(6, 5), options=CrossEntropyOptions())


def test_fused_autograd_reads_argument_positions_from_the_schema():
    ce = _Autograd("pycmlt::fused_linear_cb_cross_entropy", "row_scale", "reduction", None)
    bce = _Autograd("pycmlt::fused_linear_cb_bce", "elem_scale", "reduction", None)
    assert (ce.scale_index, ce.reduction_index) == (7, 12)
    assert (bce.scale_index, bce.reduction_index) == (6, 8)
    with pytest.raises(ValueError):
        _Autograd("pycmlt::fused_linear_cb_bce", "no_such_argument", "reduction", None)


def _ce_calls():
    x, t = torch.randn(6, 5, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 1, 2, 3, 4, 0])
    h, lin = torch.randn(6, 3, generator=torch.Generator().manual_seed(2)), torch.randn(5, 3)
    return [
        (lambda **k: ops.class_balanced_cross_entropy(x, t, backend="torch", **k)),
        (lambda **k: pycmlt.nn.ClassBalancedCrossEntropy(**k)(x, t)),
        (lambda **k: ops.fused_linear_class_balanced_cross_entropy(h, lin, t, backend="torch", **k)),
    ]


@pytest.mark.parametrize("call", range(3))
def test_class_weight_is_the_name_and_weight_is_deprecated(call):
    w = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    fn = _ce_calls()[call]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = fn(class_weight=w)
    if call == 2:  # the fused function's `weight` is the classifier matrix: no rename there
        return
    with pytest.warns(DeprecationWarning, match="weight= is deprecated.*use class_weight="):
        old = fn(weight=w)
    torch.testing.assert_close(old, new)
    with pytest.raises(TypeError, match="got both weight= and class_weight="):
        fn(weight=w, class_weight=w)


def test_target_is_the_name_and_targets_is_deprecated():
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(4, 5, generator=g), torch.rand(4, 5, generator=g)
    h, lin = torch.randn(4, 3, generator=g), torch.randn(5, 3, generator=g)
    bce, fused = pycmlt.nn.ClassBalancedBCE(), pycmlt.nn.FusedLinearClassBalancedBCE(3, 5)
    calls = [
        lambda **k: ops.class_balanced_bce(x, backend="torch", **k),
        lambda **k: ops.bce_with_class_tensors(x, backend="torch", **k),
        lambda **k: ops.fused_linear_class_balanced_bce(h, lin, backend="torch", **k),
        lambda **k: ops.fused_linear_bce_with_class_tensors(h, lin, backend="torch", **k),
        lambda **k: bce(x, **k),
        lambda **k: fused(h, **k),
    ]
    for fn in calls:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            new = fn(target=y)
        with pytest.warns(DeprecationWarning, match="targets= is deprecated.*use target="):
            old = fn(targets=y)
        torch.testing.assert_close(old, new)


def _second_layer_args(name):
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(4, 5, generator=g), torch.rand(4, 5, generator=g)
    h, lin = torch.randn(4, 3, generator=g), torch.randn(5, 3, generator=g)
    a, b = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    labels, class_weight = torch.tensor([0, 1, 0, 2]), torch.tensor([1.0, 2.0, 3.0])
    return {"bce_with_class_tensors": ((x, y), {"weight": torch.rand(5, generator=g)}),
            "fused_linear_bce_with_class_tensors": ((h, lin, y), {"loss_weight": torch.rand(5, generator=g)}),
            "contrastive_with_class_tensors": ((a, b), {"labels": labels, "class_weight": class_weight})}[name]


@pytest.mark.parametrize("old, new", [("bce_with_weights", "bce_with_class_tensors"),
                                      ("fused_linear_bce_with_weights", "fused_linear_bce_with_class_tensors"),
                                      ("contrastive_with_class_weights", "contrastive_with_class_tensors")])
def test_old_second_layer_names_warn_and_give_the_same_result(old, new):
    """Every second layer is *_with_class_tensors; the old names stay, from pycmlt.ops and from their
    module, for one release."""
    new_fn, alias = getattr(ops, new), getattr(ops, old)
    module = importlib.import_module(new_fn.__module__)
    assert getattr(module, old) is alias and old in ops.__all__ and new in ops.__all__
    assert alias.__name__ == old and alias.__wrapped__ is new_fn
    args, kwargs = _second_layer_args(new)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        expected = new_fn(*args, backend="torch", **kwargs)
    with pytest.warns(DeprecationWarning, match=rf"{old}\(\) is deprecated.*use {new}\(\) instead"):
        got = alias(*args, backend="torch", **kwargs)
    torch.testing.assert_close(got, expected)
