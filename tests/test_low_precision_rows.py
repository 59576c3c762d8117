"""fp16/bf16 logits on the C++ CPU kernels: exactly the fp32 kernel on the widened logits, with the
gradient rounded once to the input dtype (the kernels widen each row into fp32, run the fp32 code and
narrow the gradient with the branch-free conversions of csrc/cpu/vec_math.h). Bitwise equality, special
values included, so a conversion that rounds differently from PyTorch's, or loses NaN/inf/subnormals, fails."""
from __future__ import annotations

import pytest
import torch

from pycmlt.ops import available_backends

pytestmark = pytest.mark.skipif("cpu" not in available_backends("cpu"), reason="needs the C++ extension")

DTYPES = [torch.float16, torch.bfloat16]


def _logits(n, c, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(n, c, generator=g) * 4).to(dtype)
    tiny = torch.finfo(dtype).tiny
    flat = x.view(-1)
    flat[1] = tiny / 4  # a subnormal of the dtype
    flat[2] = -tiny / 8
    flat[3] = torch.finfo(dtype).max
    flat[c + 5] = float("-inf")  # row 1: one -inf logit (finite loss)
    flat[2 * c + 1] = float("nan")  # row 2: NaN propagates to its loss and gradient
    return x


def _same(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    nan = torch.isnan(a)
    assert torch.equal(nan, torch.isnan(b))
    assert torch.equal(a[~nan], b[~nan]), (a[~nan] - b[~nan]).abs().max()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [100, 1000])
@pytest.mark.parametrize("extras", ["plain", "weights+margins+bias", "smoothing", "focal"])
def test_cross_entropy_rows_equal_fp32_rounded_once(dtype, c, extras):
    n = 9
    x = _logits(n, c, dtype)
    target = torch.arange(n) * 7 % c
    target[4] = -100
    weight = margins = bias = None
    scale, gamma, smoothing = 1.0, 0.0, 0.0
    if extras == "weights+margins+bias":
        weight = torch.linspace(0.5, 2.0, c)
        margins = torch.linspace(0.0, 0.5, c)
        bias = torch.linspace(-1.0, 1.0, c)
        scale = 3.0
    elif extras == "smoothing":
        smoothing = 0.1
    elif extras == "focal":
        gamma = 2.0
    op = torch.ops.pycmlt.cb_cross_entropy.default
    args = (weight, margins, bias, scale, gamma, smoothing, -100, 0, True)
    loss, grad = op(x, target, *args)
    loss32, grad32 = op(x.float(), target, *args)
    _same(loss, loss32)
    _same(grad, grad32.to(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [3, 100, 1000])
@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_bce_equals_fp32_rounded_once(dtype, c, gamma):
    n = 9
    x = _logits(n, c, dtype)
    y = (torch.rand(n, c, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    weight = torch.linspace(0.5, 2.0, c).view(1, c)
    op = torch.ops.pycmlt.cb_bce.default
    loss, grad = op(x, y, weight, None, gamma, 0, True)
    loss32, grad32 = op(x.float(), y, weight, None, gamma, 0, True)
    _same(loss, loss32)
    _same(grad, grad32.to(dtype))
