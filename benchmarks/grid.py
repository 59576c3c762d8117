"""Shape grid of the fused losses: forward+backward time of pycmlt against eager PyTorch and torch.compile
over a log grid of (N, C) from (32, 2) to (8192, 131072), for CE and BCE, plain and with long-tail options
(class-balanced weights + LDAM margins, logit adjustment, focal), in fp32 and bf16, all in one run.

Only forward+backward is timed, per case eager, pycmlt and torch.compile side by side (three interleaved
rounds, the median of the round medians, capped per timing), so that the ratios do not carry the machine's
drift between providers and the whole grid fits a time budget; the per-case forward / backward split and
memory are the ce and bce suites' job. The report draws a heat map of the speed ratio by (N, C) per variant
(benchmarks/report.py)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks.harness import (Measurement, budget_note, dtype_name, generator, interleaved_median_ms, over_budget,
                                ratios_against)
from pycmlt import nn as pnn
from pycmlt.ops import available_backends

F32, BF16 = torch.float32, torch.bfloat16
NS = (32, 128, 512, 2048, 8192)
CS = (2, 16, 128, 1024, 8192, 32768, 131072)
MAX_ELEMENTS = {"cpu": 1 << 24, "cuda": 1 << 30}  # logits per case: bounds the grid's run time and memory
ROUNDS = 3  # interleaved timing rounds per case (harness.interleaved_median_ms)
QUICK_NS, QUICK_CS = (32, 256), (2, 1024)  # --quick: a smoke test (torch.compile on its first case only)


def counts(c: int) -> torch.Tensor:
    """A long-tailed class distribution (imbalance 100) over c classes."""
    return torch.logspace(0, -2, c, dtype=torch.float64) * 1000 + 1


def _eager_ce(weight=None, margins=None, bias=None, scale=1.0, gamma=0.0):
    """The composite PyTorch users write for each long-tail option (the eager baseline)."""
    def loss(x, t):
        z = x.float()
        if bias is not None:
            z = z + bias
        if margins is not None:
            z = z - F.one_hot(t, z.shape[1]) * margins[t][:, None]
        z = z * scale
        if gamma == 0:
            return F.cross_entropy(z, t, weight=weight)
        log_p = z.log_softmax(1).gather(1, t[:, None]).squeeze(1)
        return ((-torch.expm1(log_p)).clamp_min(1e-38).pow(gamma) * -log_p).mean()
    return loss


def _eager_bce(weight=None, gamma=0.0):
    def loss(x, y):
        z, y = x.float(), y.float()
        if gamma == 0:
            return F.binary_cross_entropy_with_logits(z, y, weight=weight)
        p = torch.sigmoid(z)
        q = y * (1 - p) + (1 - y) * p
        return (q.pow(gamma) * F.binary_cross_entropy_with_logits(z, y, reduction="none")).mean()
    return loss


def variants(c: int, device: torch.device) -> dict:
    """name -> (loss kind, eager loss, pycmlt module) for c classes."""
    n_c = counts(c)
    cb = pnn.ClassBalancedCrossEntropy(n_c, beta=0.999, ldam_max_margin=0.5, ldam_scale=10.0).to(device)
    la = pnn.ClassBalancedCrossEntropy(n_c, logit_adjust_tau=1.0).to(device)
    bce_cb = pnn.ClassBalancedBCE(n_c, beta=0.999).to(device)
    return {
        "ce": ("ce", _eager_ce(), pnn.ClassBalancedCrossEntropy()),
        "ce cb+ldam": ("ce", _eager_ce(cb.class_weight, cb.margins, scale=10.0), cb),
        "ce logit-adjust": ("ce", _eager_ce(bias=la.logit_bias), la),
        "ce focal": ("ce", _eager_ce(gamma=2.0), pnn.ClassBalancedCrossEntropy(focal_gamma=2.0)),
        "bce": ("bce", _eager_bce(), pnn.ClassBalancedBCE()),
        "bce cb": ("bce", _eager_bce(bce_cb.weight), bce_cb),
        "bce focal": ("bce", _eager_bce(gamma=2.0), pnn.ClassBalancedBCE(focal_gamma=2.0)),
    }


def shapes(device: torch.device, quick: bool) -> list[tuple[int, int]]:
    ns, cs = (QUICK_NS, QUICK_CS) if quick else (NS, CS)
    return [(n, c) for n in ns for c in cs if n * c <= MAX_ELEMENTS[device.type]]


def _inputs(kind, n, c, dtype, device):
    g = generator(device)
    x = torch.randn(n, c, generator=g, device=device).to(dtype).requires_grad_(True)
    if kind == "ce":
        return x, torch.randint(0, c, (n,), generator=g, device=device)
    return x, (torch.rand(n, c, generator=g, device=device) < 0.05).to(dtype)


def _measure(providers: dict, x, other, device, repeat, budget_s) -> list[Measurement]:
    """Forward+backward time of each provider (name -> loss fn) on (x, other), measured side by side
    (interleaved rounds, harness.interleaved_median_ms). A provider whose first call fails is reported
    with its error and left out of the timing, not fatal."""
    found, calls = {}, {}
    for name, fn in providers.items():
        found[name] = m = Measurement(name)
        if over_budget():
            m.error = budget_note()
            continue
        call = (lambda fn: lambda: torch.autograd.grad(fn(x, other), x))(fn)
        try:
            call()  # compiles torch.compile's provider; a failing provider is reported here
        except Exception as exc:
            m.error = f"{type(exc).__name__}: {exc}"[:300]
            continue
        calls[name] = call
    if calls:
        # warmup=0: the call above was each provider's first; interleaved_median_ms still runs one more
        # untimed call per provider before its rounds
        timed = interleaved_median_ms(calls, device, warmup=0, repeat=repeat, rounds=ROUNDS, budget_s=budget_s)
        for name, ms in timed.items():
            found[name].fwd_bwd_ms = ms
    return list(found.values())


def run(device: torch.device, quick: bool = False) -> dict:
    repeat, budget_s = (3, 0.5) if quick else (9, 2.0)
    dtypes = (F32,) if quick else (F32, BF16)
    backend = next(b for b in available_backends(device) if b != "triton" or device.type == "cuda")
    cases = []
    # Per case eager, pycmlt and torch.compile side by side (interleaved); once the time budget is spent,
    # torch.compile (the slowest to set up) is skipped first and then the rest.
    for dtype in dtypes:
        for n, c in shapes(device, quick):
            found = variants(c, device)
            for name, (kind, eager, module) in found.items():
                if quick and name not in ("ce", "ce cb+ldam", "bce"):
                    continue
                module.backend = backend
                x, other = _inputs(kind, n, c, dtype, device)
                providers = {"eager": eager, f"pycmlt-{backend}": module}
                if not over_budget() and not (quick and cases):  # --quick: torch.compile on the first case only
                    torch._dynamo.reset()  # a fresh compile per case: no silent fallback past the cache limit
                    providers["torch.compile"] = torch.compile(eager)
                cases.append({"name": f"{name} N={n} C={c} {dtype_name(dtype)}", "variant": name, "n": n, "c": c,
                              "dtype": str(dtype),
                              "measurements": _measure(providers, x, other, device, repeat, budget_s)})
    for case in cases:
        case["baseline"] = "eager"
        case["ratios"] = ratios_against(case["measurements"], "eager")
        ours = next(m for m in case["measurements"] if m.provider.startswith("pycmlt-"))
        comp = next((m for m in case["measurements"] if m.provider == "torch.compile"), None)
        if comp is not None and comp.error is None and ours.error is None and ours.provider in case["ratios"]:
            case["ratios"][ours.provider]["speedup_vs_compile"] = comp.fwd_bwd_ms / ours.fwd_bwd_ms
    return {"cases": cases, "render": markdown,
            "settings": {"repeat": repeat, "rounds": ROUNDS, "budget_s_per_timing": budget_s,
                         "timed": "forward+backward only, eager / pycmlt / torch.compile interleaved per case",
                         "max_logits_per_case": MAX_ELEMENTS[device.type]}}


def slowest(payload: dict) -> dict | None:
    """The case where pycmlt's speed-up over eager is lowest."""
    found = [(r.get("speedup_fwd_bwd"), c) for c in payload["cases"] for p, r in c.get("ratios", {}).items()
             if p.startswith("pycmlt-") and r.get("speedup_fwd_bwd")]
    return min(found, key=lambda f: f[0])[1] if found else None


