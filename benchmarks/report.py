"""`python -m benchmarks report`: the benchmark report, generated from the results JSON only.

Reads the latest result of each (suite, device) under benchmarks/results/ (and its sub-folders, e.g.
gpu/; -quick files are skipped unless --quick), and writes
- REPORT.md: every suite's tables and plots, with the machine, versions and commit of each run;
- plots/*.png: time per provider for each case, time vs C or N where a suite varies it, peak memory
  vs N for the contrastive loss, the fraction of the measured copy bandwidth (GPU), recall vs
  throughput for the word index, and the training-step breakdown;
- the README's benchmark tables, between `<!-- benchmarks:start -->` and `<!-- benchmarks:end -->`.
No number in these files is written by hand.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
from collections import OrderedDict
from pathlib import Path

from benchmarks.harness import RESULTS_DIR, fmt, machine_line, markdown_report
from pycmlt.evaluation.pyplot import pyplot

REPO_ROOT = Path(__file__).resolve().parent.parent
README = REPO_ROOT / "README.md"
START, END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"
SUITE_ORDER = ["ce", "bce", "fused-linear", "contrastive", "alignment", "index", "train-step", "grid"]
LOSS_SUITES = {"ce", "bce", "fused-linear", "contrastive", "alignment"}
TITLES = {"ce": "Class-balanced cross-entropy", "bce": "Class-balanced multi-label BCE",
          "fused-linear": "Fused linear + cross-entropy", "contrastive": "Cross-modal contrastive loss",
          "alignment": "Alignment loss", "index": "Nearest-word search", "train-step": "CMLTNet training step",
          "grid": "CE and BCE over an (N, C) grid"}
# case keys that describe the case but are not shape parameters
_NOT_SHAPE = {"name", "measurements", "ratios", "baseline", "bytes_moved", "matrix_bytes_fp32", "flops_fwd_bwd",
              "logits_mb", "pycmlt_chunk_rows", "m"}


# ------------------------------------------------------------------------------------ loading

class ResultsError(ValueError):
    """A results file that does not follow the schema."""


def normalise(payload: dict, path: Path | None = None) -> dict:
    """Fill the schema-2 fields of an older results file (suite, quick, device_type) and check the
    fields the report relies on; raises ResultsError naming the file and the problem."""
    where = f"{path}: " if path else ""
    for key in ("benchmark", "machine", "cases"):
        if key not in payload:
            raise ResultsError(f"{where}missing '{key}'")
    bench = payload["benchmark"]
    payload.setdefault("quick", bench.endswith("-quick"))
    payload.setdefault("suite", bench.removesuffix("-quick"))
    payload.setdefault("device_type", str(payload["machine"].get("device", "cpu")).split(":")[0])
    for key in ("device_name", "torch", "date"):
        if key not in payload["machine"]:
            raise ResultsError(f"{where}machine lacks '{key}'")
    if not isinstance(payload["cases"], list) or not payload["cases"]:
        raise ResultsError(f"{where}'cases' must be a non-empty list")
    for case in payload["cases"]:
        if "name" not in case or not isinstance(case.get("measurements"), list):
            raise ResultsError(f"{where}each case needs 'name' and a 'measurements' list")
        for m in case["measurements"]:
            if "provider" not in m:
                raise ResultsError(f"{where}a measurement of {case['name']!r} has no 'provider'")
            if payload["suite"] == "index":
                continue
            for key in ("fwd_ms", "bwd_ms", "fwd_bwd_ms", "peak_bytes", "error"):
                if key not in m:
                    raise ResultsError(f"{where}{case['name']} / {m['provider']} lacks '{key}'")
            if m["error"] is None and m["fwd_bwd_ms"] is None:
                raise ResultsError(f"{where}{case['name']} / {m['provider']} has neither a time nor an error")
    return payload


def _date(payload: dict) -> _dt.datetime:
    try:
        return _dt.datetime.fromisoformat(payload["machine"]["date"])
    except (TypeError, ValueError):
        return _dt.datetime.min.replace(tzinfo=_dt.timezone.utc)


def load_latest(results_dir: Path, quick: bool = False) -> list[dict]:
    """The latest payload of each (suite, device type), in suite order; each carries its `_path`."""
    results_dir = Path(results_dir)
    latest: dict[tuple[str, str], dict] = {}
    for path in sorted(results_dir.glob("*.json")) + sorted(results_dir.glob("*/*.json")):
        if "plots" in path.parts:
            continue
        try:
            payload = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ResultsError(f"{path}: {exc}") from exc
        if not isinstance(payload, dict) or "benchmark" not in payload:
            continue  # e.g. gpu/summary.json
        payload = normalise(payload, path)
        if payload["quick"] != quick:
            continue
        payload["_path"] = path
        key = (payload["suite"], payload["device_type"])
        if key not in latest or _date(payload) > _date(latest[key]):
            latest[key] = payload
    rank = {s: i for i, s in enumerate(SUITE_ORDER)}
    return sorted(latest.values(), key=lambda p: (p["device_type"] != "cpu", rank.get(p["suite"], 99), p["suite"]))


# ------------------------------------------------------------------------------------ plots

def _plain_log_ticks(axis) -> None:
    """Log-scale tick labels as plain numbers (0.5, 2, 100) rather than powers of ten."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _save(fig, path: Path, payload: dict, what: str, *, suptitle: bool = True) -> Path:
    """Title (what + the machine), layout, write the PNG, free the figure."""
    if suptitle:
        fig.suptitle(_title(payload, what), fontsize=10)
    else:
        fig.axes[0].set_title(_title(payload, what), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    pyplot().close(fig)
    return path


def _ok(m: dict) -> bool:
    return not m.get("error") and m.get("fwd_bwd_ms") is not None


def _stem(payload: dict) -> str:
    return f"{payload['suite']}{'-quick' if payload['quick'] else ''}-{payload['device_type']}"


def _title(payload: dict, what: str) -> str:
    return f"{TITLES.get(payload['suite'], payload['suite'])}: {what}\n{payload['machine']['device_name']}"


def plot_times(payload: dict, path: Path) -> Path:
    """One panel per case: forward, backward and forward+backward time of each provider."""
    plt = pyplot()
    cases = payload["cases"]
    cols = min(3, len(cases))
    rows = math.ceil(len(cases) / cols)
    nprov = max(len(c["measurements"]) for c in cases)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 0.9 + (0.55 * nprov + 0.9) * rows), squeeze=False)
    kinds = [("fwd_ms", "forward"), ("bwd_ms", "backward"), ("fwd_bwd_ms", "forward+backward")]
    for ax, case in zip(axes.flat, cases):
        ms = case["measurements"]
        for k, (key, label) in enumerate(kinds):
            ys = [i + (k - 1) * 0.27 for i in range(len(ms))]
            xs = [m[key] if _ok(m) and m.get(key) else 0 for m in ms]
            ax.barh(ys, xs, height=0.26, label=label)
        for i, m in enumerate(ms):
            if not _ok(m):
                ax.text(0.01, i, " did not run", transform=ax.get_yaxis_transform(), va="center", fontsize=7,
                        color="firebrick")
        ax.set_yticks(range(len(ms)), [m["provider"] for m in ms], fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        _plain_log_ticks(ax.xaxis)
        ax.set_xlabel("ms (log)")
        ax.set_title(case["name"], fontsize=9)
        ax.grid(axis="x", alpha=0.3, which="both")
    for ax in list(axes.flat)[len(cases):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="lower right")
    return _save(fig, path, payload, "time per provider")


def scaling_groups(payload: dict) -> tuple[str | None, list[tuple[str, list[dict]]]]:
    """(axis, groups): the shape parameter (c or n) that the suite varies with the others fixed, and
    the groups of at least two cases that differ only in it."""
    for axis in ("c", "n"):
        groups: OrderedDict[str, list[dict]] = OrderedDict()
        for case in payload["cases"]:
            if axis not in case:
                continue
            key = ", ".join(f"{k}={v}" for k, v in case.items()
                            if k not in _NOT_SHAPE and k != axis and isinstance(v, (str, int, float, type(None))))
            groups.setdefault(key, []).append(case)
        found = [(k, sorted(v, key=lambda c: c[axis])) for k, v in groups.items()
                 if len({c[axis] for c in v}) >= 2]
        if found:
            return axis, found
    return None, []


def _provider_lines(ax, cases, axis, value):
    providers = list(OrderedDict.fromkeys(m["provider"] for c in cases for m in c["measurements"]))
    for prov in providers:
        pts = [(c[axis], value(m, c)) for c in cases for m in c["measurements"]
               if m["provider"] == prov and _ok(m) and value(m, c) is not None]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=prov)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    _plain_log_ticks(ax.xaxis)
    _plain_log_ticks(ax.yaxis)
    ax.grid(alpha=0.3, which="both")


