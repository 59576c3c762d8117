"""Property-based fuzzing of every op on every CPU-reachable backend (torch, cpu, the Triton
interpreter) against the `torch` reference run in float64: forward, backward and (fp32) double
backward, over drawn shapes, strides (transposed, sliced, expanded inputs and targets), dtypes and
option combinations. Examples are derandomised by the profile in conftest.py."""
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tolerances import assert_close_to_fp64, assert_no_worse_than_torch

from pycmlt import ops

BACKENDS = [pytest.param(b, id=b) for b in ops.available_backends("cpu")]
FUZZ_SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
LAYOUTS = ("contiguous", "transposed", "sliced", "expanded")
DTYPES = (torch.float32, torch.float32, torch.float16, torch.bfloat16)  # fp32 twice: it gets double backward


def with_layout(values: torch.Tensor, layout: str) -> torch.Tensor:
    """A view holding `values` (or, for `expanded`, its first row repeated) with the layout's strides.
    The gaps of a sliced view hold NaN (or an out-of-range index), so reading them cannot pass."""
    if layout == "transposed" and values.dim() == 2:
        return values.T.contiguous().T
    if layout == "sliced" and values.dim() >= 1:
        gap = float("nan") if values.is_floating_point() else 10**6
        big = torch.full((2 * values.shape[0],) + tuple(values.shape[1:]), gap, dtype=values.dtype)
        big[::2] = values
        return big[::2]
    if layout == "expanded" and values.dim() >= 1 and values.shape[0] > 0:
        return values[:1].expand_as(values)
    return values


class Drawn:
    """Drawn values and a drawn layout; `as_(dtype)` is the strided view in that dtype."""

    def __init__(self, values: torch.Tensor, layout: str):
        self.values, self.layout = values, layout

    def as_(self, dtype, truth=False):
        values = self.values.to(dtype) if self.values.is_floating_point() else self.values
        if truth:  # float64 of the very same (rounded) values, contiguous
            return with_layout(values, self.layout).contiguous().to(
                torch.float64 if values.is_floating_point() else values.dtype)
        return with_layout(values, self.layout)


def drawn(draw, shape, *, low=-3.0, high=3.0, integer_high=None) -> Drawn:
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    if integer_high is not None:
        values = torch.randint(0, integer_high, shape, generator=g)
    else:
        values = torch.rand(shape, generator=g) * (high - low) + low
    return Drawn(values, draw(st.sampled_from(LAYOUTS)))


def run(fn, inputs: dict, diff: tuple, backend: str, second_order: bool):
    """(loss, grads of the `diff` inputs, hvp or None) of fn(backend, **inputs), all float64. A
    reduction='none' loss is weighted by fixed values before the backward passes."""
    leaves = [inputs[name].detach().requires_grad_(True) for name in diff]
    inputs = dict(inputs, **dict(zip(diff, leaves)))
    loss = fn(backend, **inputs)
    weights = torch.linspace(0.5, 1.5, loss.numel(), dtype=torch.float64).reshape(loss.shape)
    scalar = (loss.double() * weights).sum()
    grads = torch.autograd.grad(scalar, leaves, create_graph=second_order, allow_unused=True)
    grads = [torch.zeros_like(x) if g is None else g for g, x in zip(grads, leaves)]
    hvp = None
    if second_order:
        vs = [torch.linspace(-1, 1, x.numel(), dtype=x.dtype).reshape(x.shape) for x in leaves]
        inner = sum((g * v).sum() for g, v in zip(grads, vs))
        hs = torch.autograd.grad(inner, leaves, allow_unused=True) if inner.requires_grad else [None] * len(leaves)
        hvp = [torch.zeros_like(x).double() if h is None else h.detach().double() for h, x in zip(hs, leaves)]
    return loss.detach().double(), [g.detach().double() for g in grads], hvp


