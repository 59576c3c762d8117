"""Alignment loss (1 - cos or squared distance, fused with the L2 normalisation): forward, backward and
forward+backward time and peak memory of the pycmlt backends against eager PyTorch and torch.compile
of it, measured in one run. The op is memory-bound: on GPU the fraction of the device copy bandwidth
is reported (bytes moved: a and b read once, both gradients written once)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks.harness import LossSuite, Shapes, dtype_name, generator
from pycmlt.ops import alignment_loss

F32, BF16 = torch.float32, torch.bfloat16


def eager(a, b, kind):
    x, y = F.normalize(a, dim=1), F.normalize(b, dim=1)
    return (1 - (x * y).sum(1)).mean() if kind == "cosine" else (x - y).pow(2).sum(1).mean()


def make_inputs(shape, device):
    n, d, dtype, kind = shape
    g = generator(device)
    a = torch.randn(n, d, generator=g, device=device).to(dtype)
    b = (a.float() * 0.5 + torch.randn(n, d, generator=g, device=device)).to(dtype)
    return [a, b], (kind,)


def describe(shape, device):
    n, d, dtype, kind = shape
    return f"{kind} N={n} D={d} {dtype_name(dtype)}", {"n": n, "d": d, "dtype": str(dtype), "kind": kind}


SUITE = LossSuite(
    name="alignment",
    shapes=Shapes(cpu=[(65536, 512, F32, "cosine"), (65536, 512, F32, "mse")],
                  cuda=[(262144, 1024, dt, kind) for dt in (BF16, F32) for kind in ("cosine", "mse")],
                  quick_cpu=[(2048, 256, F32, "cosine")],
                  quick_cuda=[(65536, 1024, BF16, "cosine")]),
    eager=eager,
    ours=lambda backend: lambda a, b, kind: alignment_loss(a, b, kind=kind, backend=backend),
    make_inputs=make_inputs,
    describe=describe,
    bytes_moved=lambda s: 4 * s[0] * s[1] * s[2].itemsize,
)
run = SUITE.run