def plot_scaling(payload: dict, path: Path) -> Path | None:
    """Forward+backward time against C (or N) per provider, where the suite varies it."""
    axis, groups = scaling_groups(payload)
    if not groups:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(groups), figsize=(5.2 * len(groups), 4.2), squeeze=False)
    for ax, (label, cases) in zip(axes.flat, groups):
        _provider_lines(ax, cases, axis, lambda m, c: m["fwd_bwd_ms"])
        ax.set_xlabel(axis.upper())
        ax.set_ylabel("forward+backward ms")
        ax.set_title(label, fontsize=8)
        ax.legend(fontsize=7)
    return _save(fig, path, payload, f"time vs {axis.upper()}")


def plot_memory_vs_n(payload: dict, path: Path) -> Path | None:
    """Peak extra memory of one forward+backward against N per provider (contrastive), with one
    N x N fp32 matrix for scale."""
    cases = [c for c in payload["cases"] if "n" in c]
    if not any(_ok(m) and m.get("peak_bytes") for c in cases for m in c["measurements"]):
        return None
    kinds = list(OrderedDict.fromkeys(c.get("kind", "") for c in cases))
    plt = pyplot()
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.2 * len(kinds), 4.2), squeeze=False)
    for ax, kind in zip(axes.flat, kinds):
        group = sorted([c for c in cases if c.get("kind", "") == kind], key=lambda c: c["n"])
        _provider_lines(ax, group, "n", lambda m, c: m["peak_bytes"] / 2**20 if m.get("peak_bytes") else None)
        ns = [c["n"] for c in group]
        ax.plot(ns, [n * n * 4 / 2**20 for n in ns], "k--", lw=1, label="one N x N fp32 matrix")
        ax.set_xlabel("N = M")
        ax.set_ylabel("peak extra MB (log)")
        ax.set_title(kind or "all cases", fontsize=8)
        ax.legend(fontsize=7)
    return _save(fig, path, payload, "peak extra memory vs N")


