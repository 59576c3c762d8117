"""What every benchmark shares: timing (median after warm-up, CUDA events on GPU, capped by a time
budget), peak memory (CUDA max-allocated on GPU, peak-RSS delta on CPU), the machine description,
the provider set of a loss suite (eager reference, torch.compile of it, every pycmlt backend, peers),
and writing results as JSON plus a markdown table.

A loss suite is declared once as a `LossSuite` (shapes, the eager reference, the pycmlt op, how to
build inputs); `LossSuite.run` measures every provider on every case and computes the ratios
against the eager reference within the same run.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SCHEMA_VERSION = 2

# ------------------------------------------------------------------------------------ time budget

_deadline: float | None = None


def set_time_budget(seconds: float | None) -> None:
    """From now on, measurements stop once `seconds` have passed: providers not yet measured are
    reported as skipped (so a run under a hard time limit still writes what it measured)."""
    global _deadline
    _deadline = None if seconds is None else time.monotonic() + seconds


def over_budget() -> bool:
    return _deadline is not None and time.monotonic() > _deadline


def budget_note() -> str:
    return "skipped: the run's time budget (--time-budget) was spent before this measurement"


# ------------------------------------------------------------------------------------ timing

def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


SAMPLE_S = 2e-3  # CPU: calls shorter than this are timed in batches lasting about this long
MAX_BATCH = 200


def median_ms(fn: Callable[..., object], device: torch.device, *, warmup: int, repeat: int,
              setup: Callable[[], object] | None = None, budget_s: float | None = None,
              stats: dict | None = None) -> float:
    """Median time of fn() in milliseconds (CUDA events on GPU, perf_counter on CPU).

    setup() (untimed) runs before each call and its result is fn's argument. With `budget_s`, a
    warm-up call slower than budget_s / 2 ends the warm-up, and timed calls stop once their total
    passes budget_s (at least one is timed): slow configurations get fewer repeats, not a longer run.
    On the CPU without setup, a call shorter than SAMPLE_S is timed in batches of calls that last
    about SAMPLE_S each (a sample is the batch's mean): single calls of tens of microseconds are
    dominated by timer and scheduler noise. `stats` (a dict) receives the number of timed samples
    and the calls per sample.
    """
    def call():
        arg = setup() if setup else None
        synchronize(device)
        t0 = time.perf_counter()
        fn() if setup is None else fn(arg)
        synchronize(device)
        return time.perf_counter() - t0

    warm: list[float] = []
    for _ in range(warmup):
        warm.append(call())
        if warm[-1] > (budget_s or float("inf")) / 2 or over_budget():
            break
    batch = 1
    if device.type != "cuda" and setup is None:
        once = min(warm) if warm else call()
        if once < SAMPLE_S:  # a short call: two more probes, then batches of about SAMPLE_S
            once = min([once, call(), call()])
            batch = max(1, min(MAX_BATCH, int(SAMPLE_S / max(once, 1e-9))))
    times: list[float] = []
    while len(times) < repeat:
        arg = setup() if setup else None
        synchronize(device)
        if batch > 1:
            t0 = time.perf_counter()
            for _ in range(batch):
                fn()
            times.append((time.perf_counter() - t0) * 1e3 / batch)
        elif device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn() if setup is None else fn(arg)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn() if setup is None else fn(arg)
            times.append((time.perf_counter() - t0) * 1e3)
        if (budget_s is not None and sum(times) * batch > budget_s * 1e3) or over_budget():
            break
    if stats is not None:
        stats["timed_calls"] = len(times)
        stats["calls_per_sample"] = batch
    return statistics.median(times)


def interleaved_median_ms(fns: dict[str, Callable[[], object]], device: torch.device, *, warmup: int,
                          repeat: int, rounds: int = 3, budget_s: float | None = None) -> dict[str, float]:
    """Median times (ms) of several providers measured side by side: after each one's warm-up, `rounds`
    rounds that each time every provider in turn (median_ms, about repeat / rounds samples, budget_s /
    rounds), and per provider the median of its round medians. A machine whose speed drifts over
    seconds (other load, memory state, clocks) then shifts every provider alike, where timing one
    provider after another would put the drift into their ratio."""
    for fn in fns.values():
        median_ms(fn, device, warmup=warmup, repeat=1, budget_s=budget_s)
    per_round = max(1, -(-repeat // rounds))
    round_budget = None if budget_s is None else budget_s / rounds
    found: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            found[name].append(median_ms(fn, device, warmup=0, repeat=per_round, budget_s=round_budget))
        if over_budget():
            break
    return {name: statistics.median(times) for name, times in found.items()}


# ------------------------------------------------------------------------------------ memory

def _proc_status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        match = re.search(rf"{key}:\s+(\d+) kB", f.read())
    return int(match.group(1)) * 1024 if match else 0


def _glibc_return_freed_memory() -> None:
    """Make glibc hand large freed blocks back to the OS at once (fixed mmap threshold), so that the
    resident-set peak of one call reflects that call's allocations rather than recycled heap pages."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_mmap_threshold, m_trim_threshold = -3, -1
        libc.mallopt(m_mmap_threshold, 128 * 1024)
        libc.mallopt(m_trim_threshold, 128 * 1024)
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def cpu_peak_tracking_available() -> bool:
    return os.path.exists("/proc/self/clear_refs") and _proc_status_bytes("VmHWM") > 0


def peak_memory_bytes(fn: Callable[[], object], device: torch.device) -> int | None:
    """Extra memory at the peak of one fn() call beyond what was live before it.

    GPU: torch.cuda.max_memory_allocated delta. CPU: peak resident set size (VmHWM, reset through
    /proc/self/clear_refs) minus the resident size before the call; None where Linux can't tell.
    """
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    if not cpu_peak_tracking_available():
        return None
    _glibc_return_freed_memory()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _proc_status_bytes("VmRSS")
    fn()
    return max(0, _proc_status_bytes("VmHWM") - before)


def memory_method(device: torch.device) -> str:
    if device.type == "cuda":
        return "torch.cuda.max_memory_allocated() minus the allocated bytes before one forward+backward"
    return "peak resident set (VmHWM, reset through /proc/self/clear_refs) minus the resident set before one forward+backward"


def copy_bandwidth_gbps(device: torch.device, nbytes: int = 1 << 30) -> float:
    """Measured device-to-device copy bandwidth (bytes read + bytes written per second) in GB/s."""
    src = torch.empty(nbytes // 2, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src), device, warmup=3, repeat=20)
    return 2 * src.numel() / (ms * 1e-3) / 1e9


# ------------------------------------------------------------------------------------ machine

def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else None
    except Exception:
        return None


def git_commit() -> str | None:
    """The checkout's commit (short hash), or $PYCMLT_GIT_COMMIT where the copy has no .git."""
    return _git("rev-parse", "--short", "HEAD") or os.environ.get("PYCMLT_GIT_COMMIT") or None


def git_dirty() -> bool | None:
    """True when tracked files differ from the commit (the measured code is not exactly `git_commit`);
    the results and the README, which a benchmark run itself rewrites, don't count."""
    out = _git("status", "--porcelain", "--untracked-files=no", "--", ":(top)",
               ":(top,exclude)benchmarks/results", ":(top,exclude)README.md")
    return None if out is None else bool(out)


def machine_info(device: torch.device) -> dict:
    info = {
        "hostname": platform.node(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "triton": _version("triton"),
        "cuda": torch.version.cuda,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
        "git_commit": git_commit(),
        "git_dirty": git_dirty(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu_memory_gb"] = round(props.total_memory / 1e9, 1)
        info["gpu_capability"] = f"{props.major}.{props.minor}"
    return info


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except Exception:
        return None


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ------------------------------------------------------------------------------------ cases

@dataclass
class Measurement:
    """One provider on one case."""
    provider: str
    fwd_ms: float | None = None
    bwd_ms: float | None = None
    fwd_bwd_ms: float | None = None
    peak_bytes: int | None = None
    error: str | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class Case:
    """One benchmark shape: inputs built on demand, and the providers that compute a loss from them.

    make_inputs() returns (leaves, others): the tensors the gradient is taken with respect to, and
    any other arguments. Each provider is called as provider(*leaves, *others) and returns a loss.
    """
    name: str
    make_inputs: Callable[[], tuple[list[torch.Tensor], tuple]]
    providers: dict[str, Callable[..., torch.Tensor]]
    baseline: str = "eager"
    meta: dict = field(default_factory=dict)
    bytes_moved: int | None = None  # minimal DRAM traffic of fwd+bwd, for the bandwidth fraction


def _measure_time(name, fn, leaves, others, device, warmup, repeat, budget_s) -> Measurement:
    def forward():
        return fn(*leaves, *others)

    def fwd_bwd():
        torch.autograd.grad(forward(), leaves)

    m = Measurement(name)
    if over_budget():
        m.error = budget_note()
        return m
    try:
        calls = {}
        for key, kwargs in (("fwd_ms", dict(fn=forward)),
                            ("bwd_ms", dict(fn=lambda loss: torch.autograd.grad(loss, leaves), setup=forward)),
                            ("fwd_bwd_ms", dict(fn=fwd_bwd))):
            stats = {}
            setattr(m, key, median_ms(device=device, warmup=warmup, repeat=repeat, budget_s=budget_s, stats=stats,
                                      **kwargs))
            calls[key.removesuffix("_ms")] = stats["timed_calls"]
        m.extra["timed_calls"] = calls
    except Exception as exc:  # a provider that fails (OOM, unsupported shape) is reported, not fatal
        m.error = f"{type(exc).__name__}: {exc}"[:500]
        m.fwd_ms = m.bwd_ms = m.fwd_bwd_ms = None
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return m


def is_priority(provider: str, baseline: str = "eager") -> bool:
    """The baseline and pycmlt's own backends are measured first, on every case, before torch.compile
    and the peers: under a time budget (a GPU run) compiling must not crowd out the main comparison."""
    return provider == baseline or provider.startswith("pycmlt-")


def run_cases(cases: list[Case], device: torch.device, *, warmup: int, repeat: int,
              copy_bw_gbps: float | None = None, budget_s: float | None = None) -> list[dict]:
    """Times every provider of every case (the baseline and pycmlt on all cases first, then the
    others), then measures peak memory in a last sweep (the CPU memory probe changes the allocator's
    behaviour, so it must not run before any timing). Each case's inputs are made once."""
    inputs: dict[int, tuple[list[torch.Tensor], tuple]] = {}

    def case_inputs(i: int):
        if i not in inputs:
            leaves, others = cases[i].make_inputs()
            inputs[i] = ([t.detach().requires_grad_(True) for t in leaves], others)
        return inputs[i]

    measured: list[dict[str, Measurement]] = [{} for _ in cases]
    for first in (True, False):
        for i, case in enumerate(cases):
            for name, fn in case.providers.items():
                if is_priority(name, case.baseline) == first:
                    leaves, others = case_inputs(i)
                    measured[i][name] = _measure_time(name, fn, leaves, others, device, warmup, repeat, budget_s)
    results = [[ms[name] for name in case.providers] for case, ms in zip(cases, measured)]
    for i, (case, ms) in enumerate(zip(cases, results)):
        leaves, others = case_inputs(i)
        for m in ms:
            if copy_bw_gbps and case.bytes_moved and m.fwd_bwd_ms:
                m.extra["bandwidth_fraction"] = case.bytes_moved / (m.fwd_bwd_ms * 1e-3) / (copy_bw_gbps * 1e9)
            if m.error is not None or (over_budget() and m.fwd_bwd_ms > 2000):
                continue  # one call each: past the time budget only where that call is quick
            fn = case.providers[m.provider]
            try:
                m.peak_bytes = peak_memory_bytes(lambda: torch.autograd.grad(fn(*leaves, *others), leaves), device)
            except Exception as exc:
                m.error = f"{type(exc).__name__} while measuring memory: {exc}"[:500]
    inputs.clear()
    return [{"name": c.name, **c.meta, "baseline": c.baseline, "bytes_moved": c.bytes_moved, "measurements": ms,
             "ratios": ratios_against(ms, c.baseline)} for c, ms in zip(cases, results)]


def ratios_against(measurements: list[Measurement], baseline: str) -> dict[str, dict[str, float | None]]:
    """Speed-up (baseline time / provider time) and memory ratio (provider / baseline) per provider."""
    base = next((m for m in measurements if m.provider == baseline and m.error is None), None)
    out = {}
    for m in measurements:
        if base is None or m.error is not None:
            continue
        out[m.provider] = {
            "speedup_fwd_bwd": _div(base.fwd_bwd_ms, m.fwd_bwd_ms),
            "speedup_fwd": _div(base.fwd_ms, m.fwd_ms),
            "speedup_bwd": _div(base.bwd_ms, m.bwd_ms),
            "memory_ratio": _div(m.peak_bytes, base.peak_bytes),
        }
    return out


def _div(a, b):
    return None if a is None or b in (None, 0) else a / b


# ------------------------------------------------------------------------------------ loss suites

def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def generator(device: torch.device, seed: int = 0) -> torch.Generator:
    """The generator a suite draws its inputs from, on the device itself (making GPU-sized inputs on
    the CPU and copying them over would cost seconds of a time-budgeted GPU run)."""
    return torch.Generator(device=device).manual_seed(seed)


@dataclass
class Shapes:
    """The cases of a suite per device, full and --quick."""
    cpu: list
    cuda: list
    quick_cpu: list
    quick_cuda: list

    def pick(self, device: torch.device, quick: bool) -> list:
        if device.type == "cuda":
            return self.quick_cuda if quick else self.cuda
        return self.quick_cpu if quick else self.cpu


def pycmlt_providers(device: torch.device, make: Callable[[str], Callable]) -> dict:
    """'pycmlt-<backend>' -> provider for every fast backend that runs on `device` (the `torch`
    backend is the eager reference itself; the Triton CPU interpreter is a test tool, not timed)."""
    from pycmlt.ops import available_backends

    return {f"pycmlt-{b}": make(b) for b in available_backends(device)
            if b != "torch" and not (b == "triton" and device.type == "cpu")}


def liger_cross_entropy_provider() -> Callable | None:
    """Liger-Kernel's cross-entropy as loss(logits, target), or None when it is not importable."""
    try:
        from liger_kernel.transformers.functional import liger_cross_entropy
    except Exception:
        return None
    return lambda x, t: liger_cross_entropy(x, t)


@dataclass
class LossSuite:
    """A loss benchmark declared once.

    make_inputs(shape, device) -> (leaves, others): the gradient is taken w.r.t. the leaves; every
    provider is called as provider(*leaves, *others). describe(shape, device) -> (case name, meta).
    ours(backend) -> the pycmlt provider for that backend. peers(device) -> {name: provider}.
    bytes_moved(shape) -> the minimal DRAM traffic of forward+backward (GPU bandwidth fraction).
    annotate(results) adds suite-specific figures to the measured cases.
    """
    name: str
    shapes: Shapes
    eager: Callable
    ours: Callable[[str], Callable]
    make_inputs: Callable[[tuple, torch.device], tuple[list, tuple]]
    describe: Callable[[tuple, torch.device], tuple[str, dict]]
    peers: Callable[[torch.device], dict] = lambda device: {}
    bytes_moved: Callable[[tuple], int] | None = None
    annotate: Callable[[list[dict]], None] | None = None
    # (warm-up, repeat) and the seconds one timing may take (fewer repeats beyond it)
    repeats: dict = field(default_factory=lambda: {"full": (3, 15), "quick": (1, 3)})
    budget_s: dict = field(default_factory=lambda: {"cpu": 15.0, "cuda": 3.0, "quick": 1.0})

    def providers(self, device: torch.device) -> dict:
        """eager, torch.compile of eager, every pycmlt backend, then the peers (see is_priority for the
        order in which they are measured)."""
        found = {"eager": self.eager, "torch.compile": torch.compile(self.eager)}
        found.update(pycmlt_providers(device, self.ours))
        found.update(self.peers(device))
        return found

    def cases(self, device: torch.device, quick: bool) -> list[Case]:
        found = self.providers(device)
        out = []
        for shape in self.shapes.pick(device, quick):
            name, meta = self.describe(shape, device)
            out.append(Case(name, (lambda s=shape: self.make_inputs(s, device)), found, meta=meta,
                            bytes_moved=self.bytes_moved(shape) if self.bytes_moved else None))
        return out

    def run(self, device: torch.device, *, quick: bool = False) -> dict:
        warmup, repeat = self.repeats["quick" if quick else "full"]
        budget = self.budget_s["quick" if quick else device.type]
        copy_bw = copy_bandwidth_gbps(device) if device.type == "cuda" and self.bytes_moved else None
        results = run_cases(self.cases(device, quick), device, warmup=warmup, repeat=repeat,
                            copy_bw_gbps=copy_bw, budget_s=budget)
        if self.annotate:
            self.annotate(results)
        return {"cases": results, "copy_bandwidth_gbps": copy_bw,
                "settings": {"warmup": warmup, "repeat": repeat, "budget_s_per_timing": budget,
                             "memory": memory_method(device)}}


# ------------------------------------------------------------------------------------ output

def write_results(name: str, device: torch.device, cases: list[dict], *, out_dir: Path | None = None,
                  extra: dict | None = None, quick: bool = False,
                  render: Callable[[dict], str] | None = None) -> tuple[Path, Path]:
    """<out_dir>/<name>[-quick]-<device kind>.json and .md; returns both paths. `render` turns the
    payload into the markdown (default: the loss fwd/bwd table of markdown_report)."""
    out_dir = Path(out_dir or RESULTS_DIR)
    out_dir.mkdir(parents=True, exist_ok=True)
    machine = machine_info(device)
    label = name + ("-quick" if quick else "")
    payload = {"schema": SCHEMA_VERSION, "benchmark": label, "suite": name, "quick": quick,
               "device_type": device.type, "machine": machine, **(extra or {}), "cases": cases}
    stem = f"{label}-{device.type}"
    json_path = out_dir / f"{stem}.json"
    text = json.dumps(payload, indent=2, default=_jsonable) + "\n"
    json_path.write_text(text)
    md_path = out_dir / f"{stem}.md"
    md_path.write_text((render or markdown_report)(json.loads(text)))
    return json_path, md_path


def _jsonable(value):
    if isinstance(value, Measurement):
        return value.__dict__
    if isinstance(value, (torch.dtype, torch.device)):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def machine_line(payload: dict) -> str:
    m = payload["machine"]
    where = (f"**{m['device_name']}** ({m.get('gpu_memory_gb', '?')} GB, CUDA {m.get('cuda')}; host: {m['cpu']})"
             if payload.get("device_type", "cpu") == "cuda" or str(m.get("device", "")).startswith("cuda")
             else f"**{m['device_name']}** ({m['cpu_count']} CPU cores, {m['torch_threads']} torch threads)")
    commit = m.get("git_commit") or "unknown"
    if m.get("git_dirty"):
        commit += " + local changes"
    return f"Measured on {where}, torch {m['torch']}, triton {m['triton']}, commit {commit}, {m['date']}."


def markdown_report(payload: dict) -> str:
    lines = [f"# {payload['benchmark']} benchmark", "", machine_line(payload), ""]
    bw = payload.get("copy_bandwidth_gbps")
    if bw:
        lines += [f"Device copy bandwidth (read + write): {bw:.0f} GB/s.", ""]
    lines += ["| case | provider | fwd ms | bwd ms | fwd+bwd ms | speed-up vs baseline | peak extra MB | memory vs baseline |"
              + (" % of copy BW |" if bw else ""),
              "|---|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if bw else "")]
    for case in payload["cases"]:
        for meas in case["measurements"]:
            r = case.get("ratios", {}).get(meas["provider"], {})
            if meas.get("error"):
                lines.append(f"| {case['name']} | {meas['provider']} | — | — | — | — | — | — |" + (" — |" if bw else "")
                             + f" <!-- {meas['error'][:80]} -->")
                continue
            row = (f"| {case['name']} | {meas['provider']} | {fmt(meas['fwd_ms'])} | {fmt(meas['bwd_ms'])} | "
                   f"{fmt(meas['fwd_bwd_ms'])} | {fmt(r.get('speedup_fwd_bwd'), 'x')} | "
                   f"{fmt(None if meas['peak_bytes'] is None else meas['peak_bytes'] / 2**20)} | "
                   f"{fmt(r.get('memory_ratio'), 'x')} |")
            if bw:
                row += f" {fmt(meas.get('extra', {}).get('bandwidth_fraction'), '', pct=True)} |"
            lines.append(row)
    failed = [f"- {c['name']} / {m['provider']}: {m['error']}" for c in payload["cases"]
              for m in c["measurements"] if m.get("error")]
    if failed:
        lines += ["", "Providers that could not run:", *failed]
    return "\n".join(lines) + "\n"


def fmt(value, suffix="", pct=False):
    if value is None:
        return "—"
    if pct:
        return f"{100 * value:.0f}%"
    return f"{value:.3g}{suffix}" if value < 100 else f"{value:.0f}{suffix}"
