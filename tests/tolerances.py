"""Comparison rules for the op tests.

fp32: tight absolute/relative tolerances. fp16/bf16 (the rule of the best kernel libraries): compute
an fp32 ground truth from the same low-precision inputs and require our error to be no larger than
plain PyTorch's own low-precision error plus a small slack.
"""
import torch

FP32 = dict(rtol=1e-5, atol=1e-6)
SLACK = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2, torch.float32: 1e-5}


def max_err(value: torch.Tensor, truth: torch.Tensor) -> float:
    if value.numel() == 0:
        return 0.0
    return (value.double() - truth.double()).abs().max().item()


def assert_no_worse_than_torch(ours: torch.Tensor, torch_lowp: torch.Tensor, truth: torch.Tensor, what: str):
    """ours and torch_lowp in the low dtype, truth in fp32: our error <= PyTorch's error + slack."""
    dtype = ours.dtype
    scale = max(1.0, truth.abs().max().item()) if truth.numel() else 1.0
    allowed = max_err(torch_lowp, truth) + SLACK[dtype] * scale
    got = max_err(ours, truth)
    assert got <= allowed, f"{what}: error {got:.3g} > PyTorch {dtype} error + slack = {allowed:.3g}"


# fp32 results against a float64 truth (the fuzz tests): the fp32 rounding of sums over a few
# elements, relative to the larger of 1 and the truth's magnitude.
FP32_VS_FP64 = dict(rtol=1e-4, atol=1e-5)


def assert_close_to_fp64(value: torch.Tensor, truth: torch.Tensor, what: str):
    """An fp32 result against its float64 truth (NaN where the truth is NaN)."""
    scale = max(1.0, truth[torch.isfinite(truth)].abs().max().item()) if torch.isfinite(truth).any() else 1.0
    torch.testing.assert_close(value.double(), truth.double(), rtol=FP32_VS_FP64["rtol"],
                               atol=FP32_VS_FP64["atol"] * scale, equal_nan=True, msg=lambda m: f"{what}: {m}")
