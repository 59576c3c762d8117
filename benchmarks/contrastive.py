"""Cross-modal contrastive loss (CLIP and supervised): forward, backward and forward+backward time and
peak extra memory of the fused pycmlt backends against eager PyTorch (which materialises the N x M
similarity), torch.compile of it, and (GPU) a plain matmul with the FLOPs of the loss's forward and
backward, all measured in one run.

Targets (issue 4). CPU, N = M = 16384, D = 256, fp32, supervised with 100 classes: extra peak memory
of pycmlt-cpu <= 10% of N*M*4 bytes, forward+backward <= 1.5x the eager time. GPU (H100), N = M in
{8192, 32768, 131072}, D = 512, bf16: >= 1.5x eager at N = 32768 (eager OOMs at 131072: reported as an
error) and >= 60% of the matmul's throughput.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from benchmarks.harness import LossSuite, Shapes, dtype_name, generator
from pycmlt.ops import cross_modal_contrastive

LOGIT_SCALE = math.log(1 / 0.07)
# (N = M, D, dtype, classes or None for CLIP)
# CLIP at growing N for the memory-vs-N and time-vs-N curves, then the supervised target case.
CPU_SHAPES = [(n, 256, torch.float32, None) for n in (2048, 4096, 8192)] + [(16384, 256, torch.float32, 100)]
QUICK_CPU = [(256, 64, torch.float32, None), (512, 64, torch.float32, None)]
GPU_SHAPES = [(8192, 512, torch.bfloat16, None), (32768, 512, torch.bfloat16, None),
              (32768, 512, torch.bfloat16, 100), (131072, 512, torch.bfloat16, None)]
QUICK_GPU = [(8192, 512, torch.bfloat16, None)]
MATMUL_CHUNK = 8192


def eager_contrastive(a, b, labels, logit_scale=LOGIT_SCALE):
    """What one writes in plain PyTorch (the efficient form): S materialised, log-sum-exp per row and
    per column, the positives as a mask. Same loss as pycmlt's (symmetric, mean over anchors that have
    a positive; every anchor has one here)."""
    x, y = F.normalize(a.float(), dim=1), F.normalize(b.float(), dim=1)
    s = math.exp(logit_scale) * (x @ y.T)
    if labels is None:
        pos_row = s.diagonal()
        return 0.5 * ((s.logsumexp(1) - pos_row).mean() + (s.logsumexp(0) - pos_row).mean())
    pos = (labels[:, None] == labels[None, :]).to(s.dtype)
    ps = pos * s
    row = s.logsumexp(1) - ps.sum(1) / pos.sum(1)
    col = s.logsumexp(0) - ps.sum(0) / pos.sum(0)
    return 0.5 * (row.mean() + col.mean())


class _MatmulFlops(torch.autograd.Function):
    """A plain matmul workload with the FLOPs of a fused forward (S = A B^T: 2 N M D) and backward
    (dA = G B, dB = G^T A: 4 N M D), in column chunks so that it fits where the eager loss does not."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        out = torch.zeros((), device=a.device, dtype=torch.float32)
        for c in range(0, b.shape[0], MATMUL_CHUNK):
            out += (a @ b[c:c + MATMUL_CHUNK].T)[0, 0].float()
        return out

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        ga, gb = torch.zeros_like(a), torch.empty_like(b)
        g = torch.full((a.shape[0], min(MATMUL_CHUNK, b.shape[0])), 1e-4, device=a.device, dtype=a.dtype)
        for c in range(0, b.shape[0], MATMUL_CHUNK):
            bc = b[c:c + MATMUL_CHUNK]
            gc = g[:, :bc.shape[0]]
            ga += gc @ bc
            gb[c:c + MATMUL_CHUNK] = gc.T @ a
        return ga, gb


def make_inputs(shape, device):
    n, d, dtype, classes = shape
    g = generator(device)
    a = torch.randn(n, d, generator=g, device=device).to(dtype)
    b = torch.randn(n, d, generator=g, device=device).to(dtype)
    lab = None if classes is None else torch.randint(0, classes, (n,), generator=g, device=device)
    return [a, b], (lab,)


def describe(shape, device):
    n, d, dtype, classes = shape
    kind = "CLIP" if classes is None else f"supervised {classes} classes"
    return (f"{kind} N=M={n} D={d} {dtype_name(dtype)}",
            {"n": n, "m": n, "d": d, "dtype": str(dtype), "classes": classes, "kind": kind,
             "matrix_bytes_fp32": n * n * 4, "flops_fwd_bwd": 6 * n * n * d})


def peers(device):
    return {"matmul (same FLOPs)": lambda a, b, lab: _MatmulFlops.apply(a, b)} if device.type == "cuda" else {}


def annotate(results: list[dict]) -> None:
    """Peak memory as a fraction of one N x M fp32 matrix, and throughput in 6 N M D FLOPs per second."""
    for case in results:
        for m in case["measurements"]:
            if m.error is not None:
                continue
            if m.peak_bytes is not None:
                m.extra["peak_fraction_of_NxM_fp32"] = m.peak_bytes / case["matrix_bytes_fp32"]
            if m.fwd_bwd_ms:
                m.extra["tflops_6NMD"] = case["flops_fwd_bwd"] / (m.fwd_bwd_ms * 1e-3) / 1e12


SUITE = LossSuite(
    name="contrastive",
    shapes=Shapes(cpu=CPU_SHAPES, cuda=GPU_SHAPES, quick_cpu=QUICK_CPU, quick_cuda=QUICK_GPU),
    eager=eager_contrastive,
    ours=lambda backend: lambda a, b, lab: cross_modal_contrastive(a, b, labels=lab, logit_scale=LOGIT_SCALE,
                                                                   backend=backend),
    make_inputs=make_inputs,
    describe=describe,
    peers=peers,
    annotate=annotate,
    # an eager forward + backward at N = 16384 takes tens of seconds on a 2-core machine: the per-timing
    # budget then leaves one warm-up and one timed call
    repeats={"full": (2, 10), "quick": (1, 3)},
)
run = SUITE.run
