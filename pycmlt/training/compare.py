"""Several methods, the same seeds, one table: each (method, data split, seed) is a normal run folder
under the comparison folder (<variant>/seed<s>, or <variant>/data<d>-seed<s> with several data
splits), finished runs are reused and killed ones resumed; results are averaged over all runs
(mean ± std) into compare.json, compare.md and a per-class plot. With a reference method, every
other method gets a paired comparison with it (pycmlt.evaluation.paired: per-run differences of top-1 and
few-shot accuracy, bootstrap CI over distinct test items) in compare.json["paired"] and compare.md.
With `tuned` ({variant: overrides}, e.g. from `pycmlt tune`'s tune.json via load_tuned), each variant
trains with its own hyper-parameters chosen on val; compare.json["tuned"] and compare.md record them."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pycmlt.data.stats import shot_groups
from pycmlt.evaluation.paired import RunPair, paired_bootstrap, resolved
from pycmlt.evaluation.plots import plot_per_class_accuracy
from pycmlt.evaluation.predictions import PREDICTIONS, load_predictions
from pycmlt.atomic_write import atomic_write_json, atomic_write_text
from pycmlt.training.checkpoint import CHECKPOINT
from pycmlt.training.command_line import invoking_command
from pycmlt.training.config import TrainConfig
from pycmlt.training.loop import train
from pycmlt.training.metrics_report import COLUMNS, ML_COLUMNS, format_metrics_table, percent
from pycmlt.training.tune import tuned_point
from pycmlt.training.variants import parse_variant, stage_one_variant, variant_folder


def _check_ints(name: str, values) -> list[int]:
    values = list(values)
    if not values or len(set(values)) != len(values) or not all(isinstance(v, int) for v in values):
        raise ValueError(f"{name} must be a non-empty list of distinct ints, got {values}")
    return values


def load_tuned(items: list[str], dataset: str) -> dict[str, dict]:
    """['ce=runs/tune/ce', 'cmltnet=runs/tune/cmltnet/tune.json'] -> {variant: the best point's
    overrides} from each `pycmlt tune` output (a tune.json or its folder), checked to be a tuning of
    that variant's method on `dataset`."""
    tuned: dict[str, dict] = {}
    for item in items:
        variant, sep, path = item.partition("=")
        if not sep or not variant or not path:
            raise ValueError(f"--tuned expects METHOD=PATH (a tune.json or the folder holding it), got {item!r}")
        method, _ = parse_variant(variant)
        file = Path(path) / "tune.json" if Path(path).is_dir() else Path(path)
        if not file.is_file():
            raise ValueError(f"--tuned {item}: no tune.json at {file}")
        summary = json.loads(file.read_text())
        if summary.get("method") != method or summary.get("dataset") != dataset:
            raise ValueError(f"--tuned {item}: {file} tunes {summary.get('method')!r} on {summary.get('dataset')!r}, "
                             f"not {method!r} on {dataset!r}")
        if variant in tuned:
            raise ValueError(f"--tuned {variant} is given twice")
        tuned[variant] = tuned_point(summary, file)
    return tuned


