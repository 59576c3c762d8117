"""The CPU BCE kernel's block path for few classes (csrc/cpu/cb_bce.cpp, bce_blocks): when logits, targets
and gradient have row stride C and C <= 256, blocks of 1024 // C whole rows are computed as one flat
vector, with row-independent weights tiled once and per-row weights tiled per block; other inputs go
row by row (bce_rows). Checked at those boundaries against the torch reference: C around the limit,
partial last blocks, every weight and pos_weight layout, focal, reductions, fp16/bf16, strided and
expanded inputs (the row path) against the block path, the in-place op, +-inf/NaN, and sums that do
not depend on the number of threads."""
import pytest
import torch
import torch.nn.functional as F
from grad_helpers import loss_and_grad
from tolerances import FP32, assert_no_worse_than_torch

from pycmlt.ops import available_backends, bce_reference
from pycmlt.ops import class_balanced_bce as cbbce

pytestmark = pytest.mark.skipif("cpu" not in available_backends("cpu"), reason="the C++ extension is not built")

FLAT_ELEMS, FLAT_MAX_C = 1024, 256  # csrc/cpu/cb_bce.cpp: kFlatElems, kFlatMaxC
# 1 and 2 (blocks of 1024 / 512 rows), 3 and 17 (blocks that are no multiple of the SIMD width),
# 15/16 (a row shorter than / one SIMD vector), both sides of the block limit.
CLASSES = [1, 2, 3, 15, 16, 17, 255, 256, 257]
OPTIONS = {
    "plain": dict(),
    "w-class": dict(weight="c"),
    "w-row": dict(weight="n1"),
    "w-full": dict(weight="nc"),
    "w-scalar": dict(weight=""),
    "w-1c-pw-row": dict(weight="1c", pos_weight="n1"),
    "pw-class-focal": dict(pos_weight="c", focal_gamma=2.0),
    "w-row-pw-full-focal-half": dict(weight="n1", pos_weight="nc", focal_gamma=0.5),
}


def block_rows(c):
    return max(1, FLAT_ELEMS // c)


def inputs(n, c, dtype=torch.float32, seed=0, soft=True):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(n, c, generator=g) * 4).to(dtype)
    t = torch.rand(n, c, generator=g) if soft else (torch.rand(n, c, generator=g) < 0.3).float()
    return x, t.to(dtype)


def weights(option, n, c, seed=1):
    """The weight / pos_weight tensors of an OPTIONS entry (shapes by letters: c, n1, nc, 1c, scalar)."""
    g = torch.Generator().manual_seed(seed)
    shapes = {"c": (c,), "n1": (n, 1), "nc": (n, c), "1c": (1, c), "": ()}
    out = {}
    for key in ("weight", "pos_weight"):
        if key in option:
            out[key] = torch.rand(shapes[option[key]], generator=g) * 2 + 0.1
    if "focal_gamma" in option:
        out["focal_gamma"] = option["focal_gamma"]
    return out


def reference(x, t, reduction, kw):
    return bce_reference(x, t, kw.get("weight"), kw.get("pos_weight"), focal_gamma=kw.get("focal_gamma", 0.0),
                         reduction=reduction)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("name", list(OPTIONS))