def check(fn, drawn_inputs: dict, diff: tuple, backend: str, dtype: torch.dtype):
    """Forward, backward (and for fp32 the hvp) of `backend` in `dtype` against the `torch` backend in
    float64 on the same values: fp32 within FP32_VS_FP64; fp16/bf16 no worse than the `torch` backend
    run in that dtype, plus the slack of tests/tolerances.py."""
    truth = run(fn, {k: v.as_(dtype, truth=True) for k, v in drawn_inputs.items()}, diff, "torch",
                second_order=dtype == torch.float32)
    got = run(fn, {k: v.as_(dtype) for k, v in drawn_inputs.items()}, diff, backend,
              second_order=dtype == torch.float32)
    names = ["loss"] + [f"d loss / d {n}" for n in diff]
    if dtype == torch.float32:
        for name, value, want in zip(names, [got[0]] + got[1], [truth[0]] + truth[1]):
            assert_close_to_fp64(value, want, name)
        for name, value, want in zip(diff, got[2], truth[2]):
            assert_close_to_fp64(value, want, f"hvp {name}")
        return
    lowp = run(fn, {k: v.as_(dtype) for k, v in drawn_inputs.items()}, diff, "torch", second_order=False)
    for name, value, base, want in zip(names, [got[0]] + got[1], [lowp[0]] + lowp[1], [truth[0]] + truth[1]):
        finite = torch.isfinite(want)
        assert torch.equal(torch.isfinite(value), finite), f"{name}: non-finite where the truth is finite"
        assert_no_worse_than_torch(value[finite].to(dtype), base[finite].to(dtype), want[finite].float(), name)


# ----------------------------------------------------------------------------- cross-entropy

@st.composite
def ce_cases(draw):
    n, c = draw(st.integers(0, 6)), draw(st.integers(1, 7))
    target = drawn(draw, (n,), integer_high=c)
    if n and draw(st.booleans()):
        target.values[draw(st.integers(0, n - 1))] = -100  # an ignored row
    target.values = target.values.to(draw(st.sampled_from((torch.int64, torch.int32))))
    opts = {"reduction": draw(st.sampled_from(("mean", "sum", "none"))), "ldam_scale": draw(st.sampled_from((1.0, 2.5)))}
    if draw(st.booleans()):
        opts.update(class_counts=[draw(st.integers(1, 50)) for _ in range(c)], beta=draw(st.sampled_from((0.0, 0.9))),
                    ldam_max_margin=draw(st.sampled_from((0.0, 0.5))),
                    logit_adjust_tau=draw(st.sampled_from((0.0, 1.0))))
    if draw(st.booleans()):
        opts["focal_gamma"] = draw(st.sampled_from((0.5, 2.0)))
    else:
        opts["label_smoothing"] = draw(st.sampled_from((0.0, 0.2)))
    return {"logits": drawn(draw, (n, c), low=-4, high=4), "target": target}, opts, draw(st.sampled_from(DTYPES))


@pytest.mark.parametrize("backend", BACKENDS)
@FUZZ_SETTINGS
@given(case=ce_cases())
def test_fuzz_cross_entropy(backend, case):
    inputs, opts, dtype = case
    check(lambda be, logits, target: ops.class_balanced_cross_entropy(logits, target, backend=be, **opts),
          inputs, ("logits",), backend, dtype)


# ----------------------------------------------------------------------------- BCE

@st.composite
def bce_cases(draw):
    n, c = draw(st.integers(0, 6)), draw(st.integers(1, 6))
    targets = drawn(draw, (n, c), low=0, high=1)
    if draw(st.booleans()):
        targets.values = targets.values.round()  # multi-hot
    inputs = {"logits": drawn(draw, (n, c), low=-5, high=5), "targets": targets}
    if draw(st.booleans()):
        inputs["weight"] = drawn(draw, (c,), low=0.1, high=2)
    if draw(st.booleans()):
        inputs["pos_weight"] = drawn(draw, (c,), low=0.5, high=3)
    opts = {"reduction": draw(st.sampled_from(("mean", "sum", "none"))),
            "focal_gamma": draw(st.sampled_from((0.0, 0.0, 1.0, 2.0)))}
    return inputs, opts, draw(st.sampled_from(DTYPES))