def plot_bandwidth(payload: dict, path: Path) -> Path | None:
    """Achieved bandwidth (minimal bytes moved / forward+backward time) as a fraction of the
    measured device copy bandwidth, per provider and case (GPU results)."""
    bw = payload.get("copy_bandwidth_gbps")
    rows = [(c["name"], m["provider"], m.get("extra", {}).get("bandwidth_fraction")) for c in payload["cases"]
            for m in c["measurements"] if _ok(m)]
    rows = [r for r in rows if r[2] is not None]
    if not bw or not rows:
        return None
    plt = pyplot()
    cases = list(OrderedDict.fromkeys(r[0] for r in rows))
    providers = list(OrderedDict.fromkeys(r[1] for r in rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(cases) * len(providers) / 3), 4.4))
    width = 0.8 / len(providers)
    for j, prov in enumerate(providers):
        vals = {r[0]: r[2] for r in rows if r[1] == prov}
        ax.bar([i + (j - (len(providers) - 1) / 2) * width for i in range(len(cases))],
               [100 * vals.get(c, 0) for c in cases], width=width, label=prov)
    ax.set_xticks(range(len(cases)), cases, rotation=20, ha="right", fontsize=7)
    ax.set_ylabel(f"% of copy bandwidth ({bw:.0f} GB/s)")
    ax.axhline(100, color="k", lw=0.8, ls="--")
    ax.legend(fontsize=7)
    return _save(fig, path, payload, "achieved bandwidth, forward+backward", suptitle=False)


