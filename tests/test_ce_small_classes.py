"""The CPU cross-entropy kernel's block path for few classes (csrc/cpu/cb_cross_entropy.cpp,
ce_block_small): blocks of 64 rows, one row per SIMD lane, for C < 48 and up to C = 64 unless the rows
are plain fp32 and a multiple of 16 wide; column-wise transposes up to C = 16, row-wise above. Checked at
those boundaries against the torch reference: partial blocks, ignored rows inside a block, focal rows
with 1 - p -> 0, fp16/bf16, strided rows, the in-place op, and the NaN/inf semantics of F.cross_entropy."""
import pytest
import torch
import torch.nn.functional as F
from grad_helpers import loss_and_grad
from tolerances import assert_no_worse_than_torch

import pycmlt
from pycmlt.ops import available_backends
from pycmlt.ops import class_balanced_cross_entropy as cbce
from pycmlt.ops import cross_entropy_reference

pytestmark = pytest.mark.skipif("cpu" not in available_backends("cpu"), reason="the C++ extension is not built")

# Around C = 16 (transpose by column / by row), 48 (blocks for every option below), 64 (the block limit).
CLASSES = [1, 2, 15, 16, 17, 32, 47, 48, 49, 63, 64, 65]
OPTIONS = {
    "plain": dict(),
    "cb-smooth": dict(beta=0.99, label_smoothing=0.1),
    "focal": dict(focal_gamma=2.0),
    "cb-focal-half": dict(beta=0.9999, focal_gamma=0.5),
    "ldam-cb": dict(ldam_max_margin=0.5, ldam_scale=10.0, beta=0.999),
    "logit-adjust-smooth": dict(logit_adjust_tau=1.5, label_smoothing=0.2),
}
IGNORED = [0, 5, 63, 64, 100, 129]  # first row, inside a block, both sides of the block edge, the last row


def inputs(n, c, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(n, c, generator=g) * 3).to(dtype)
    t = torch.randint(0, c, (n,), generator=g)
    t[[i for i in IGNORED if i < n]] = -100
    counts = (1000 * torch.rand(c, generator=g).pow(3) + 1).floor()
    return x, t, counts


@pytest.mark.parametrize("reduction", ["none", "mean"])
@pytest.mark.parametrize("name", list(OPTIONS))
@pytest.mark.parametrize("c", CLASSES, ids=lambda c: f"C{c}")
def test_block_boundaries_match_reference(c, name, reduction):
    x, t, counts = inputs(130, c)  # two full blocks and two rows
    kw = OPTIONS[name]
    ours = loss_and_grad(lambda z: cbce(z, t, class_counts=counts, reduction=reduction, backend="cpu", **kw), x)
    ref = loss_and_grad(lambda z: cbce(z, t, class_counts=counts, reduction=reduction, backend="torch", **kw), x)
    torch.testing.assert_close(ours, ref, rtol=2e-5, atol=2e-5)
    if reduction == "none":
        assert torch.all(ours[0][[i for i in IGNORED if i < 130]] == 0)
        assert torch.all(ours[1][[i for i in IGNORED if i < 130]] == 0)


@pytest.mark.parametrize("n", [1, 2, 63, 64, 65, 127, 129, 1000])
@pytest.mark.parametrize("name", ["plain", "focal", "ldam-cb"])
def test_partial_blocks(n, name):
    x, t, counts = inputs(n, 7)
    kw = OPTIONS[name]
    for reduction in ("none", "sum"):
        ours = loss_and_grad(lambda z: cbce(z, t, class_counts=counts, reduction=reduction, backend="cpu", **kw), x)
        ref = loss_and_grad(lambda z: cbce(z, t, class_counts=counts, reduction=reduction, backend="torch", **kw), x)
        torch.testing.assert_close(ours, ref, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0, 3.0])
