"""Several methods, the same seeds, one table: each (method, seed) is a normal run folder under
the comparison folder, finished runs are reused and killed ones resumed; results are averaged
over seeds (mean ± std) into compare.json, compare.md and a per-class plot."""
from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import numpy as np

from pycmlt.eval.plots import plot_per_class_accuracy
from pycmlt.training.config import METHODS, TrainConfig
from pycmlt.training.loop import CHECKPOINT, train
from pycmlt.training.report import COLUMNS, ML_COLUMNS, format_metrics_table

ABLATIONS = {"no-align": {"use_align": False}, "no-infer": {"use_infer": False, "use_fuse": False},
             "no-fuse": {"use_fuse": False}, "no-semantic": {"semantic_head": False},
             "minilm": {"word_vectors": "minilm"}, "ldam-drw": {"cls_loss": "ldam-drw"}}
# Built on a ce model of the same seed (logit-adjust only adjusts ce's logits post hoc, so the ce
# model is reused instead of training the same network twice).
STAGE_TWO = ("crt", "tau-norm", "logit-adjust")


def parse_variant(name: str) -> tuple[str, dict]:
    """'cmltnet:no-align' -> ('cmltnet', {'use_align': False}); plain method names map to themselves.
    Variants of cmltnet: no-align, no-infer, no-fuse, no-semantic (ablations), minilm (word table
    initialised from MiniLM vectors), ldam-drw (LDAM-DRW classification loss, cosine classifier)."""
    method, _, ablation = name.partition(":")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r} in {name!r}; methods: {METHODS}")
    if ablation and (method != "cmltnet" or ablation not in ABLATIONS):
        raise ValueError(f"unknown variant {name!r}: variants are cmltnet:{'|'.join(ABLATIONS)}")
    return method, dict(ABLATIONS.get(ablation, {}))


def compare(base: TrainConfig, variants: list[str], seeds: list[int], out_dir: str | Path) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    order = sorted(variants, key=lambda v: parse_variant(v)[0] in STAGE_TWO)  # stage two after its stage one
    runs: dict[str, list[dict]] = {}
    for variant in order:
        method, changes = parse_variant(variant)
        for seed in seeds:
            run_dir = out_dir / variant.replace(":", "-") / f"seed{seed}"
            metrics_path = run_dir / "metrics.json"
            if metrics_path.exists():
                runs.setdefault(variant, []).append(json.loads(metrics_path.read_text()))
                continue
            if method in STAGE_TWO:
                stage1 = out_dir / "ce" / f"seed{seed}"
                if not (stage1 / "model.pt").exists():
                    train(base.replace(method="ce", seed=seed, out_dir=str(stage1)),
                          resume=(stage1 / CHECKPOINT).exists())
                changes = {**changes, "stage1": str(stage1)}
            config = base.replace(method=method, seed=seed, out_dir=str(run_dir), **changes)
            result = train(config, resume=(run_dir / CHECKPOINT).exists())
            runs.setdefault(variant, []).append(json.loads((result.out_dir / "metrics.json").read_text()))
    return summarise(runs, base, seeds, out_dir)


def summarise(runs: dict[str, list[dict]], base: TrainConfig, seeds: list[int], out_dir: Path) -> dict:
    first = next(iter(runs.values()))[0]
    keys = [k for k, _ in (ML_COLUMNS if first.get("kind") == "multi-label" else COLUMNS)]
    means, stds, per_class = {}, {}, {}
    for variant, results in runs.items():
        means[variant], stds[variant] = {"kind": first.get("kind")}, {}
        for key in keys:
            vals = [r[key] for r in results if r.get(key) is not None]
            means[variant][key] = float(np.mean(vals)) if vals else None
            stds[variant][key] = float(np.std(vals)) if len(vals) > 1 else None
        words = [r["words"] for r in results if "words" in r]
        if words:
            means[variant]["words"] = {k: float(np.mean([w[k] for w in words])) for k in words[0]}
        if first.get("kind") == "single-label":
            stacked = np.array([[np.nan if v is None else v for v in r["per_class"]] for r in results], dtype=float)
            per_class[variant] = [None if np.isnan(v) else float(v) for v in np.nanmean(stacked, axis=0)]
    command = " ".join(shlex.quote(a) for a in ["pycmlt", *sys.argv[1:]]) if sys.argv else ""
    table = format_metrics_table(means, stds)
    summary = {"dataset": base.dataset, "seeds": seeds, "command": command, "config": base.to_dict(),
               "mean": means, "std": stds, "runs": {v: [_brief(r) for r in rs] for v, rs in runs.items()}}
    tmp = out_dir / "compare.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    os.replace(tmp, out_dir / "compare.json")
    md = [f"# {base.dataset}: mean ± std over seeds {seeds} (values in %)", "", table, "",
          f"Command: `{command}`", ""]
    (out_dir / "compare.md").write_text("\n".join(md))
    if per_class:
        plot_per_class_accuracy(per_class, first["train_counts"], out_dir / "per_class_accuracy.png",
                                title=f"{base.dataset}: per-class accuracy (mean over seeds)")
    print(table)
    return summary


def _brief(result: dict) -> dict:
    return {k: v for k, v in result.items() if k not in ("per_class", "per_class_ap", "classes", "train_counts",
                                                          "test_counts")}
