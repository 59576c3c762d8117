"""The metrics files of a run that people read: metrics.json, a markdown table (also printed) and the
per-class accuracy plot."""
from __future__ import annotations

from pathlib import Path

from pycmlt.atomic_write import atomic_write_json, atomic_write_text
from pycmlt.evaluation.plots import plot_per_class_accuracy

COLUMNS = [("top1", "top-1"), ("mean_class_accuracy", "mean class acc"), ("many", "many"),
           ("medium", "medium"), ("few", "few")]
ML_COLUMNS = [("mAP", "mAP"), ("macro_f1", "macro F1"), ("micro_f1", "micro F1")]


def percent(value) -> str:
    """A metric (a fraction, or None where it does not apply) as a percentage with one decimal, "—" if None."""
    return "—" if value is None else f"{100 * value:.1f}"


def format_metrics_table(results: dict[str, dict], stds: dict[str, dict] | None = None) -> str:
    """Markdown table, one row per method (values in %); optional ± std per cell."""
    first = next(iter(results.values()))
    cols = ML_COLUMNS if first.get("kind") == "multi-label" else COLUMNS
    word_ks = sorted({int(k.split("@")[1]) for m in results.values() for k in m.get("words", {})
                      if k.startswith("recall@")})
    header = ["method"] + [name for _, name in cols] + [f"word R@{k}" for k in word_ks]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * (len(header) - 1)]
    for method, m in results.items():
        sd = (stds or {}).get(method, {})
        cells = [method]
        for key, _ in cols:
            cell = percent(m.get(key))
            if key in sd and sd[key] is not None:
                cell += f" ± {100 * sd[key]:.1f}"
            cells.append(cell)
        for k in word_ks:
            cells.append(percent(m.get("words", {}).get(f"recall@{k}")))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_metrics(out_dir: Path, config, metrics: dict, classes: list[str], class_counts) -> None:
    """metrics.json (every metric, the classes and their training counts), metrics.md and the plot."""
    out_dir = Path(out_dir)
    atomic_write_json(out_dir / "metrics.json",
                      {"method": config.method, "dataset": config.dataset, "seed": config.seed,
                       "classes": list(classes), "train_counts": [int(c) for c in class_counts.tolist()], **metrics})
    atomic_write_text(out_dir / "metrics.md", format_metrics_table({config.method: metrics}) + "\n")
    if metrics.get("kind") == "single-label":
        plot_per_class_accuracy({config.method: metrics["per_class"]}, class_counts.tolist(),
                                out_dir / "per_class_accuracy.png",
                                title=f"{config.method} on {config.dataset}: per-class accuracy vs. training frequency")