@pytest.mark.parametrize("c", [2, 9, 40])
def test_focal_rows_with_p_near_one(c, gamma):
    # The target logit leads by d: nll = log(1 + sum_j exp(z_j - z_y)) goes from O(1) through the
    # series range of -expm1 (nll < log(2) / 2) down to 1e-13 and to exactly 0 (1 - p = 0).
    n = 300
    g = torch.Generator().manual_seed(c)
    x = torch.randn(n, c, generator=g)
    t = torch.randint(0, c, (n,), generator=g)
    lead = torch.linspace(-3.0, 120.0, n)
    x[torch.arange(n), t] = x.max(1).values + lead
    t[7] = -100
    ours = loss_and_grad(lambda z: cbce(z, t, focal_gamma=gamma, reduction="none", backend="cpu"), x)
    ref = loss_and_grad(lambda z: cross_entropy_reference(z, t, focal_gamma=gamma, reduction="none"), x)
    torch.testing.assert_close(ours, ref, rtol=2e-5, atol=1e-6)
    assert ours[0][-1] == 0 and torch.all(ours[1][-1] == 0)  # 1 - p = 0: no loss, no gradient


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", ["plain", "cb-smooth", "cb-focal-half", "ldam-cb"])
@pytest.mark.parametrize("c", [2, 16, 17, 33, 64, 65])
def test_low_precision_no_worse_than_pytorch(c, name, dtype):
    x, t, counts = inputs(130, c, dtype=dtype)
    kw = OPTIONS[name]
    weight = pycmlt.class_balanced_weights(counts, kw["beta"]) if "beta" in kw else None
    margins = pycmlt.ldam_margins(counts, kw["ldam_max_margin"]) if "ldam_max_margin" in kw else None
    ref_kw = dict(scale=kw.get("ldam_scale", 1.0), focal_gamma=kw.get("focal_gamma", 0.0),
                  label_smoothing=kw.get("label_smoothing", 0.0), reduction="none")
    ours = loss_and_grad(lambda z: cbce(z, t, class_counts=counts, reduction="none", backend="cpu", **kw), x)
    truth = loss_and_grad(lambda z: cross_entropy_reference(z, t, weight, margins, **ref_kw), x.float())
    lowp = loss_and_grad(lambda z: cross_entropy_reference(z, t, weight, margins, upcast=False, **ref_kw), x)
    assert ours[0].dtype == dtype and ours[1].dtype == dtype
    assert_no_worse_than_torch(ours[0], lowp[0], truth[0], "loss")
    assert_no_worse_than_torch(ours[1], lowp[1], truth[1], "grad")


@pytest.mark.parametrize("c", [3, 16, 17, 40])
def test_strided_rows_and_the_in_place_op(c):
    g = torch.Generator().manual_seed(c)
    wide = torch.randn(200, c + 9, generator=g) * 3
    t = torch.randint(0, c, (100,), generator=g)
    t[[0, 64]] = -100
    cw, m, lb = torch.rand(c, generator=g) + 0.5, torch.rand(c, generator=g), torch.randn(c, generator=g)
    x = wide[::2, 4:4 + c]  # row stride 2 (c + 9), unit column stride
    ours = loss_and_grad(lambda z: cbce(z, t, class_weight=cw, label_smoothing=0.1, reduction="none",
                                        backend="cpu"), x)
    ref = loss_and_grad(lambda z: F.cross_entropy(z, t, weight=cw, label_smoothing=0.1, reduction="none"), x)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    # The in-place op writes 0.25 * the gradient into the strided buffer and nothing else.
    buf_base = wide.clone()
    buf = buf_base[::2, 4:4 + c]
    aux = torch.tensor([0.25, float(cw.sum())])
    for gamma, eps in ((0.0, 0.1), (2.0, 0.0)):
        buf_base.copy_(wide)
        rows = torch.ops.pycmlt.cb_cross_entropy_grad_inplace(buf, t, cw, m, lb, aux, 2.0, gamma, eps, -100)
        z = x.clone().requires_grad_(True)
        want = cross_entropy_reference(z, t, cw, m, lb, scale=2.0, focal_gamma=gamma, label_smoothing=eps,
                                       reduction="none")
        (grad,) = torch.autograd.grad(want.sum(), z)
        torch.testing.assert_close(rows, want.detach(), rtol=2e-5, atol=2e-5)
        torch.testing.assert_close(buf, 0.25 * grad, rtol=2e-5, atol=1e-7)
        untouched = torch.ones_like(wide, dtype=torch.bool)
        untouched[::2, 4:4 + c] = False
        assert torch.equal(buf_base[untouched], wide[untouched])


@pytest.mark.parametrize("c", [5, 17, 50])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_nan_and_inf_rows_as_pytorch(c, smoothing):
    x, t, _ = inputs(130, c)
    t[t == 1] = 0  # class 1 is never a target: its NaN weight must not leak without smoothing
    w = torch.rand(c) + 0.5
    w[1] = float("nan")
    x[10, 2] = float("inf")  # a +inf logit: NaN row
    x[20, 3] = float("nan")  # a NaN logit: NaN row
    x[30] = float("-inf")  # an all -inf row: NaN loss (shifted by 0)
    x[40, t[40]] = float("-inf")  # -inf target logit: infinite loss
    x[65, :] = float("nan")
    t[65] = -100  # an ignored NaN row
    x[70, (t[70] + 1) % c] = float("-inf")  # a masked class
    xs = [x.clone().requires_grad_(True) for _ in range(2)]
    got = cbce(xs[0], t, class_weight=w, label_smoothing=smoothing, reduction="none", backend="cpu")
    want = F.cross_entropy(xs[1], t, weight=w, label_smoothing=smoothing, reduction="none")
    torch.testing.assert_close(got, want, equal_nan=True)
    up = torch.rand(130, generator=torch.Generator().manual_seed(1))
    got.backward(up)
    want.backward(up)
    # Ignored rows: zero loss and gradient, also where PyTorch's gradient row is NaN (NaN logits, or a
    # NaN class weight with smoothing).
    keep = t != -100
    torch.testing.assert_close(xs[0].grad[keep], xs[1].grad[keep], equal_nan=True)
    assert torch.all(got[~keep] == 0) and torch.all(xs[0].grad[~keep] == 0)