def plot_index(payload: dict, path: Path) -> Path:
    """Queries per second against recall@k, per provider, for each vocabulary."""
    plt = pyplot()
    cases = payload["cases"]
    fig, axes = plt.subplots(1, len(cases), figsize=(5.6 * len(cases), 4.4), squeeze=False)
    for ax, case in zip(axes.flat, cases):
        for m in case["measurements"]:
            if m.get("error") or m.get("qps") is None:
                continue
            ax.scatter(m["recall"], m["qps"], s=25)
            ax.annotate(m["provider"].replace("faiss ", ""), (m["recall"], m["qps"]), fontsize=6,
                        xytext=(3, 2), textcoords="offset points")
        ax.set_yscale("log")
        _plain_log_ticks(ax.yaxis)
        ax.set_xlabel("recall@k")
        ax.set_ylabel("queries / s (log)")
        ax.set_title(case["name"], fontsize=8)
        ax.grid(alpha=0.3, which="both")
    return _save(fig, path, payload, "throughput vs recall")


def plot_train_step(payload: dict, path: Path) -> Path:
    """Step time per configuration and backend, split into the losses (profiler) and the rest."""
    plt = pyplot()
    rows = [(f"{c['name']}\n{m['provider']}", m) for c in payload["cases"] for m in c["measurements"] if _ok(m)]
    fig, ax = plt.subplots(figsize=(9.0, 1.2 + 0.55 * max(1, len(rows))))
    for i, (_, m) in enumerate(rows):
        prof = m.get("extra", {}).get("profile", {})
        share = prof.get("loss_share") or 0.0
        step = m["fwd_bwd_ms"]
        ax.barh(i, step * share, color="tab:red", label="losses (profiler share)" if i == 0 else None)
        ax.barh(i, step * (1 - share), left=step * share, color="tab:blue", label="rest of the step" if i == 0 else None)
        ax.text(step, i, f" {step:.3g} ms, losses {100 * share:.0f}%", va="center", fontsize=7)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("ms per training step (forward + backward + optimizer step)")
    ax.set_xlim(0, 1.35 * max([m["fwd_bwd_ms"] for _, m in rows] or [1]))
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path, payload, "time per training step", suptitle=False)


def plot_grid_heatmap(payload: dict, path: Path) -> Path:
    """One panel per (variant, dtype): pycmlt's forward+backward speed-up over eager by (N, C), log colour
    scale centred on 1 (red: slower than eager, blue: faster)."""
    import numpy as np
    from matplotlib.colors import LogNorm

    plt = pyplot()
    groups: OrderedDict[tuple, list[dict]] = OrderedDict()
    for case in payload["cases"]:
        groups.setdefault((case["variant"], case["dtype"].replace("torch.", "")), []).append(case)
    cols = min(4, len(groups))
    rows = math.ceil(len(groups) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows + 0.6), squeeze=False)
    norm = LogNorm(vmin=1 / 8, vmax=8)
    image = None
    for ax, ((variant, dtype), cases) in zip(axes.flat, groups.items()):
        ns, cs = sorted({c["n"] for c in cases}), sorted({c["c"] for c in cases})
        grid = np.full((len(ns), len(cs)), np.nan)
        for case in cases:
            r = next((v for p, v in case.get("ratios", {}).items() if p.startswith("pycmlt-")), {})
            if r.get("speedup_fwd_bwd"):
                grid[ns.index(case["n"]), cs.index(case["c"])] = r["speedup_fwd_bwd"]
        image = ax.imshow(np.clip(grid, 1 / 8, 8), cmap="RdBu", norm=norm, origin="lower", aspect="auto")
        for i in range(len(ns)):
            for j in range(len(cs)):
                if not np.isnan(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.2g}", ha="center", va="center", fontsize=6)
        ax.set_xticks(range(len(cs)), [str(c) for c in cs], fontsize=6, rotation=45)
        ax.set_yticks(range(len(ns)), [str(n) for n in ns], fontsize=6)
        ax.set_xlabel("C", fontsize=7)
        ax.set_ylabel("N", fontsize=7)
        ax.set_title(f"{variant}, {dtype}", fontsize=8)
    for ax in list(axes.flat)[len(groups):]:
        ax.axis("off")
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label="speed-up over eager (fwd+bwd)")
    fig.suptitle(_title(payload, "pycmlt speed-up over eager PyTorch by (N, C)"), fontsize=10)
    fig.savefig(path, dpi=90)
    pyplot().close(fig)
    return path