def compare(base: TrainConfig, variants: list[str], seeds: list[int], out_dir: str | Path,
            data_seeds: list[int] | None = None, reference: str | None = None, n_boot: int = 2000,
            tuned: dict[str, dict] | None = None) -> dict:
    """Trains (or reuses) every (variant, data seed, seed) run and summarises them; data_seeds
    default to [base.data_seed]; `reference` (one of `variants`) adds the paired comparisons;
    `tuned` (from load_tuned) gives a variant its own val-chosen overrides of `base`."""
    seeds = _check_ints("seeds", seeds)
    data_seeds = _check_ints("data_seeds", [base.data_seed] if data_seeds is None else data_seeds)
    for v in variants:
        parse_variant(v)
    tuned = tuned or {}
    unknown = sorted(set(tuned) - set(variants) - {stage_one_variant(v) for v in variants})
    if unknown:
        raise ValueError(f"tuned overrides for {unknown}, which are not compared (methods: {variants})")
    if reference is not None and reference not in variants:
        raise ValueError(f"reference {reference!r} must be one of the compared methods {variants}")
    if reference is not None and len(variants) < 2:
        raise ValueError("a paired comparison needs at least one method besides the reference")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # A method with a stage one (crt, tau-norm; logit-adjust, which only adjusts ce's logits post hoc)
    # is built on that variant's model of the same data split and seed (its recipe's stage_one, or
    # the variant after '@': crt@cmltnet), trained first or reused.
    order = sorted(variants, key=lambda v: stage_one_variant(v) is not None)
    runs: dict[str, list[dict]] = {}
    run_dirs: dict[str, list[tuple[int, Path]]] = {}
    for variant in order:
        method, changes = parse_variant(variant)
        for data_seed in data_seeds:
            for seed in seeds:
                run_dir = run_folder(out_dir, variant, data_seed, seed, data_seeds, base.data_seed)
                name = run_dir.name
                run_dirs.setdefault(variant, []).append((data_seed, run_dir))
                metrics_path = run_dir / "metrics.json"
                if metrics_path.exists():
                    runs.setdefault(variant, []).append({**json.loads(metrics_path.read_text()),
                                                         "data_seed": data_seed})
                    continue
                run_changes = dict(changes)
                stage_one = stage_one_variant(variant)
                if stage_one is not None:
                    stage1 = out_dir / variant_folder(stage_one) / name
                    if not (stage1 / "model.pt").exists():
                        one_method, one_changes = parse_variant(stage_one)
                        train(base.replace(method=one_method, seed=seed, data_seed=data_seed, out_dir=str(stage1),
                                           **{**_overrides(tuned, stage_one), **one_changes}),
                              resume=(stage1 / CHECKPOINT).exists())
                    run_changes["stage1"] = str(stage1)
                config = base.replace(method=method, seed=seed, data_seed=data_seed, out_dir=str(run_dir),
                                      **{**_overrides(tuned, variant), **run_changes})
                result = train(config, resume=(run_dir / CHECKPOINT).exists())
                runs.setdefault(variant, []).append({**json.loads((result.out_dir / "metrics.json").read_text()),
                                                     "data_seed": data_seed})
    paired = paired_comparisons(run_dirs, reference, n_boot) if reference is not None else None
    return summarise(runs, base, seeds, out_dir, data_seeds=data_seeds, paired=paired, tuned=tuned)


def run_folder(out_dir: str | Path, variant: str, data_seed: int, seed: int, data_seeds: list[int],
               base_data_seed: int) -> Path:
    """Where compare keeps the run of (variant, data split, seed) when it compares over `data_seeds`:
    <variant>/data<d>-seed<s>, or <variant>/seed<s> when the only split is the base config's own."""
    several_splits = list(data_seeds) != [base_data_seed]
    name = f"data{data_seed}-seed{seed}" if several_splits else f"seed{seed}"
    return Path(out_dir) / variant_folder(variant) / name


def _overrides(tuned: dict[str, dict], variant: str) -> dict:
    return dict(tuned[variant]["overrides"]) if variant in tuned else {}


def paired_comparisons(run_dirs: dict[str, list[tuple[int, Path]]], reference: str, n_boot: int = 2000) -> dict:
    """{variant: {"reference": name, "top1": {"delta", "ci"}, "few": {...} | None}} from the runs'
    predictions.npz, pairing each run with the reference's run of the same data split and seed."""
    out = {}
    for variant, dirs in run_dirs.items():
        if variant == reference:
            continue
        pairs = []
        for (data_seed, run_dir), (_, ref_dir) in zip(dirs, run_dirs[reference]):
            mine, ref = load_predictions(run_dir / PREDICTIONS), load_predictions(ref_dir / PREDICTIONS)
            counts = json.loads((ref_dir / "metrics.json").read_text())["train_counts"]
            pairs.append(RunPair(split=data_seed, item_keys=ref["item_keys"], labels=ref["labels"],
                                 correct=_aligned(mine, ref, run_dir, ref_dir), correct_reference=ref["correct"],
                                 few_classes=shot_groups(counts)["few"].tolist()))
        result = paired_bootstrap(pairs, n_boot=n_boot)
        out[variant] = {"reference": reference, "top1": result["top1"], "few": result["few"],
                        "runs": result["runs"], "n_boot": result["n_boot"]}
    return out


