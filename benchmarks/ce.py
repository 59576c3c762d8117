"""Class-balanced cross-entropy: forward, backward and forward+backward time and peak memory of
every available pycmlt backend against eager PyTorch (F.cross_entropy), torch.compile of it, and
Liger-Kernel (GPU, when installed), all measured in one run."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks.harness import Case, copy_bandwidth_gbps, run_cases
from pycmlt.ops import available_backends, class_balanced_cross_entropy

CPU_SHAPES = [(4096, 1000, torch.float32), (1024, 32000, torch.float32)]
GPU_SHAPES = [(16384, c, dt) for dt in (torch.float32, torch.bfloat16) for c in (1000, 8192, 32000)]
QUICK_CPU = [(512, 1000, torch.float32), (128, 32000, torch.float32)]
QUICK_GPU = [(4096, 8192, torch.bfloat16)]


def providers(device: torch.device) -> dict:
    """name -> loss(logits, target) for every provider that can run on `device`."""
    found = {
        "eager": lambda x, t: F.cross_entropy(x, t),
        "torch.compile": torch.compile(lambda x, t: F.cross_entropy(x, t)),
    }
    for backend in available_backends(device):
        if backend == "torch" or (backend == "triton" and device.type == "cpu"):
            continue  # torch is the eager reference; the Triton interpreter is not worth timing
        found[f"pycmlt-{backend}"] = (lambda b: lambda x, t: class_balanced_cross_entropy(x, t, backend=b))(backend)
    if device.type == "cuda":
        try:
            from liger_kernel.transformers.functional import liger_cross_entropy

            found["liger"] = lambda x, t: liger_cross_entropy(x, t)
        except Exception:
            pass
    return found


def cases(device: torch.device, quick: bool) -> list[Case]:
    shapes = (QUICK_GPU if quick else GPU_SHAPES) if device.type == "cuda" else (QUICK_CPU if quick else CPU_SHAPES)
    found = providers(device)
    out = []
    for n, c, dtype in shapes:
        def make(n=n, c=c, dtype=dtype):
            g = torch.Generator().manual_seed(0)
            x = torch.randn(n, c, generator=g).to(device=device, dtype=dtype)
            t = torch.randint(0, c, (n,), generator=g).to(device)
            return [x], (t,)
        out.append(Case(f"N={n} C={c} {str(dtype).replace('torch.', '')}", make, found,
                        meta={"n": n, "c": c, "dtype": str(dtype)},
                        bytes_moved=2 * n * c * dtype.itemsize))  # logits read once + gradient written once
    return out


def run(device: torch.device, *, quick: bool = False) -> dict:
    warmup, repeat = (2, 5) if quick else (3, 15)
    copy_bw = copy_bandwidth_gbps(device) if device.type == "cuda" else None
    return {"cases": run_cases(cases(device, quick), device, warmup=warmup, repeat=repeat, copy_bw_gbps=copy_bw),
            "copy_bandwidth_gbps": copy_bw}
