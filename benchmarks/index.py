"""Nearest-word search: queries per second and recall@k of FAISS flat and IVF (through
pycmlt.index.WordIndex) against brute-force torch (chunked matmul + topk), all in one run.

Default shape (the issue's): 100k-word vocabulary, D=384, 10k queries, k=10, on two synthetic
vocabularies: "isotropic" (Gaussian vectors: no structure, the worst case for IVF) and
"clustered" (words drawn around 2,000 topic centres, cosine to their centre about 0.55; queries =
the mean of 3 words of one topic plus noise, a stand-in for pooled word embeddings). Recall is measured against the exact top-k of
the fp32 torch brute force. IVF runs at a sweep of nprobe values, at the default
(nlist / 4) and at the nprobe WordIndex.tune_nprobe picks for recall 0.95 on 500 separate queries.
On a GPU: torch brute force on the GPU (fp32 and bf16) and FAISS GPU flat/IVF where the installed
FAISS has GPU support.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.harness import budget_note, median_ms, over_budget
from pycmlt.index import WordIndex, faiss_gpu_available, faiss_info

FULL = {"num_words": 100_000, "dim": 384, "num_queries": 10_000, "k": 10, "tune_queries": 500}
QUICK = {"num_words": 4_000, "dim": 64, "num_queries": 200, "k": 10, "tune_queries": 100}
NPROBE_SWEEP = (1, 4, 16, 64)
TORCH_CHUNK = 1024  # queries per matmul: a 1024 x V score block (400 MB at V = 100k, fp32)


def make_dataset(name: str, num_words: int, dim: int, num_queries: int, seed: int = 0):
    """(word vectors [V, D], queries [Q, D]), float32, rows L2-normalised."""
    g = torch.Generator().manual_seed(seed)
    if name == "isotropic":
        words = torch.randn(num_words, dim, generator=g)
        queries = torch.randn(num_queries, dim, generator=g)
    elif name == "clustered":
        topics = F.normalize(torch.randn(2000, dim, generator=g), dim=1)
        topic_of = torch.randint(0, 2000, (num_words,), generator=g)
        words = topics[topic_of] + 1.5 * torch.randn(num_words, dim, generator=g) / math.sqrt(dim)
        # each query pools 3 words of one topic (as an image's words would), plus noise
        order = torch.argsort(topic_of)
        starts = torch.searchsorted(topic_of[order], torch.arange(2000))
        counts = torch.bincount(topic_of, minlength=2000)
        qt = torch.multinomial(counts.double(), num_queries, replacement=True, generator=g)
        picks = starts[qt, None] + (torch.rand(num_queries, 3, generator=g) * counts[qt, None]).long()
        members = F.normalize(words, dim=1)[order[picks]]
        queries = members.mean(dim=1) + torch.randn(num_queries, dim, generator=g) / math.sqrt(dim)
    else:
        raise ValueError(name)
    return F.normalize(words, dim=1).contiguous(), F.normalize(queries, dim=1).contiguous()


def torch_topk(words: torch.Tensor, queries: torch.Tensor, k: int, chunk: int = TORCH_CHUNK):
    """Brute-force top-k inner products, `chunk` queries at a time."""
    ids = torch.empty(queries.shape[0], k, dtype=torch.int64, device=queries.device)
    scores = torch.empty(queries.shape[0], k, dtype=queries.dtype, device=queries.device)
    for start in range(0, queries.shape[0], chunk):
        s, i = torch.topk(queries[start:start + chunk] @ words.T, k, dim=1)
        scores[start:start + chunk], ids[start:start + chunk] = s, i
    return scores, ids


def recall(found, exact: np.ndarray) -> float:
    found = found.cpu().numpy() if isinstance(found, torch.Tensor) else found
    hits = sum(len(set(f.tolist()) & set(e.tolist())) for f, e in zip(found, exact))
    return hits / exact.size


SINGLE_RUN_S = 10.0  # a configuration slower than this is timed once (its first run)


def _timed(fn, device, warmup, repeat):
    """(result of the first call, median ms); the first call is the warm-up."""
    t0 = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    first = time.perf_counter() - t0
    if first > SINGLE_RUN_S:
        return out, first * 1e3
    return out, median_ms(fn, device, warmup=max(0, warmup - 1), repeat=repeat)


def _entry(provider, ms, num_queries, found, exact, **extra):
    return {"provider": provider, "search_ms": ms, "qps": num_queries / (ms * 1e-3),
            "recall": recall(found, exact), **extra}


def run_dataset(name: str, device: torch.device, cfg: dict, warmup: int, repeat: int) -> dict:
    k, nq = cfg["k"], cfg["num_queries"]
    words_cpu, all_queries = make_dataset(name, cfg["num_words"], cfg["dim"], nq + cfg["tune_queries"])
    queries_cpu, tune_cpu = all_queries[:nq], all_queries[nq:]
    vocab = [f"w{i}" for i in range(cfg["num_words"])]
    words, queries = words_cpu.to(device), queries_cpu.to(device)
    out = []

    (_, exact), ms = _timed(lambda: torch_topk(words, queries, k), device, warmup, repeat)
    exact = exact.cpu().numpy()
    out.append(_entry(f"torch brute force ({device.type}, fp32)", ms, nq, exact, exact))
    if device.type == "cuda":
        w16, q16 = words.bfloat16(), queries.bfloat16()
        (_, ids), ms = _timed(lambda: torch_topk(w16, q16, k), device, warmup, repeat)
        out.append(_entry("torch brute force (cuda, bf16)", ms, nq, ids, exact))

    try:
        gpu_faiss = faiss_gpu_available()  # imports FAISS
    except ImportError as exc:  # FAISS is not installed here (e.g. a bare GPU machine): torch rows only
        faiss_devices = []
        out.append({"provider": "faiss", "error": f"ImportError: {exc}"})
    else:
        faiss_devices = ["cpu"] if device.type == "cpu" else (["cuda"] if gpu_faiss else [])
        if device.type == "cuda" and not gpu_faiss:
            out.append({"provider": "faiss-gpu",
                        "error": "the installed FAISS has no GPU support (pip install 'pycmlt[gpu]')"})
    for where in faiss_devices:
        if over_budget():
            out.append({"provider": f"faiss ({where})", "error": budget_note()})
            break
        label = "faiss" if where == "cpu" else "faiss-gpu"
        t0 = time.perf_counter()
        flat = WordIndex(vocab, words_cpu, kind="flat", device=where)
        build = time.perf_counter() - t0
        (_, ids), ms = _timed(lambda: flat.search(queries, k), device, warmup, repeat)
        out.append(_entry(f"{label} flat", ms, nq, ids, exact, build_s=build))
        del flat

        t0 = time.perf_counter()
        ivf = WordIndex(vocab, words_cpu, kind="ivf", device=where)
        build = time.perf_counter() - t0
        default = ivf.nprobe
        t0 = time.perf_counter()
        tuned = ivf.tune_nprobe(tune_cpu, k=k, target_recall=0.95)
        tune_s = time.perf_counter() - t0
        sweep = sorted({p for p in NPROBE_SWEEP if p < ivf.nlist} | {default, tuned})
        for nprobe in sweep:
            if over_budget():
                out.append({"provider": f"{label} ivf nprobe={nprobe}", "error": budget_note()})
                continue
            ivf.nprobe = nprobe
            (_, ids), ms = _timed(lambda: ivf.search(queries, k), device, warmup, repeat)
            note = ", ".join(n for n, v in (("default", default), ("tuned for 0.95", tuned)) if v == nprobe)
            out.append(_entry(f"{label} ivf nprobe={nprobe}" + (f" ({note})" if note else ""), ms, nq, ids, exact,
                              build_s=build, nlist=ivf.nlist, nprobe=nprobe,
                              **({"tune_s": tune_s} if nprobe == tuned else {})))
        del ivf
    base = out[0]["search_ms"]
    for m in out:
        if m.get("search_ms"):
            m["speedup_vs_torch"] = base / m["search_ms"]
    return {"name": f"{name} V={cfg['num_words']} D={cfg['dim']} Q={nq} k={k}", "dataset": name,
            **cfg, "dtype": "torch.float32", "measurements": out}


def run(device: torch.device, *, quick: bool = False) -> dict:
    cfg = QUICK if quick else FULL
    warmup, repeat = (1, 1) if quick else (1, 3)
    cases = [run_dataset(name, device, cfg, warmup, repeat) for name in ("isotropic", "clustered")]
    try:
        info = faiss_info()
    except ImportError as exc:
        info = {"error": str(exc)}
    return {"cases": cases, "faiss": info, "render": markdown,
            "settings": {"warmup": warmup, "repeat": repeat, "single_run_above_s": SINGLE_RUN_S}}


def markdown(payload: dict) -> str:
    m = payload["machine"]
    f = payload.get("faiss", {})
    lines = [f"# {payload['benchmark']} benchmark", "",
             f"Measured on **{m['device_name']}** ({m['cpu_count']} CPU cores, {m['torch_threads']} torch threads, "
             f"{f.get('omp_threads')} FAISS threads), torch {m['torch']}, faiss {f.get('faiss_version')} "
             f"(GPU build: {f.get('gpu_build')}), commit {m['git_commit']}, {m['date']}.",
             "Search time = median wall time of one call answering all queries "
             f"({payload.get('settings', {}).get('repeat', 3)} repeats after a warm-up; "
             f"configurations slower than {SINGLE_RUN_S:.0f} s: one run); recall@k against the exact fp32 "
             "brute-force top-k; build = index construction (IVF: k-means training included).",
             "The machine is shared with other jobs: expect noise of tens of percent between rows.", ""]
    for case in payload["cases"]:
        lines += [f"## {case['name']}", "",
                  "| provider | build s | search ms | queries/s | recall@k | speed-up vs torch |",
                  "|---|---:|---:|---:|---:|---:|"]
        for r in case["measurements"]:
            if r.get("error"):
                lines.append(f"| {r['provider']} | — | — | — | — | — | <!-- {r['error']} -->")
                continue
            lines.append(f"| {r['provider']} | {_f(r.get('build_s'))} | {_f(r['search_ms'])} | {_f(r['qps'])} | "
                         f"{r['recall']:.4f} | {_f(r.get('speedup_vs_torch'))}x |")
        lines.append("")
    return "\n".join(lines)


def _f(value):
    if value is None:
        return "—"
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"