def _aligned(mine: dict, ref: dict, run_dir: Path, ref_dir: Path):
    if not (np.array_equal(mine["item_keys"], ref["item_keys"]) and np.array_equal(mine["labels"], ref["labels"])):
        raise ValueError(f"{run_dir} and {ref_dir} were not tested on the same samples; a paired comparison "
                         "needs the same test split (dataset, data seed and options)")
    return mine["correct"]


def format_paired_table(paired: dict) -> str:
    """Markdown: Δ [lo, hi] in points per method; 'resolved' when the interval excludes 0."""
    def cell(m):
        if m is None:
            return "—"
        runs_ci = m["ci_runs"]
        d, (lo, hi), (rlo, rhi) = 100 * m["delta"], [100 * x for x in m["ci"]], [100 * x for x in runs_ci]
        return (f"{d:+.1f} [{lo:+.1f}, {hi:+.1f}] runs [{rlo:+.1f}, {rhi:+.1f}]"
                + (" resolved" if resolved(m["ci"], runs_ci) else ""))

    header = "[95% CI: items] runs [items and runs]"
    lines = [f"| method | Δ top-1 {header} | Δ few {header} |", "|---|---:|---:|"]
    lines += [f"| {v} | {cell(p['top1'])} | {cell(p['few'])} |" for v, p in paired.items()]
    return "\n".join(lines)


def summarise(runs: dict[str, list[dict]], base: TrainConfig, seeds: list[int], out_dir: Path,
              data_seeds: list[int] | None = None, paired: dict | None = None, tuned: dict | None = None) -> dict:
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
    command = invoking_command()
    table = format_metrics_table(means, stds)
    data_seeds = data_seeds or [base.data_seed]
    summary = {"dataset": base.dataset, "seeds": seeds, "data_seeds": data_seeds, "command": command,
               "config": base.to_dict(), "mean": means, "std": stds,
               "runs": {v: [_brief(r) for r in rs] for v, rs in runs.items()}}
    if paired is not None:
        summary["paired"] = paired
    if tuned:
        summary["tuned"] = tuned
    atomic_write_json(out_dir / "compare.json", summary)
    splits = f"data splits {data_seeds} x seeds {seeds}" if data_seeds != [base.data_seed] else f"seeds {seeds}"
    md = [f"# {base.dataset}: mean ± std over {splits} (values in %)", "", table, ""]
    if paired:
        ref = next(iter(paired.values()))
        md += [f"## Paired comparison with {ref['reference']} (Δ in points, method minus {ref['reference']})", "",
               format_paired_table(paired), "",
               f"Δ: mean over the {ref['runs']} (data split, seed) runs of the per-run difference. 95% CI: "
               f"percentile bootstrap ({ref['n_boot']} replicates) resampling distinct test items within each "
               "data split; runs [..]: the same with the runs also drawn with replacement, so that it widens "
               "when runs disagree; a difference is *resolved* only when both intervals exclude 0.", ""]
    if tuned:
        md += ["## Hyper-parameters chosen on val (`pycmlt tune`; the rest as in the command)", "",
               "| method | chosen on val | val top-1 | val few | grid points |", "|---|---|---:|---:|---:|"]
        md += [f"| {v} | {', '.join(f'{k}={x}' for k, x in t['overrides'].items())} | "
               f"{percent(t['val'].get('top1'))} | {percent(t['val'].get('few'))} | {t['points']} |"
               for v, t in tuned.items()]
        md += [""]
    md += [f"Command: `{command}`", ""]
    atomic_write_text(out_dir / "compare.md", "\n".join(md))
    if per_class:
        plot_per_class_accuracy(per_class, first["train_counts"], out_dir / "per_class_accuracy.png",
                                title=f"{base.dataset}: per-class accuracy (mean over seeds)")
    print(table)
    return summary


def _brief(result: dict) -> dict:
    return {k: v for k, v in result.items() if k not in ("per_class", "per_class_ap", "classes", "train_counts",
                                                          "test_counts")}
