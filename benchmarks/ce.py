"""Class-balanced cross-entropy: forward, backward and forward+backward time and peak memory of
every available pycmlt backend against eager PyTorch (F.cross_entropy), torch.compile of it, and
Liger-Kernel (GPU, when installed), all measured in one run."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks.harness import LossSuite, Shapes, dtype_name, generator, liger_cross_entropy_provider
from pycmlt.ops import class_balanced_cross_entropy

F32, BF16 = torch.float32, torch.bfloat16


def eager(x, t):
    return F.cross_entropy(x, t)


def make_inputs(shape, device):
    n, c, dtype = shape
    g = generator(device)
    x = torch.randn(n, c, generator=g, device=device).to(dtype)
    t = torch.randint(0, c, (n,), generator=g, device=device)
    return [x], (t,)


def describe(shape, device):
    n, c, dtype = shape
    return f"N={n} C={c} {dtype_name(dtype)}", {"n": n, "c": c, "dtype": str(dtype)}


def peers(device):
    liger = liger_cross_entropy_provider() if device.type == "cuda" else None
    return {"liger": liger} if liger else {}


# (N, C, dtype). CPU: issue 2's target shapes (N=4096, C=1000 and N=1024, C=32000), then C scaling
# at N=2048; GPU: C scaling at N=16384 (the bce suite uses the same GPU and quick shapes).
SHAPES = Shapes(cpu=[(4096, 1000, F32), (1024, 32000, F32)] + [(2048, c, F32) for c in (1000, 8192, 32000)],
                cuda=[(16384, c, dt) for dt in (BF16, F32) for c in (1000, 8192, 32000)],
                quick_cpu=[(256, 1000, F32)],
                quick_cuda=[(4096, 8192, BF16)])

SUITE = LossSuite(
    name="ce",
    shapes=SHAPES,
    eager=eager,
    ours=lambda backend: lambda x, t: class_balanced_cross_entropy(x, t, backend=backend),
    make_inputs=make_inputs,
    describe=describe,
    peers=peers,
    bytes_moved=lambda s: 2 * s[0] * s[1] * s[2].itemsize,  # logits read once + gradient written once
)
run = SUITE.run
