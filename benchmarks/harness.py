"""Measurement primitives shared by every benchmark: timing (median after warm-up, CUDA events on
GPU), peak memory (CUDA max-allocated on GPU, peak-RSS delta on CPU), machine description, and
writing results as JSON plus a markdown table."""
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


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn: Callable[[], object], device: torch.device, *, warmup: int, repeat: int,
              setup: Callable[[], object] | None = None) -> float:
    """Median wall time of fn() in milliseconds; setup() (untimed) runs before each call."""
    for _ in range(warmup):
        arg = setup() if setup else None
        fn() if setup is None else fn(arg)
    synchronize(device)
    times = []
    for _ in range(repeat):
        arg = setup() if setup else None
        synchronize(device)
        if device.type == "cuda":
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
    return statistics.median(times)


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


def copy_bandwidth_gbps(device: torch.device, nbytes: int = 1 << 30) -> float:
    """Measured device-to-device copy bandwidth (bytes read + bytes written per second) in GB/s."""
    src = torch.empty(nbytes // 2, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src), device, warmup=3, repeat=20)
    return 2 * src.numel() / (ms * 1e-3) / 1e9


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=10)
        return out.stdout.strip() or None
    except Exception:
        return None


def machine_info(device: torch.device) -> dict:
    info = {
        "hostname": platform.node(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "triton": _version("triton"),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
        "git_commit": git_commit(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
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


def _measure_time(name, fn, leaves, others, device, warmup, repeat) -> Measurement:
    def forward():
        return fn(*leaves, *others)

    def fwd_bwd():
        torch.autograd.grad(forward(), leaves)

    m = Measurement(name)
    try:
        m.fwd_ms = median_ms(forward, device, warmup=warmup, repeat=repeat)
        m.bwd_ms = median_ms(lambda loss: torch.autograd.grad(loss, leaves), device, warmup=warmup,
                             repeat=repeat, setup=forward)
        m.fwd_bwd_ms = median_ms(fwd_bwd, device, warmup=warmup, repeat=repeat)
    except Exception as exc:  # a provider that fails (OOM, unsupported shape) is reported, not fatal
        m.error = f"{type(exc).__name__}: {exc}"[:500]
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return m


def run_cases(cases: list[Case], device: torch.device, *, warmup: int, repeat: int,
              copy_bw_gbps: float | None = None) -> list[dict]:
    """Times every provider of every case, then measures peak memory in a second sweep (the CPU
    memory probe changes the allocator's behaviour, so it must not run before any timing)."""
    results = []
    for case in cases:
        leaves, others = case.make_inputs()
        leaves = [t.detach().requires_grad_(True) for t in leaves]
        ms = [_measure_time(n, fn, leaves, others, device, warmup, repeat) for n, fn in case.providers.items()]
        results.append(ms)
        del leaves, others
    for case, ms in zip(cases, results):
        leaves, others = case.make_inputs()
        leaves = [t.detach().requires_grad_(True) for t in leaves]
        for m in ms:
            if m.error is not None:
                continue
            fn = case.providers[m.provider]
            try:
                m.peak_bytes = peak_memory_bytes(lambda: torch.autograd.grad(fn(*leaves, *others), leaves), device)
            except Exception as exc:
                m.error = f"{type(exc).__name__} while measuring memory: {exc}"[:500]
            if copy_bw_gbps and case.bytes_moved and m.fwd_bwd_ms:
                m.extra["bandwidth_fraction"] = case.bytes_moved / (m.fwd_bwd_ms * 1e-3) / (copy_bw_gbps * 1e9)
        del leaves, others
    return [{"name": c.name, **c.meta, "baseline": c.baseline, "measurements": ms,
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
            "memory_ratio": _div(m.peak_bytes, base.peak_bytes),
        }
    return out


def _div(a, b):
    return None if a is None or b in (None, 0) else a / b


def write_results(name: str, device: torch.device, cases: list[dict], *, out_dir: Path | None = None,
                  extra: dict | None = None,
                  render: Callable[[dict], str] | None = None) -> tuple[Path, Path]:
    """benchmarks/results/<name>-<device kind>.json and .md; returns both paths. `render` turns the
    payload into the markdown (default: the loss fwd/bwd table of markdown_report)."""
    out_dir = Path(out_dir or RESULTS_DIR)
    out_dir.mkdir(parents=True, exist_ok=True)
    machine = machine_info(device)
    payload = {"benchmark": name, "machine": machine, **(extra or {}), "cases": cases}
    stem = f"{name}-{device.type}"
    json_path = out_dir / f"{stem}.json"
    json_path.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")
    md_path = out_dir / f"{stem}.md"
    md_path.write_text((render or markdown_report)(payload))
    return json_path, md_path


def _jsonable(value):
    if isinstance(value, Measurement):
        return value.__dict__
    if isinstance(value, (torch.dtype, torch.device)):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def markdown_report(payload: dict) -> str:
    m = payload["machine"]
    lines = [f"# {payload['benchmark']} benchmark", "",
             f"Measured on **{m['device_name']}** ({m['cpu_count']} CPU cores, {m['torch_threads']} torch threads), "
             f"torch {m['torch']}, triton {m['triton']}, commit {m['git_commit']}, {m['date']}.", ""]
    if payload.get("copy_bandwidth_gbps"):
        lines += [f"Device copy bandwidth (read + write): {payload['copy_bandwidth_gbps']:.0f} GB/s.", ""]
    lines += ["| case | provider | fwd ms | bwd ms | fwd+bwd ms | speed-up vs baseline | peak extra MB | memory vs baseline |"
              + (" % of copy BW |" if payload.get("copy_bandwidth_gbps") else ""),
              "|---|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if payload.get("copy_bandwidth_gbps") else "")]
    for case in payload["cases"]:
        for meas in case["measurements"]:
            meas = meas if isinstance(meas, dict) else meas.__dict__
            r = case.get("ratios", {}).get(meas["provider"], {})
            if meas.get("error"):
                lines.append(f"| {case['name']} | {meas['provider']} | — | — | — | — | — | — |"
                             + (" — |" if payload.get("copy_bandwidth_gbps") else "")
                             + f" <!-- {meas['error'][:80]} -->")
                continue
            row = (f"| {case['name']} | {meas['provider']} | {_fmt(meas['fwd_ms'])} | {_fmt(meas['bwd_ms'])} | "
                   f"{_fmt(meas['fwd_bwd_ms'])} | {_fmt(r.get('speedup_fwd_bwd'), 'x')} | "
                   f"{_fmt(None if meas['peak_bytes'] is None else meas['peak_bytes'] / 2**20)} | "
                   f"{_fmt(r.get('memory_ratio'), 'x')} |")
            if payload.get("copy_bandwidth_gbps"):
                row += f" {_fmt(meas.get('extra', {}).get('bandwidth_fraction'), '', pct=True)} |"
            lines.append(row)
    errors = [(c["name"], (m if isinstance(m, dict) else m.__dict__)) for c in payload["cases"]
              for m in c["measurements"]]
    failed = [f"- {name} / {m['provider']}: {m['error']}" for name, m in errors if m.get("error")]
    if failed:
        lines += ["", "Providers that could not run:", *failed]
    return "\n".join(lines) + "\n"


def _fmt(value, suffix="", pct=False):
    if value is None:
        return "—"
    if pct:
        return f"{100 * value:.0f}%"
    return f"{value:.3g}{suffix}" if value < 100 else f"{value:.0f}{suffix}"