@pytest.mark.parametrize("c", CLASSES, ids=lambda c: f"C{c}")
def test_block_boundaries_match_reference(c, name, reduction):
    n = 2 * block_rows(c) + 3  # two full blocks and a partial one (row path above the limit)
    x, t = inputs(n, c)
    kw = weights(OPTIONS[name], n, c)
    ours = loss_and_grad(lambda z: cbbce(z, t, reduction=reduction, backend="cpu", **kw), x)
    ref = loss_and_grad(lambda z: reference(z, t, reduction, kw), x)
    torch.testing.assert_close(ours, ref, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("c", [1, 2, 3, 16, 17, 200], ids=lambda c: f"C{c}")
def test_partial_blocks(c):
    r = block_rows(c)
    for n in sorted({1, 2, r - 1, r, r + 1, 3 * r + r // 2}):
        x, t = inputs(n, c, seed=n, soft=False)
        kw = weights(OPTIONS["w-1c-pw-row"], n, c)
        for reduction in ("none", "sum"):
            ours = loss_and_grad(lambda z: cbbce(z, t, reduction=reduction, backend="cpu", **kw), x)
            ref = loss_and_grad(lambda z: reference(z, t, reduction, kw), x)
            torch.testing.assert_close(ours, ref, rtol=2e-5, atol=2e-6, msg=lambda m: f"n={n} {reduction}: {m}")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", ["plain", "w-row", "pw-class-focal", "w-row-pw-full-focal-half"])
@pytest.mark.parametrize("c", [2, 17, 256, 257], ids=lambda c: f"C{c}")
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_low_precision_no_worse_than_pytorch(c, name, dtype, reduction):
    n = block_rows(c) + 5
    x, t = inputs(n, c, dtype=dtype)
    kw = weights(OPTIONS[name], n, c)
    ours = loss_and_grad(lambda z: cbbce(z, t, reduction=reduction, backend="cpu", **kw), x)
    truth = loss_and_grad(lambda z: reference(z, t.float(), reduction, kw), x.float())
    lowp = loss_and_grad(lambda z: bce_reference(z, t, kw.get("weight"), kw.get("pos_weight"), reduction=reduction,
                                                 focal_gamma=kw.get("focal_gamma", 0.0), upcast=False), x)
    assert ours[0].dtype == dtype and ours[1].dtype == dtype
    assert_no_worse_than_torch(ours[0], lowp[0], truth[0], "loss")
    assert_no_worse_than_torch(ours[1], lowp[1], truth[1], "grad")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("c", [2, 17], ids=lambda c: f"C{c}")
def test_fp32_targets_with_any_logits(c, dtype):
    n = block_rows(c) + 1
    x, t = inputs(n, c, dtype=dtype)
    t32 = t.float() + 0.001  # fp32 targets next to fp16/bf16 logits: the mixed entry
    kw = weights(OPTIONS["w-row-pw-full-focal-half"], n, c)
    ours = loss_and_grad(lambda z: cbbce(z, t32, reduction="none", backend="cpu", **kw), x)
    ref = loss_and_grad(lambda z: reference(z, t32, "none", kw), x.float())
    tol = FP32 if dtype == torch.float32 else dict(rtol=1e-2, atol=1e-2)
    torch.testing.assert_close((ours[0].float(), ours[1].float()), ref, **tol)


def layouts(x, t, kind):
    """(logits, targets) views holding the same values with another layout."""
    if kind == "sliced-logits":  # row stride 2C, unit column stride: the row path
        wide = torch.full((x.shape[0], 2 * x.shape[1]), float("nan"), dtype=x.dtype)
        wide[:, : x.shape[1]] = x
        return wide[:, : x.shape[1]], t
    if kind == "sliced-targets":
        wide = torch.full((2 * t.shape[0], t.shape[1]), float("nan"), dtype=t.dtype)
        wide[::2] = t
        return x, wide[::2]
    if kind == "expanded-targets":  # row stride 0: the row path
        return x, t[:1].expand_as(t)
    if kind == "transposed":  # column stride != 1: made contiguous by the glue, so the block path
        return x.T.contiguous().T, t.T.contiguous().T
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["sliced-logits", "sliced-targets", "expanded-targets", "transposed"])
@pytest.mark.parametrize("c", [2, 17, 256], ids=lambda c: f"C{c}")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_other_layouts_give_the_block_path_results(c, kind, dtype):
    # Strided or expanded rows take the row path; it computes every element with the same maths as the
    # block path, so the two agree to a few ulps (sums: to the fp32 rounding of their order).
    n = block_rows(c) + 7
    x, t = inputs(n, c, dtype=dtype)
    t = t[:1].expand_as(t).contiguous() if kind == "expanded-targets" else t
    kw = weights(OPTIONS["w-row-pw-full-focal-half"], n, c)
    xv, tv = layouts(x, t, kind)
    for reduction in ("none", "sum"):
        flat = loss_and_grad(lambda z: cbbce(z, t, reduction=reduction, backend="cpu", **kw), x)
        other = loss_and_grad(lambda z: cbbce(z, tv, reduction=reduction, backend="cpu", **kw), xv)
        tol = dict(rtol=1e-6, atol=1e-7) if dtype == torch.float32 else dict(rtol=0, atol=0)
        if reduction == "sum":
            torch.testing.assert_close(other[0], flat[0], rtol=2e-6, atol=1e-5)
            torch.testing.assert_close(other[1], flat[1], **tol)
        else:
            torch.testing.assert_close(other, flat, **tol)
        ref = loss_and_grad(lambda z: reference(z, t.float(), reduction, kw), x.float())
        if dtype == torch.float32:
            torch.testing.assert_close(other, ref, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("c", [2, 17, 255, 300], ids=lambda c: f"C{c}")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("strided", [False, True])
def test_in_place_op(c, dtype, strided):
    # A contiguous buffer takes the block path (C <= 256), a buffer with row stride > C the row path;
    # either way the buffer gets grad_scale * the gradient and nothing outside the view is written.
    n = 2 * block_rows(c) + 1
    x, t = inputs(n, c, dtype=dtype, seed=c)
    g = torch.Generator().manual_seed(5)
    w = torch.rand(n, 1, generator=g) + 0.5
    pw = torch.rand(1, c, generator=g) + 0.5
    base = torch.full((n, c + 5 if strided else c), 7.0, dtype=dtype)
    for gamma in (0.0, 2.0):
        base.fill_(7.0)
        buf = base[:, :c]
        buf.copy_(x)
        total = torch.ops.pycmlt.cb_bce_grad_inplace(buf, t, w, pw, gamma, 0.25)
        z = x.float().requires_grad_(True)
        want = bce_reference(z, t.float(), w, pw, focal_gamma=gamma, reduction="sum")
        (grad,) = torch.autograd.grad(want, z)
        tol = dict(rtol=2e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-2, atol=1e-2)
        torch.testing.assert_close(total, want.detach(), rtol=2e-5, atol=1e-3)
        torch.testing.assert_close(buf.float(), 0.25 * grad, **tol)
        if strided:
            assert torch.all(base[:, c:] == 7.0)


@pytest.mark.parametrize("c", [2, 17, 300], ids=lambda c: f"C{c}")
def test_inf_and_nan_as_the_row_path_and_pytorch(c):
    n = block_rows(c) + 9
    x, t = inputs(n, c)
    x[3, 0] = float("inf")
    x[4, c - 1] = float("-inf")
    x[5, 0] = float("nan")
    x[n - 1, c - 1] = float("nan")  # in the partial last block
    t[3, 0] = 0.0  # +inf logit, target 0: infinite loss
    t[4, c - 1] = 1.0  # -inf logit, target 1: infinite loss
    w = torch.rand(c) + 0.5
    for reduction in ("none", "sum"):
        ours = loss_and_grad(lambda z: cbbce(z, t, weight=w, reduction=reduction, backend="cpu"), x)
        rows = loss_and_grad(lambda z: cbbce(z, t, weight=w, reduction=reduction, backend="cpu"),
                             layouts(x, t, "sliced-logits")[0])
        torch.testing.assert_close(ours, rows, rtol=1e-6, atol=1e-7, equal_nan=True)
        want = loss_and_grad(lambda z: F.binary_cross_entropy_with_logits(z, t, weight=w, reduction=reduction), x)
        torch.testing.assert_close(ours, want, rtol=2e-5, atol=2e-6, equal_nan=True)


def test_sums_do_not_depend_on_the_thread_count():
    # Block boundaries are fixed (not the threads' ranges), so the fp32 block sums and their float64
    # total are the same for any number of threads.
    n, c = 8192, 4
    x, t = inputs(n, c)
    w = torch.rand(n, 1) + 0.5
    before = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append(torch.ops.pycmlt.cb_bce(x, t, w, None, 2.0, 2, True))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])