def markdown(payload: dict) -> str:
    """Per variant and dtype: a table of pycmlt's forward+backward speed-up over eager (and over
    torch.compile) by N (rows) and C (columns)."""
    from benchmarks.harness import fmt, machine_line

    lines = [f"# {payload['benchmark']} benchmark", "", machine_line(payload), "",
             "Cells: pycmlt speed-up over eager PyTorch (over torch.compile in brackets), forward+backward; "
             "> 1 is faster.", ""]
    worst = slowest(payload)
    if worst is not None:
        r = next(v for p, v in worst["ratios"].items() if p.startswith("pycmlt-"))
        lines += [f"Slowest shape: **{worst['name']}**, {fmt(r['speedup_fwd_bwd'], 'x')} eager.", ""]
    groups: dict = {}
    for case in payload["cases"]:
        groups.setdefault((case["variant"], case["dtype"]), []).append(case)
    for (variant, dtype), cases in groups.items():
        ns = sorted({c["n"] for c in cases})
        cs = sorted({c["c"] for c in cases})
        lines += [f"## {variant}, {dtype.replace('torch.', '')}", "",
                  "| N \\ C | " + " | ".join(str(c) for c in cs) + " |", "|---|" + "---:|" * len(cs)]
        by = {(c["n"], c["c"]): c for c in cases}
        for n in ns:
            cells = []
            for c in cs:
                case = by.get((n, c))
                r = next((v for p, v in case["ratios"].items() if p.startswith("pycmlt-")), {}) if case else {}
                cell = fmt(r.get("speedup_fwd_bwd"), "x") if r else "—"
                if r.get("speedup_vs_compile"):
                    cell += f" ({fmt(r['speedup_vs_compile'], 'x')})"
                cells.append(cell)
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
