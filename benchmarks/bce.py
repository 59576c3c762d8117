"""Class-balanced multi-label BCE: forward, backward and forward+backward time and peak memory of
every available pycmlt backend against eager PyTorch (F.binary_cross_entropy_with_logits) and
torch.compile of it, all measured in one run. Cases vary C at fixed N."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks.ce import SHAPES, describe
from benchmarks.harness import LossSuite, generator
from pycmlt.ops import class_balanced_bce


def eager(x, t):
    return F.binary_cross_entropy_with_logits(x, t)


def make_inputs(shape, device):
    n, c, dtype = shape
    g = generator(device)
    x = (torch.randn(n, c, generator=g, device=device) * 2).to(dtype)
    t = (torch.rand(n, c, generator=g, device=device) < 0.05).to(dtype)  # sparse multi-hot labels
    return [x], (t,)


SUITE = LossSuite(
    name="bce",
    shapes=SHAPES,
    eager=eager,
    ours=lambda backend: lambda x, t: class_balanced_bce(x, t, backend=backend),
    make_inputs=make_inputs,
    describe=describe,
    bytes_moved=lambda s: 3 * s[0] * s[1] * s[2].itemsize,  # logits + targets read once, gradient written once
)
run = SUITE.run
