"""Fused linear + class-balanced cross-entropy (a classifier or word-prediction head over a large
label space): forward, backward and forward+backward time and peak memory of the chunked pycmlt
backends against the eager reference F.cross_entropy(F.linear(h, W), t), torch.compile of it, and
Liger-Kernel's fused linear cross-entropy (GPU, when importable), in one run.
The gradient is taken with respect to hidden and the classifier weight."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks.harness import LossSuite, Shapes, dtype_name, generator
from pycmlt.ops import default_chunk_rows, fused_linear_class_balanced_cross_entropy

F32, BF16 = torch.float32, torch.bfloat16


def eager(h, w, t):
    return F.cross_entropy(F.linear(h, w), t)


def make_inputs(shape, device):
    n, d, c, dtype = shape
    g = generator(device)
    h = torch.randn(n, d, generator=g, device=device).to(dtype)
    w = (torch.randn(c, d, generator=g, device=device) / d ** 0.5).to(dtype)
    t = torch.randint(0, c, (n,), generator=g, device=device)
    return [h, w], (t,)


def describe(shape, device):
    n, d, c, dtype = shape
    return (f"N={n} D={d} C={c} {dtype_name(dtype)}",
            {"n": n, "d": d, "c": c, "dtype": str(dtype), "logits_mb": n * c * dtype.itemsize / 2**20,
             "pycmlt_chunk_rows": default_chunk_rows(n, d, c, dtype.itemsize, device.type)})


def _liger():
    try:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss
    except Exception:
        return None
    loss_fn = LigerFusedLinearCrossEntropyLoss()

    def run(h, w, t):
        out = loss_fn(w, h, t)
        out = out[0] if isinstance(out, tuple) else out
        return getattr(out, "loss", out)

    return run


def peers(device):
    liger = _liger() if device.type == "cuda" else None
    return {"liger": liger} if liger else {}


SUITE = LossSuite(
    name="fused-linear",
    shapes=Shapes(cpu=[(4096, 512, c, F32) for c in (8000, 32000)],
                  cuda=[(16384, 2048, 32000, BF16), (8192, 1024, 50257, BF16), (16384, 2048, 32000, F32)],
                  quick_cpu=[(256, 64, 2000, F32)],
                  quick_cuda=[(4096, 1024, 32000, BF16)]),
    eager=eager,
    ours=lambda backend: lambda h, w, t: fused_linear_class_balanced_cross_entropy(h, w, t, backend=backend),
    make_inputs=make_inputs,
    describe=describe,
    peers=peers,
    repeats={"full": (2, 10), "quick": (1, 3)},
)
run = SUITE.run