def make_plots(payload: dict, plots_dir: Path) -> list[Path]:
    plots_dir.mkdir(parents=True, exist_ok=True)
    stem = _stem(payload)
    if payload["suite"] == "grid":
        return [plot_grid_heatmap(payload, plots_dir / f"{stem}-heatmap.png")]
    if payload["suite"] == "index":
        return [plot_index(payload, plots_dir / f"{stem}-recall.png")]
    if payload["suite"] == "train-step":
        return [plot_train_step(payload, plots_dir / f"{stem}.png")]
    made = [plot_times(payload, plots_dir / f"{stem}-time.png"),
            plot_scaling(payload, plots_dir / f"{stem}-scaling.png")]
    if payload["suite"] == "contrastive":
        made.append(plot_memory_vs_n(payload, plots_dir / f"{stem}-memory.png"))
    made.append(plot_bandwidth(payload, plots_dir / f"{stem}-bandwidth.png"))
    return [p for p in made if p is not None]


# ------------------------------------------------------------------------------------ markdown

def suite_markdown(payload: dict) -> str:
    """The suite's own table (the same renderer that wrote its .md next to the JSON)."""
    if payload["suite"] == "index":
        from benchmarks.index import markdown
    elif payload["suite"] == "train-step":
        from benchmarks.train_step import markdown
    elif payload["suite"] == "grid":
        from benchmarks.grid import markdown
    else:
        markdown = markdown_report
    return markdown(payload)


def _demote(md: str, levels: int = 1) -> str:
    """The suite's markdown under a report section: its title dropped, its sub-headings demoted."""
    lines = md.splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    return "\n".join(("#" * levels + line) if line.startswith("#") else line for line in lines)


