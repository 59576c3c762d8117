"""The two figures of `pycmlt analyze`, runs side by side as columns: the feature distribution
(t-SNE by shot group over the per-group statistics) and the Grad-CAM attention grid."""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from pycmlt.evaluation.pyplot import pyplot

GROUP_COLOURS = {"many": "#4C72B0", "medium": "#8FBF6A", "few": "#D62728"}
GROUP_LABELS = {"many": "many-shot (>100)", "medium": "medium-shot (20-100)", "few": "few-shot (<20)"}


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight", pad_inches=0.15)
    return path


def _wrap(text: str, width: int) -> str:
    """text broken into lines of at most `width` characters, keeping its own line breaks."""
    return "\n".join(line for part in text.split("\n") for line in (textwrap.wrap(part, width) or [""]))


def _wrap_to(fig, text: str, fontsize: float) -> str:
    """text broken into lines that fit the figure's width at this font size."""
    return _wrap(text, max(20, int(fig.get_figwidth() * 130 / fontsize)))


def plot_feature_distribution(panels: dict[str, dict], path: str | Path, title: str) -> Path:
    """panels: run name -> {"coords": [N, 2] t-SNE, "groups": [N] shot group of each point,
    "stats": shot_group_feature_stats(...)}. Top row: the t-SNE of each run, few-shot (tail) points
    drawn larger, outlined and on top; bottom row: each group's intra-class similarity and nearest-
    class margin (one y scale for every run)."""
    plt = pyplot()
    names = list(panels)
    fig, axes = plt.subplots(2, len(names), figsize=(4.6 * len(names), 8.2), squeeze=False,
                             gridspec_kw={"height_ratios": [3, 1.6]})
    values = [v for p in panels.values() for g in p["stats"].values()
              for v in (g["intra_class_similarity"], g["nearest_class_margin"]) if v is not None]
    low, high = min([0.0, *values]), max([0.0, *values])
    pad = 0.12 * max(high - low, 1e-3)
    for col, name in enumerate(names):
        panel = panels[name]
        ax = axes[0, col]
        coords, groups = np.asarray(panel["coords"]), np.asarray(panel["groups"])
        for group in ("many", "medium", "few"):
            sel = groups == group
            if not sel.any():
                continue
            tail = group == "few"
            ax.scatter(coords[sel, 0], coords[sel, 1], s=26 if tail else 9, c=GROUP_COLOURS[group],
                       edgecolors="black" if tail else "none", linewidths=0.5, alpha=0.95 if tail else 0.55,
                       zorder=3 if tail else 2, label=f"{GROUP_LABELS[group]}: {int(sel.sum())}")
        ax.set_title(name, fontsize=11, fontweight="bold")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(loc="best", fontsize=7, markerscale=1.2, framealpha=0.8)
        _group_bars(axes[1, col], panel["stats"], (low - pad, high + 3 * pad))
    axes[1, 0].set_ylabel("cosine")
    fig.suptitle(_wrap_to(fig, title, 12), fontsize=12)
    fig.tight_layout()
    out = _save(fig, path)
    plt.close(fig)
    return out


def _group_bars(ax, stats: dict, ylim: tuple[float, float]) -> None:
    from matplotlib.patches import Patch

    groups = [g for g in ("many", "medium", "few") if g in stats]
    x = np.arange(len(groups))
    width = 0.38
    for offset, key, hatch in ((-width / 2, "intra_class_similarity", ""), (width / 2, "nearest_class_margin", "//")):
        vals = [stats[g][key] for g in groups]
        heights = [0.0 if v is None else v for v in vals]
        bars = ax.bar(x + offset, heights, width, color=[GROUP_COLOURS[g] for g in groups], hatch=hatch,
                      edgecolor="black", linewidth=0.5)
        for bar, v in zip(bars, vals):
            text = "n/a" if v is None else f"{v:.3f}"
            y = bar.get_height()
            ax.annotate(text, (bar.get_x() + bar.get_width() / 2, y), ha="center",
                        va="bottom" if y >= 0 else "top", fontsize=7, xytext=(0, 2 if y >= 0 else -2),
                        textcoords="offset points")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xticks(x, groups)
    ax.set_ylim(*ylim)
    ax.legend(handles=[Patch(facecolor="white", edgecolor="black", label="intra-class similarity"),
                       Patch(facecolor="white", edgecolor="black", hatch="//", label="nearest-class margin")],
              fontsize=7, loc="upper center", ncol=2, frameon=False)


def plot_attention_grid(images: np.ndarray, row_titles: list[str], columns: dict[str, dict], path: str | Path,
                        title: str) -> Path:
    """images: [B, H, W, 3] uint8 inputs; row_titles: one per image (its true class); columns: run
    name -> {"maps": [B, H, W] Grad-CAM in [0, 1], "titles": [B] the prediction of each image,
    "correct": [B] bool, "words": [B] inferred words or None}. Rows are images; the first column the
    input, then one column per run with its heatmap over the image (opacity grows with the heat, so a
    map without support for the class leaves the image bare) and, for a CMLTNet with word inference,
    the words it infers under it."""
    plt = pyplot()
    names = list(columns)
    has_words = any(c.get("words") is not None for c in columns.values())
    rows, cols = len(images), 1 + len(names)
    header = 1.2  # inches above the grid: the title and the column names (the blank rest is cropped)
    height = (3.2 if has_words else 2.8) * rows + header
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, height), squeeze=False)
    for r in range(rows):
        ax = axes[r, 0]
        ax.imshow(images[r])
        ax.set_title(_wrap(row_titles[r], 26), fontsize=8)
        for c, name in enumerate(names, start=1):
            column = columns[name]
            ax = axes[r, c]
            ax.imshow(images[r])
            heat = np.asarray(column["maps"][r], dtype=float)
            ax.imshow(heat, cmap="jet", alpha=0.65 * heat, vmin=0.0, vmax=1.0)
            ok = bool(column["correct"][r])
            ax.set_title(_wrap(column["titles"][r], 26), fontsize=8,
                         color="#1a7f37" if ok else "#c62828")
            words = column.get("words")
            if words is not None:
                ax.set_xlabel(_wrap("words: " + ", ".join(words[r]), 30), fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout(rect=(0, 0, 1, 1 - header / height))
    fig.canvas.draw()  # the first row's titles now have their extent: the column names go just above them
    to_figure = fig.transFigure.inverted()
    above = max(axes[0, c].title.get_window_extent().transformed(to_figure).y1 for c in range(cols)) + 0.06 / height
    for c, name in enumerate(["input (true class)", *names]):
        box = axes[0, c].get_position()
        fig.text((box.x0 + box.x1) / 2, above, name, ha="center", va="bottom", fontsize=10, fontweight="bold")
    fig.text(0.5, above + 0.3 / height, _wrap_to(fig, title, 11), ha="center", va="bottom", fontsize=11)
    out = _save(fig, path)
    plt.close(fig)
    return out
