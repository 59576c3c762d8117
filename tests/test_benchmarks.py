"""Smoke test of the benchmark suite: every suite in --quick mode into a temporary folder, the
results JSON schema, the report generator (REPORT.md, PNG plots, the README block) on those
results and on a GPU-shaped variant of them, `pycmlt bench`, and gpu_run.sh without a GPU."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import report
from benchmarks.__main__ import ORDER

ROOT = Path(__file__).resolve().parent.parent
LOSS_SUITES = ["ce", "bce", "fused-linear", "contrastive", "alignment"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    """`python -m benchmarks all --quick` into a temporary folder (one thread: the numbers of a smoke
    run don't matter, and two OpenMP threads on a shared 2-core machine can slow down 50-fold)."""
    out = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("TRITON_INTERPRET", None)
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "all", "--quick", "--device", "cpu", "--quiet",
                           "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def test_every_suite_writes_json_and_markdown(quick_results):
    for suite in ORDER:
        for ext in ("json", "md"):
            assert (quick_results / f"{suite}-quick-cpu.{ext}").is_file(), f"{suite}: no .{ext}"


def test_results_schema(quick_results):
    for suite in ORDER:
        payload = _load(quick_results / f"{suite}-quick-cpu.json")
        report.normalise(payload)
        assert payload["schema"] == 2 and payload["suite"] == suite and payload["quick"] is True
        assert payload["device_type"] == "cpu" and payload["benchmark"] == f"{suite}-quick"
        machine = payload["machine"]
        for key in ("device_name", "cpu", "cpu_count", "torch", "triton", "python", "git_commit", "date"):
            assert key in machine, f"{suite}: machine lacks {key}"
        assert machine["torch"] == torch.__version__
        assert payload["settings"], suite


@pytest.mark.parametrize("suite", LOSS_SUITES)
def test_loss_suites_measure_every_provider(quick_results, suite):
    payload = _load(quick_results / f"{suite}-quick-cpu.json")
    from pycmlt.ops import available_backends

    expected = {"eager", "torch.compile"} | {f"pycmlt-{b}" for b in available_backends("cpu") if b not in ("torch", "triton")}
    for case in payload["cases"]:
        assert case["dtype"].startswith("torch."), case
        got = {m["provider"]: m for m in case["measurements"]}
        assert expected <= set(got), f"{suite} {case['name']}: providers {sorted(got)}"
        for name in expected:
            m = got[name]
            assert m["error"] is None, f"{suite} {case['name']} {name}: {m['error']}"
            for key in ("fwd_ms", "bwd_ms", "fwd_bwd_ms"):
                assert m[key] > 0, (suite, name, key)
            assert m["extra"]["timed_calls"]["fwd_bwd"] >= 1
            r = case["ratios"][name]
            assert r["speedup_fwd_bwd"] == pytest.approx(got["eager"]["fwd_bwd_ms"] / m["fwd_bwd_ms"])
        assert case["ratios"]["eager"]["speedup_fwd_bwd"] == 1.0


def test_train_step_results(quick_results):
    payload = _load(quick_results / "train-step-quick-cpu.json")
    names = [c["method"] for c in payload["cases"]]
    assert names == ["cmltnet", "ce", "cmltnet"]
    precision = payload["cases"][-1]
    assert [m["provider"] for m in precision["measurements"]] == ["fp32", "bf16"]
    assert all(m["error"] is None and m["extra"]["images_per_s"] > 0 for m in precision["measurements"])
    assert precision["ratios"]["bf16"]["speedup_fwd_bwd"] > 0
    for case in payload["cases"][:-1]:
        assert case["batch"] > 0 and case["num_classes"] == 99 and case["vocab_size"] == 2200
        got = {m["provider"]: m for m in case["measurements"]}
        assert "torch" in got and any(p.startswith("pycmlt-") for p in got), sorted(got)
        for m in got.values():
            assert m["error"] is None, m["error"]
            prof = m["extra"]["profile"]
            assert 0 < prof["loss_share"] < 1, prof
            assert prof["loss_fwd_ms"] > 0 and prof["loss_bwd_ms"] > 0, prof
            assert 0 < m["extra"]["losses_alone_share"] < 1
            assert "cls" in prof["parts"]
            if case["method"] == "cmltnet":  # every CMLTNet loss term is attributed
                assert {"cls", "align", "infer_align", "infer_words"} <= set(prof["parts"]), prof["parts"]


def test_index_results(quick_results):
    payload = _load(quick_results / "index-quick-cpu.json")
    for case in payload["cases"]:
        rows = {m["provider"]: m for m in case["measurements"]}
        assert rows["torch brute force (cpu, fp32)"]["recall"] == 1.0
        assert rows["faiss flat"]["recall"] == pytest.approx(1.0)
        assert all(m["qps"] > 0 for m in rows.values() if not m.get("error"))


def _readme(tmp_path: Path) -> Path:
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\nbefore\n\n<!-- benchmarks:start -->\nold table\n<!-- benchmarks:end -->\n\nafter\n")
    return readme


def _check_pngs(paths):
    assert paths
    for p in paths:
        assert p.read_bytes()[:8] == PNG_MAGIC and p.stat().st_size > 5000, p


def test_report_from_quick_results(quick_results, tmp_path):
    readme = _readme(tmp_path)
    out = tmp_path / "report"
    written = report.generate(quick_results, out, quick=True, readme=readme)
    text = (out / "REPORT.md").read_text()
    for suite in ORDER:
        assert f"{suite}-quick-cpu.json`" in text  # the sources are listed
    names = {p.name for p in written["plots"]}
    for expected in ("ce-quick-cpu-time.png", "contrastive-quick-cpu-memory.png", "contrastive-quick-cpu-scaling.png",
                     "index-quick-cpu-recall.png", "train-step-quick-cpu.png"):
        assert expected in names, sorted(names)
    _check_pngs(written["plots"])
    for p in written["plots"]:
        assert f"(plots/{p.name})" in text
    body = readme.read_text()
    assert body.startswith("# x\n\nbefore\n\n<!-- benchmarks:start -->") and body.endswith("<!-- benchmarks:end -->\n\nafter\n")
    assert "old table" not in body and "No GPU results yet" in body
    # the README's numbers are the JSON's
    ce = _load(quick_results / "ce-quick-cpu.json")
    eager = next(m for m in ce["cases"][0]["measurements"] if m["provider"] == "eager")
    assert f"| {ce['cases'][0]['name']} | {report.fmt(eager['fwd_bwd_ms'])} ms |" in body
    assert ce["machine"]["device_name"] in body
    # running it again changes nothing but the block
    report.generate(quick_results, out, quick=True, readme=readme)
    assert readme.read_text() == body


def test_report_gpu_results(quick_results, tmp_path):
    """A GPU-shaped copy of the quick results (device cuda, copy bandwidth, bandwidth fractions) gets
    the bandwidth plots and a GPU section: the branch a real GPU run takes."""
    results = tmp_path / "results"
    (results / "gpu").mkdir(parents=True)
    for suite in ("ce", "alignment", "train-step"):
        payload = _load(quick_results / f"{suite}-quick-cpu.json")
        (results / f"{suite}-quick-cpu.json").write_text(json.dumps(payload))
        gpu = copy.deepcopy(payload)
        gpu["device_type"] = "cuda"
        gpu["machine"].update(device="cuda", device_name="Test GPU", gpu_memory_gb=80.0, cuda="13.0")
        if suite != "train-step":
            gpu["copy_bandwidth_gbps"] = 3000.0
            for case in gpu["cases"]:
                for m in case["measurements"]:
                    m["extra"]["bandwidth_fraction"] = 0.5
        (results / "gpu" / f"{suite}-quick-cuda.json").write_text(json.dumps(gpu))
    (results / "gpu" / "summary.json").write_text(json.dumps({"status": "passed", "steps": []}))
    readme = _readme(tmp_path)
    written = report.generate(results, quick=True, readme=readme)
    names = {p.name for p in written["plots"]}
    assert {"ce-quick-cuda-bandwidth.png", "alignment-quick-cuda-bandwidth.png", "ce-quick-cpu-time.png"} <= names
    assert "ce-quick-cpu-bandwidth.png" not in names
    _check_pngs(written["plots"])
    body = readme.read_text()
    assert "#### CUDA: Test GPU" in body and "#### CPU:" in body and "No GPU results yet" not in body
    assert "% of copy BW" in (results / "REPORT.md").read_text()


def test_latest_result_wins_and_quick_is_separate(quick_results, tmp_path):
    old = _load(quick_results / "ce-quick-cpu.json")
    new = copy.deepcopy(old)
    old["machine"]["date"] = "2000-01-01T00:00:00+00:00"
    (tmp_path / "a.json").write_text(json.dumps(new))
    (tmp_path / "b.json").write_text(json.dumps(old))
    got = report.load_latest(tmp_path, quick=True)
    assert len(got) == 1 and got[0]["_path"].name == "a.json"
    assert report.load_latest(tmp_path, quick=False) == []
    with pytest.raises(report.ResultsError, match="no results JSON"):
        report.generate(tmp_path, quick=False, readme=None)


def test_committed_results_load():
    """The committed full results (older files included) follow the schema the report reads."""
    payloads = report.load_latest(report.RESULTS_DIR)
    assert {p["suite"] for p in payloads} >= {"ce", "bce", "fused-linear", "contrastive", "alignment", "index"}
    assert all(not p["quick"] for p in payloads)


def test_schema_errors_name_the_problem(tmp_path):
    with pytest.raises(report.ResultsError, match="missing 'cases'"):
        report.normalise({"benchmark": "ce", "machine": {}})
    bad = {"benchmark": "ce", "machine": {"device_name": "x", "torch": "2", "date": "2026-01-01"},
           "cases": [{"name": "c", "measurements": [{"provider": "eager", "fwd_ms": 1.0}]}]}
    with pytest.raises(report.ResultsError, match="lacks 'bwd_ms'"):
        report.normalise(bad)
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n")
    with pytest.raises(report.ResultsError, match="benchmarks:start"):
        report.update_readme(readme, "x")


def test_pycmlt_bench_cli(quick_results, tmp_path, capsys, monkeypatch):
    from pycmlt.cli import main

    out = tmp_path / "r"
    assert main(["bench", "report", "--results", str(quick_results), "--out", str(out), "--quick", "--no-readme"]) == 0
    assert (out / "REPORT.md").is_file()
    # outside a source checkout the command says where the suite lives
    import pycmlt

    monkeypatch.setattr(pycmlt, "__file__", str(tmp_path / "site" / "pycmlt" / "__init__.py"))
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["bench", "ce", "--quick"]) == 2
    assert "source checkout" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without a GPU")
