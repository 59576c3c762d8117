"""Alignment loss (1 - cos or squared distance, fused with the L2 normalisation): forward, backward and
forward+backward time and peak memory of the pycmlt backends against eager PyTorch and torch.compile
of it, measured in one run. The op is memory-bound: on GPU the fraction of the device copy bandwidth
is reported (bytes moved: a and b read once, both gradients written once)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks.harness import Case, copy_bandwidth_gbps, run_cases
from pycmlt.ops import alignment_loss, available_backends

CPU_SHAPES = [(65536, 512, torch.float32, "cosine"), (65536, 512, torch.float32, "mse")]
QUICK_CPU = [(8192, 512, torch.float32, "cosine")]
GPU_SHAPES = [(262144, 1024, dt, kind) for dt in (torch.float32, torch.bfloat16) for kind in ("cosine", "mse")]
QUICK_GPU = [(65536, 1024, torch.bfloat16, "cosine")]


def eager_alignment(a, b, kind):
    x, y = F.normalize(a, dim=1), F.normalize(b, dim=1)
    return (1 - (x * y).sum(1)).mean() if kind == "cosine" else (x - y).pow(2).sum(1).mean()


def providers(device: torch.device) -> dict:
    found = {"eager": eager_alignment, "torch.compile": torch.compile(eager_alignment)}
    for backend in available_backends(device):
        if backend == "torch" or (backend == "triton" and device.type == "cpu"):
            continue
        found[f"pycmlt-{backend}"] = (lambda be: lambda a, b, kind: alignment_loss(a, b, kind=kind, backend=be))(backend)
    return found


def cases(device: torch.device, quick: bool) -> list[Case]:
    shapes = (QUICK_GPU if quick else GPU_SHAPES) if device.type == "cuda" else (QUICK_CPU if quick else CPU_SHAPES)
    found = providers(device)
    out = []
    for n, d, dtype, kind in shapes:
        def make(n=n, d=d, dtype=dtype):
            g = torch.Generator().manual_seed(0)
            a = torch.randn(n, d, generator=g).to(device=device, dtype=dtype)
            b = (a.float() * 0.5 + torch.randn(n, d, generator=g).to(device)).to(dtype)
            return [a, b], (kind,)
        out.append(Case(f"{kind} N={n} D={d} {str(dtype).replace('torch.', '')}", make, found,
                        meta={"n": n, "d": d, "dtype": str(dtype), "kind": kind},
                        bytes_moved=4 * n * d * dtype.itemsize))
    return out


def run(device: torch.device, *, quick: bool = False) -> dict:
    warmup, repeat = (2, 5) if quick else (3, 15)
    copy_bw = copy_bandwidth_gbps(device) if device.type == "cuda" else None
    return {"cases": run_cases(cases(device, quick), device, warmup=warmup, repeat=repeat, copy_bw_gbps=copy_bw),
            "copy_bandwidth_gbps": copy_bw}