def _rel(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def report_markdown(payloads: list[dict], plots: dict[int, list[Path]], out_dir: Path) -> str:
    lines = ["# pycmlt benchmark report", "",
             "Generated by `python -m benchmarks report` from the results JSON listed below; do not edit by hand "
             "(re-run the suites and the report instead). Times are medians after warm-up (CUDA events on GPU); "
             "memory is the peak extra memory of one forward+backward (CUDA max-allocated on GPU, peak RSS "
             "growth on CPU); speed-ups and memory ratios are against the eager PyTorch reference measured in "
             "the same run.", ""]
    lines += ["| suite | device | machine | date | commit | file |", "|---|---|---|---|---|---|"]
    for p in payloads:
        m = p["machine"]
        lines.append(f"| {p['suite']} | {p['device_type']} | {m['device_name']} | {m['date']} | "
                     f"{m.get('git_commit') or 'unknown'}{' (dirty)' if m.get('git_dirty') else ''} | "
                     f"`{_rel(p['_path'], out_dir)}` |")
    if not any(p["device_type"] == "cuda" for p in payloads):
        lines += ["", "**No GPU results yet**: no GPU run has happened (`benchmarks/gpu_run.sh` writes them to "
                  "`benchmarks/results/gpu/`)."]
    for i, p in enumerate(payloads):
        lines += ["", f"## {TITLES.get(p['suite'], p['suite'])} ({p['device_type']})", "",
                  _demote(suite_markdown(p), 1).strip(), ""]
        settings = p.get("settings")
        if settings:
            lines += ["Settings: " + ", ".join(f"{k} = {v}" for k, v in settings.items()) + ".", ""]
        for plot in plots.get(i, []):
            lines.append(f"![{plot.stem}]({_rel(plot, out_dir)})")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _unit(ms: float) -> str:
    return f"{fmt(ms / 1e3)} s" if ms >= 1000 else f"{fmt(ms)} ms"


def _cell(m: dict | None, ratio: dict | None) -> str:
    if m is None or not _ok(m):
        return "—"
    speed = ratio.get("speedup_fwd_bwd") if ratio else None
    return _unit(m["fwd_bwd_ms"]) + (f" ({fmt(speed, 'x')})" if speed and m["provider"] != "eager" else "")


def loss_table(payload: dict) -> list[str]:
    """case | each provider's forward+backward time (speed-up vs eager) | pycmlt's peak memory vs eager."""
    providers = list(OrderedDict.fromkeys(m["provider"] for c in payload["cases"] for m in c["measurements"]))
    ours = [p for p in providers if p.startswith("pycmlt-")]
    head = ["case", *providers] + [f"peak memory {p} / eager" for p in ours]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for case in payload["cases"]:
        by = {m["provider"]: m for m in case["measurements"]}
        ratios = case.get("ratios", {})
        cells = [case["name"]]
        cells += [_cell(by.get(p), ratios.get(p)) for p in providers]
        cells += [fmt(ratios.get(p, {}).get("memory_ratio"), "x") for p in ours]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def index_table(payload: dict) -> list[str]:
    cases = payload["cases"]
    providers = list(OrderedDict.fromkeys(m["provider"] for c in cases for m in c["measurements"]))
    head = ["provider"] + [f"{c.get('dataset', c['name'])}: queries/s (recall@{c.get('k', 'k')})" for c in cases]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * len(cases)]
    for p in providers:
        cells = [p]
        for c in cases:
            m = next((m for m in c["measurements"] if m["provider"] == p), None)
            cells.append("—" if m is None or m.get("error") else f"{m['qps']:,.0f} ({m['recall']:.3f})")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def train_step_table(payload: dict) -> list[str]:
    lines = ["| configuration | provider | step ms | speed-up vs torch | images/s | losses share (profiler) |"
             " losses alone |", "|---|---|---:|---:|---:|---:|---:|"]
    for case in payload["cases"]:
        for m in case["measurements"]:
            if not _ok(m):
                lines.append(f"| {case['name']} | {m['provider']} | — | — | — | — | — |")
                continue
            prof = m.get("extra", {}).get("profile", {})
            lines.append(f"| {case['name']} | {m['provider']} | {fmt(m['fwd_bwd_ms'])} | "
                         f"{fmt(case.get('ratios', {}).get(m['provider'], {}).get('speedup_fwd_bwd'), 'x')} | "
                         f"{fmt(m['extra'].get('images_per_s'))} | {fmt(prof.get('loss_share'), pct=True)} | "
                         f"{fmt(m['extra'].get('losses_alone_share'), pct=True)} |")
    return lines


def grid_summary(payload: dict) -> list[str]:
    """The slowest shape of the grid, and the share of cases where pycmlt is at least as fast as eager
    and as torch.compile."""
    from benchmarks.grid import slowest

    ratios = [v for c in payload["cases"] for p, v in c.get("ratios", {}).items() if p.startswith("pycmlt-")]
    eager = [r["speedup_fwd_bwd"] for r in ratios if r.get("speedup_fwd_bwd")]
    comp = [r["speedup_vs_compile"] for r in ratios if r.get("speedup_vs_compile")]
    lines = [f"pycmlt is at least as fast as eager PyTorch in {sum(v >= 1 for v in eager)} of {len(eager)} "
             f"measured cases (forward+backward)"
             + (f", and at least as fast as torch.compile in {sum(v >= 1 for v in comp)} of {len(comp)}." if comp
                else "; torch.compile was not measured in this run.")]
    worst = slowest(payload)
    if worst is not None:
        r = next(v for p, v in worst["ratios"].items() if p.startswith("pycmlt-"))
        lines += ["", f"Slowest shape: **{worst['name']}**, {fmt(r['speedup_fwd_bwd'], 'x')} eager."]
    return lines