def test_gpu_run_without_gpu_says_so(tmp_path):
    out = tmp_path / "gpu"
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_run.sh"), str(out)], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHON": sys.executable})
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "no CUDA GPU" in proc.stderr and "Nothing was built, tested or measured" in proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "no GPU" and summary["gpu"] is False and summary["steps"] == []
    assert not list(out.glob("*-cuda.json"))


def test_grid_results(quick_results, tmp_path):
    """The grid suite: pycmlt and eager on every case, the speed-up heat map and the slowest shape."""
    payload = _load(quick_results / "grid-quick-cpu.json")
    assert {c["variant"] for c in payload["cases"]} >= {"ce", "ce cb+ldam", "bce"}
    for case in payload["cases"]:
        providers = {m["provider"]: m for m in case["measurements"]}
        assert providers["eager"]["fwd_bwd_ms"] and providers["pycmlt-cpu"]["fwd_bwd_ms"], case["name"]
        assert case["ratios"]["pycmlt-cpu"]["speedup_fwd_bwd"] > 0
    md = (quick_results / "grid-quick-cpu.md").read_text()
    assert "Slowest shape: **" in md and "| N \\ C |" in md
    plot = report.plot_grid_heatmap(report.normalise(payload), tmp_path / "grid.png")
    assert plot.read_bytes()[:8] == PNG_MAGIC