@pytest.mark.parametrize("backend", BACKENDS)
@FUZZ_SETTINGS
@given(case=bce_cases())
def test_fuzz_bce(backend, case):
    inputs, opts, dtype = case
    check(lambda be, logits, targets, **weights: ops.class_balanced_bce(logits, targets, backend=be, **weights, **opts),
          inputs, ("logits",), backend, dtype)


# ----------------------------------------------------------------------------- alignment

@st.composite
def alignment_cases(draw):
    n, d = draw(st.integers(0, 6)), draw(st.integers(0, 6))
    opts = {"kind": draw(st.sampled_from(("cosine", "mse"))), "normalize": draw(st.booleans()),
            "reduction": draw(st.sampled_from(("mean", "sum", "none")))}
    return {"a": drawn(draw, (n, d)), "b": drawn(draw, (n, d))}, opts, draw(st.sampled_from(DTYPES))


@pytest.mark.parametrize("backend", BACKENDS)
@FUZZ_SETTINGS
@given(case=alignment_cases())
def test_fuzz_alignment(backend, case):
    inputs, opts, dtype = case
    check(lambda be, a, b: ops.alignment_loss(a, b, backend=be, **opts), inputs, ("a", "b"), backend, dtype)


# ----------------------------------------------------------------------------- contrastive

@st.composite
def contrastive_cases(draw):
    n, d = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    supervised = draw(st.booleans())
    m = draw(st.integers(1, 6)) if supervised else n
    inputs = {"a": drawn(draw, (n, d)), "b": drawn(draw, (m, d))}
    opts = {"logit_scale": draw(st.sampled_from((-1.0, 0.0, 1.5, 3.0))), "normalize": draw(st.booleans()),
            "symmetric": draw(st.booleans()), "reduction": draw(st.sampled_from(("mean", "sum", "none")))}
    if supervised:
        inputs["labels"] = drawn(draw, (n,), integer_high=3)
        inputs["b_labels"] = drawn(draw, (m,), integer_high=3)
        if draw(st.booleans()):
            opts.update(class_counts=[5, 2, 1], beta=0.9)
    return inputs, opts, draw(st.sampled_from(DTYPES))


@pytest.mark.parametrize("backend", BACKENDS)
@FUZZ_SETTINGS
@given(case=contrastive_cases())
def test_fuzz_contrastive(backend, case):
    inputs, opts, dtype = case
    check(lambda be, a, b, **labels: ops.cross_modal_contrastive(a, b, backend=be, **labels, **opts), inputs,
          ("a", "b"), backend, dtype)


# ----------------------------------------------------------------------------- fused linear + CE

@st.composite
def fused_linear_cases(draw):
    n, d, c = draw(st.integers(0, 6)), draw(st.integers(0, 5)), draw(st.integers(1, 6))
    inputs = {"hidden": drawn(draw, (n, d), low=-2, high=2), "weight": drawn(draw, (c, d), low=-1, high=1),
              "target": drawn(draw, (n,), integer_high=c)}
    if draw(st.booleans()):
        inputs["bias"] = drawn(draw, (c,), low=-1, high=1)
    opts = {"reduction": draw(st.sampled_from(("mean", "sum", "none"))),
            "chunk_rows": draw(st.sampled_from((None, 1, 2, 4))),
            "label_smoothing": draw(st.sampled_from((0.0, 0.1)))}
    if draw(st.booleans()):
        opts.update(class_counts=[draw(st.integers(1, 30)) for _ in range(c)], beta=0.9, ldam_max_margin=0.3)
    return inputs, opts, draw(st.sampled_from(DTYPES))


@pytest.mark.parametrize("backend", BACKENDS)
@FUZZ_SETTINGS
@given(case=fused_linear_cases())
def test_fuzz_fused_linear_cross_entropy(backend, case):
    inputs, opts, dtype = case
    diff = tuple(k for k in ("hidden", "weight", "bias") if k in inputs)
    check(lambda be, hidden, weight, target, bias=None: ops.fused_linear_class_balanced_cross_entropy(
        hidden, weight, target, bias, backend=be, **opts), inputs, diff, backend, dtype)
