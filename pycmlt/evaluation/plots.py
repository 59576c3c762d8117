"""Plots people would rather look at than read: per-class accuracy against training frequency."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pycmlt.evaluation.pyplot import pyplot


def plot_per_class_accuracy(results: dict[str, list[float | None]], train_counts, path: str | Path,
                            title: str = "Per-class accuracy vs. training frequency") -> Path:
    """One line per method of per-class test accuracy, classes sorted from head to tail, with the
    training counts (log scale) behind them and the shot-group boundaries marked. Saved as PNG."""
    plt = pyplot()
    counts = np.asarray(train_counts, dtype=float)
    order = np.argsort(-counts, kind="stable")
    x = np.arange(len(order))
    fig, ax = plt.subplots(figsize=(11, 4.5))
    ax2 = ax.twinx()
    ax2.bar(x, counts[order], color="0.85", width=1.0, label="training images")
    ax2.set_yscale("log")
    ax2.set_ylabel("training images per class (log)")
    ax.set_zorder(ax2.get_zorder() + 1)
    ax.patch.set_visible(False)
    window = max(1, len(order) // 15)
    for name, per_class in results.items():
        acc = np.array([np.nan if v is None else v for v in per_class], dtype=float)[order]
        smooth = _nan_moving_average(acc, window)
        line, = ax.plot(x, smooth, linewidth=2, label=f"{name} (moving avg, {window} classes)")
        ax.scatter(x, acc, s=6, alpha=0.35, color=line.get_color())
    for boundary in (100, 20):
        idx = np.searchsorted(-counts[order], -boundary, side="right")
        ax.axvline(idx - 0.5, color="k", linestyle=":", linewidth=1)
    ax.set_xlabel("classes, most to least frequent in training (dotted: many | medium | few)")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(-0.5, len(order) - 0.5)
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _nan_moving_average(values: np.ndarray, window: int) -> np.ndarray:
    out = np.full_like(values, np.nan)
    for i in range(len(values)):
        chunk = values[max(0, i - window // 2): i + window // 2 + 1]
        chunk = chunk[~np.isnan(chunk)]
        if chunk.size:
            out[i] = chunk.mean()
    return out
