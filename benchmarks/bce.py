"""Class-balanced multi-label BCE: forward, backward and forward+backward time and peak memory of
every available pycmlt backend against eager PyTorch (F.binary_cross_entropy_with_logits) and
torch.compile of it, all measured in one run."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks.harness import Case, copy_bandwidth_gbps, run_cases
from pycmlt.ops import available_backends, class_balanced_bce

CPU_SHAPES = [(4096, 1000, torch.float32), (1024, 32000, torch.float32)]
GPU_SHAPES = [(16384, c, dt) for dt in (torch.float32, torch.bfloat16) for c in (1000, 8192, 32000)]
QUICK_CPU = [(512, 1000, torch.float32)]
QUICK_GPU = [(4096, 8192, torch.bfloat16)]


def providers(device: torch.device) -> dict:
    """name -> loss(logits, targets) for every provider that can run on `device`."""
    found = {
        "eager": lambda x, t: F.binary_cross_entropy_with_logits(x, t),
        "torch.compile": torch.compile(lambda x, t: F.binary_cross_entropy_with_logits(x, t)),
    }
    for backend in available_backends(device):
        if backend == "torch" or (backend == "triton" and device.type == "cpu"):
            continue  # torch is the eager reference; the Triton interpreter is not worth timing
        found[f"pycmlt-{backend}"] = (lambda b: lambda x, t: class_balanced_bce(x, t, backend=b))(backend)
    return found


def cases(device: torch.device, quick: bool) -> list[Case]:
    shapes = (QUICK_GPU if quick else GPU_SHAPES) if device.type == "cuda" else (QUICK_CPU if quick else CPU_SHAPES)
    found = providers(device)
    out = []
    for n, c, dtype in shapes:
        def make(n=n, c=c, dtype=dtype):
            g = torch.Generator().manual_seed(0)
            x = (torch.randn(n, c, generator=g) * 2).to(device=device, dtype=dtype)
            t = (torch.rand(n, c, generator=g) < 0.05).to(device=device, dtype=dtype)  # sparse multi-hot labels
            return [x], (t,)
        out.append(Case(f"N={n} C={c} {str(dtype).replace('torch.', '')}", make, found,
                        meta={"n": n, "c": c, "dtype": str(dtype)},
                        bytes_moved=3 * n * c * dtype.itemsize))  # logits + targets read once, gradient written once
    return out


def run(device: torch.device, *, quick: bool = False) -> dict:
    warmup, repeat = (2, 5) if quick else (3, 15)
    copy_bw = copy_bandwidth_gbps(device) if device.type == "cuda" else None
    return {"cases": run_cases(cases(device, quick), device, warmup=warmup, repeat=repeat, copy_bw_gbps=copy_bw),
            "copy_bandwidth_gbps": copy_bw}
