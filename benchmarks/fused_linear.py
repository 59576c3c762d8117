"""Fused linear + class-balanced cross-entropy (a classifier or word-prediction head over a large
label space): forward, backward and forward+backward time and peak memory of the chunked pycmlt
backends against the eager reference F.cross_entropy(F.linear(h, W), t), torch.compile of it
(GPU), and Liger-Kernel's fused linear cross-entropy (GPU, when importable), in one run.
The gradient is taken with respect to hidden and the classifier weight."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks.harness import Case, run_cases
from pycmlt.ops import available_backends, default_chunk_rows, fused_linear_class_balanced_cross_entropy

CPU_SHAPES = [(4096, 512, 32000, torch.float32)]
GPU_SHAPES = [(16384, 2048, 32000, torch.bfloat16), (16384, 2048, 32000, torch.float32),
              (8192, 1024, 50257, torch.bfloat16)]
QUICK_CPU = [(512, 256, 8000, torch.float32)]
QUICK_GPU = [(4096, 1024, 32000, torch.bfloat16)]


def eager(h, w, t):
    return F.cross_entropy(F.linear(h, w), t)


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


def providers(device: torch.device) -> dict:
    """name -> loss(hidden, weight, target) for every provider that can run on `device`."""
    found = {"eager": eager}
    if device.type == "cuda":
        found["torch.compile"] = torch.compile(eager)
    for backend in available_backends(device):
        if backend == "torch" or (backend == "triton" and device.type == "cpu"):
            continue  # torch is the eager reference; the Triton interpreter is not worth timing
        found[f"pycmlt-{backend}"] = (lambda b: lambda h, w, t: fused_linear_class_balanced_cross_entropy(
            h, w, t, backend=b))(backend)
    if device.type == "cuda":
        liger = _liger()
        if liger is not None:
            found["liger"] = liger
    return found


def cases(device: torch.device, quick: bool) -> list[Case]:
    shapes = (QUICK_GPU if quick else GPU_SHAPES) if device.type == "cuda" else (QUICK_CPU if quick else CPU_SHAPES)
    found = providers(device)
    out = []
    for n, d, c, dtype in shapes:
        def make(n=n, d=d, c=c, dtype=dtype):
            g = torch.Generator().manual_seed(0)
            h = torch.randn(n, d, generator=g).to(device=device, dtype=dtype)
            w = (torch.randn(c, d, generator=g) / d ** 0.5).to(device=device, dtype=dtype)
            t = torch.randint(0, c, (n,), generator=g).to(device)
            return [h, w], (t,)
        chunk = default_chunk_rows(n, d, c, dtype.itemsize, device.type)
        out.append(Case(f"N={n} D={d} C={c} {str(dtype).replace('torch.', '')}", make, found,
                        meta={"n": n, "d": d, "c": c, "dtype": str(dtype), "pycmlt_chunk_rows": chunk,
                              "logits_mb": n * c * dtype.itemsize / 2**20}))
    return out


def run(device: torch.device, *, quick: bool = False) -> dict:
    if device.type == "cuda":
        warmup, repeat = (2, 5) if quick else (3, 10)
    else:
        warmup, repeat = (1, 3) if quick else (1, 5)
    return {"cases": run_cases(cases(device, quick), device, warmup=warmup, repeat=repeat)}
