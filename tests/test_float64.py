"""float64 inputs run on the torch backend in float64 (not computed in fp32 and cast back): every op
against an independent float64 computation, forward and gradients, to ~1e-12 where fp32 would err ~1e-7."""
import math

import pytest
import torch
import torch.nn.functional as F

import pycmlt
from pycmlt import ops

TIGHT = dict(rtol=1e-12, atol=1e-12)
REDUCTIONS = ["mean", "sum", "none"]


def grads(fn, *inputs):
    """(value, gradients of every input) with a fixed float64 upstream gradient."""
    leaves = [x.detach().clone().requires_grad_(True) for x in inputs]
    out = fn(*leaves)
    assert out.dtype == torch.float64
    g = torch.Generator().manual_seed(3)
    upstream = torch.rand(out.shape, generator=g, dtype=torch.float64) + 0.5
    return (out.detach(), *torch.autograd.grad(out, leaves, upstream))


def assert_same(ours, ref):
    for x, y in zip(ours, ref):
        assert x.dtype == torch.float64
        torch.testing.assert_close(x, y, **TIGHT)


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_matches_pytorch_in_float64(reduction):
    x, t = rand(6, 7), torch.tensor([0, 6, -100, 3, 3, 1])
    w = rand(7, seed=1).abs() + 0.1  # a float64 weight keeps its precision too
    kw = dict(ignore_index=-100, label_smoothing=0.1, reduction=reduction)
    ours = grads(lambda z: ops.class_balanced_cross_entropy(z, t, class_weight=w, **kw), x)
    assert_same(ours, grads(lambda z: F.cross_entropy(z, t, weight=w, **kw), x))


def test_cross_entropy_long_tail_options_in_float64():
    x, t, counts = rand(5, 4), torch.tensor([0, 1, 2, 3, 1]), [100, 20, 5, 1]
    kw = dict(class_counts=counts, ldam_max_margin=0.5, ldam_scale=2.0, logit_adjust_tau=1.0, focal_gamma=2.0)
    ours = grads(lambda z: ops.class_balanced_cross_entropy(z, t, **kw), x)
    bias = pycmlt.ops.class_balance.logit_adjustment(counts, 1.0).double()
    margins = pycmlt.ldam_margins(counts, 0.5).double()

    def direct(z):
        z = 2.0 * (z + bias - F.one_hot(t, 4) * margins[t][:, None])
        log_p = z.log_softmax(1).gather(1, t[:, None]).squeeze(1)
        return (-(1 - log_p.exp()) ** 2 * log_p).mean()
    assert_same(ours, grads(direct, x))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_matches_pytorch_in_float64(reduction):
    x, t = rand(4, 5), torch.rand(4, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    kw = dict(weight=rand(5, seed=3).abs(), pos_weight=rand(5, seed=4).abs() + 0.5, reduction=reduction)
    ours = grads(lambda z: ops.class_balanced_bce(z, t, **kw), x)
    assert_same(ours, grads(lambda z: F.binary_cross_entropy_with_logits(z, t, **kw), x))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_fused_linear_cross_entropy_in_float64(reduction):
    h, w, bias, t = rand(6, 5), rand(9, 5, seed=1), rand(9, seed=2), torch.tensor([0, 8, 3, -100, 2, 2])
    ours = grads(lambda *p: ops.fused_linear_class_balanced_cross_entropy(p[0], p[1], t, p[2], reduction=reduction),
                 h, w, bias)
    ref = grads(lambda *p: F.cross_entropy(F.linear(*p), t, reduction=reduction), h, w, bias)
    assert_same(ours, ref)


def test_fused_linear_bce_in_float64():
    h, w, bias = rand(6, 5), rand(9, 5, seed=1), rand(9, seed=2)
    t = (torch.rand(6, 9, generator=torch.Generator().manual_seed(5)) > 0.5).double()
    ours = grads(lambda *p: ops.fused_linear_class_balanced_bce(p[0], p[1], t, p[2]), h, w, bias)
    assert_same(ours, grads(lambda *p: F.binary_cross_entropy_with_logits(F.linear(*p), t), h, w, bias))


def test_clip_contrastive_in_float64():
    a, b = rand(6, 4), rand(6, 4, seed=1)
    scale = torch.tensor(math.log(1 / 0.07), dtype=torch.float64)
    ours = grads(lambda x, y, s: ops.cross_modal_contrastive(x, y, logit_scale=s), a, b, scale)

    def direct(x, y, s):
        sim = s.exp() * F.normalize(x, dim=1) @ F.normalize(y, dim=1).T
        target = torch.arange(6)
        return 0.5 * (F.cross_entropy(sim, target) + F.cross_entropy(sim.T, target))
    assert_same(ours, grads(direct, a, b, scale))


def test_supervised_class_balanced_contrastive_in_float64():
    a, b = rand(5, 3), rand(5, 3, seed=1)
    labels = torch.tensor([0, 1, 0, 2, 1])
    cw = rand(3, seed=2).abs() + 0.5
    ours = grads(lambda x, y: ops.contrastive.contrastive_with_class_tensors(
        x, y, labels=labels, logit_scale=1.0, class_weight=cw, symmetric=False), a, b)

    def direct(x, y):
        log_p = (math.e * F.normalize(x, dim=1) @ F.normalize(y, dim=1).T).log_softmax(1)
        pos = (labels[:, None] == labels[None, :]).double()
        per_anchor = -(log_p * pos).sum(1) / pos.sum(1)
        return (cw[labels] * per_anchor).sum() / cw[labels].sum()
    assert_same(ours, grads(direct, a, b))


@pytest.mark.parametrize("kind", ["cosine", "mse"])
def test_alignment_in_float64(kind):
    a, b = rand(5, 7), rand(5, 7, seed=1)
    ours = grads(lambda x, y: ops.alignment_loss(x, y, kind=kind), a, b)

    def direct(x, y):
        if kind == "cosine":
            return (1 - F.cosine_similarity(x, y, dim=1, eps=0)).mean()
        return (F.normalize(x, dim=1) - F.normalize(y, dim=1)).pow(2).sum(1).mean()
    assert_same(ours, grads(direct, a, b))
