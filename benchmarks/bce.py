"""Class-balanced multi-label BCE: forward, backward and forward+backward time and peak memory of
every available pycmlt backend against eager PyTorch (F.binary_cross_entropy_with_logits) and
torch.compile of it, all measured in one run."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks.ce import F32, SHAPES, describe
from benchmarks.harness import LossSuite, Shapes, generator
from pycmlt.ops import class_balanced_bce


def eager(x, t):
    return F.binary_cross_entropy_with_logits(x, t)


def make_inputs(shape, device):
    n, c, dtype = shape
    g = generator(device)
    x = (torch.randn(n, c, generator=g, device=device) * 2).to(dtype)
    t = (torch.rand(n, c, generator=g, device=device) < 0.05).to(dtype)  # sparse multi-hot labels
    return [x], (t,)


# CPU: issue 3's target case (N=4096, C=1000), then C scaling at N=2048.
BCE_SHAPES = Shapes(cpu=[(4096, 1000, F32)] + [(2048, c, F32) for c in (1000, 8192, 32000)], cuda=SHAPES.cuda,
                    quick_cpu=SHAPES.quick_cpu, quick_cuda=SHAPES.quick_cuda)


SUITE = LossSuite(
    name="bce",
    shapes=BCE_SHAPES,
    eager=eager,
    ours=lambda backend: lambda x, t: class_balanced_bce(x, t, backend=backend),
    make_inputs=make_inputs,
    describe=describe,
    bytes_moved=lambda s: 3 * s[0] * s[1] * s[2].itemsize,  # logits + targets read once, gradient written once
)
run = SUITE.run