def test_median_ms_batches_short_cpu_calls():
    """Calls shorter than SAMPLE_S are timed in batches (timer noise), long ones one at a time."""
    import time as _time

    from benchmarks.harness import SAMPLE_S, median_ms

    cpu = torch.device("cpu")
    short: dict = {}
    assert median_ms(lambda: None, cpu, warmup=1, repeat=3, stats=short) < SAMPLE_S * 1e3
    assert short["calls_per_sample"] > 1 and short["timed_calls"] == 3
    long: dict = {}
    ms = median_ms(lambda: _time.sleep(SAMPLE_S * 1.5), cpu, warmup=1, repeat=2, stats=long)
    assert long["calls_per_sample"] == 1 and ms >= SAMPLE_S * 1.5e3


def test_interleaved_median_ms_alternates_providers():
    """Providers are timed in alternating rounds (so drift hits them alike), each with its own median."""
    import time as _time

    from benchmarks.harness import SAMPLE_S, interleaved_median_ms

    order: list[str] = []

    def provider(name, seconds):
        def call():
            order.append(name)
            _time.sleep(seconds)
        return call

    slow_s, fast_s = SAMPLE_S * 2, SAMPLE_S * 1.2  # both above SAMPLE_S: one call per sample
    found = interleaved_median_ms({"slow": provider("slow", slow_s), "fast": provider("fast", fast_s)},
                                  torch.device("cpu"), warmup=1, repeat=3, rounds=3)
    assert found["slow"] >= slow_s * 1e3 and found["fast"] >= fast_s * 1e3 and found["slow"] > found["fast"]
    switches = sum(a != b for a, b in zip(order, order[1:]))
    assert switches >= 5  # warm-ups, then three rounds of slow, fast: not all of one provider, then the other