def readme_block(payloads: list[dict], plots: dict[int, list[Path]], readme_dir: Path, report_path: Path) -> str:
    lines = [START,
             "<!-- generated by `python -m benchmarks report` from benchmarks/results/*.json: do not edit by hand -->",
             ""]
    by_device: OrderedDict[str, list[int]] = OrderedDict()
    for i, p in enumerate(payloads):
        by_device.setdefault(p["device_type"], []).append(i)
    if "cuda" not in by_device:
        lines += ["**No GPU results yet**: no GPU run has happened so far; the tables below are CPU "
                  "measurements. `benchmarks/gpu_run.sh` produces the GPU results.", ""]
    for device, idx in by_device.items():
        names = list(OrderedDict.fromkeys(payloads[i]["machine"]["device_name"] for i in idx))
        lines += [f"#### {device.upper()}: {', '.join(names)}", ""]
        for i in idx:
            p = payloads[i]
            lines += [f"**{TITLES.get(p['suite'], p['suite'])}** (`{p['suite']}`) — "
                      + machine_line(p).replace("Measured on ", "measured on "), ""]
            if p["suite"] in LOSS_SUITES:
                lines += ["Forward+backward time (speed-up vs eager):", ""] + loss_table(p)
            elif p["suite"] == "index":
                lines += index_table(p)
            elif p["suite"] == "train-step":
                lines += train_step_table(p)
            elif p["suite"] == "grid":
                lines += grid_summary(p)
            lines.append("")
        shown = [pl for i in idx for pl in plots.get(i, [])]
        if shown:
            lines += ["Plots: " + " · ".join(f"[{pl.stem}]({_rel(pl, readme_dir)})" for pl in shown), ""]
            # shown inline: the contrastive memory curve, the training-step breakdown, the CE timings
            featured = [f"contrastive-{device}-memory", f"train-step-{device}", f"ce-{device}-scaling",
                        f"grid-{device}-heatmap"]
            key = [pl for name in featured for pl in shown if pl.stem == name]
            for pl in key:
                lines.append(f"![{pl.stem}]({_rel(pl, readme_dir)})")
            lines.append("")
    lines += [f"Full tables, settings and every plot: [{_rel(report_path, readme_dir)}]"
              f"({_rel(report_path, readme_dir)}).", "", END]
    return "\n".join(lines)


def update_readme(readme: Path, block: str) -> None:
    text = readme.read_text()
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise ResultsError(f"{readme} needs exactly one '{START}' ... '{END}' pair around the benchmark tables")
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    readme.write_text(before + block + after)


# ------------------------------------------------------------------------------------ entry

def generate(results_dir: Path | None = None, out_dir: Path | None = None, *, quick: bool = False,
             readme: Path | None = README) -> dict:
    """Writes REPORT.md and plots/ (and the README block when `readme` is given); returns what it wrote."""
    results_dir = Path(results_dir or RESULTS_DIR)
    out_dir = Path(out_dir or results_dir)
    payloads = load_latest(results_dir, quick=quick)
    if not payloads:
        raise ResultsError(f"no {'-quick ' if quick else ''}results JSON under {results_dir}: "
                           "run `python -m benchmarks all` first")
    plots_dir = out_dir / "plots"
    plots = {i: make_plots(p, plots_dir) for i, p in enumerate(payloads)}
    out_dir.mkdir(parents=True, exist_ok=True)
    report_path = out_dir / "REPORT.md"
    report_path.write_text(report_markdown(payloads, plots, out_dir))
    written = {"report": report_path, "plots": [pl for v in plots.values() for pl in v],
               "sources": [p["_path"] for p in payloads]}
    if readme is not None:
        readme = Path(readme)
        update_readme(readme, readme_block(payloads, plots, readme.resolve().parent, report_path.resolve()))
        written["readme"] = readme
    return written


def main(args) -> int:
    readme = None if args.no_readme else Path(args.readme or README)
    try:
        written = generate(args.results, args.out, quick=args.quick, readme=readme)
    except ResultsError as exc:
        print(f"report: {exc}")
        return 1
    print(f"wrote {written['report']} and {len(written['plots'])} plots in {written['report'].parent / 'plots'}"
          + (f"; updated {written['readme']}" if "readme" in written else ""))
    for src in written["sources"]:
        print(f"  from {src}")
    return 0
