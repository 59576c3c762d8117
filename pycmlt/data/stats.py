"""Long-tail statistics of a dataset: class counts, imbalance ratio, many/medium/few shot groups.

Shot groups follow docs/evaluation.md and are defined by the *training* count of a class:
many > 100, medium 20..100 (inclusive), few < 20.
"""
from __future__ import annotations

from typing import Sequence

import torch

MANY_SHOT_MIN = 100   # many: count > 100
FEW_SHOT_MAX = 20     # few: count < 20
SHOT_GROUPS = ("many", "medium", "few")


def _counts(class_counts) -> torch.Tensor:
    return torch.as_tensor(class_counts).detach().to(torch.float64).flatten()


def shot_groups(class_counts, *, many: int = MANY_SHOT_MIN, few: int = FEW_SHOT_MAX) -> dict[str, torch.Tensor]:
    """{"many": class ids with count > many, "medium": few <= count <= many, "few": count < few}."""
    n = _counts(class_counts)
    return {
        "many": torch.nonzero(n > many).flatten(),
        "medium": torch.nonzero((n >= few) & (n <= many)).flatten(),
        "few": torch.nonzero(n < few).flatten(),
    }


def shot_group_of_classes(class_counts, **kw) -> list[str]:
    """The shot group name of every class."""
    out = [""] * len(_counts(class_counts))
    for name, ids in shot_groups(class_counts, **kw).items():
        for i in ids.tolist():
            out[i] = name
    return out


def imbalance_ratio(class_counts) -> float:
    """max / min class count (inf when a class has no example)."""
    n = _counts(class_counts)
    if n.numel() == 0:
        return float("nan")
    lo = n.min().item()
    return float("inf") if lo <= 0 else n.max().item() / lo


def summarize(dataset) -> dict:
    """Statistics of a pycmlt dataset object (any split) as a JSON-friendly dict."""
    counts = torch.as_tensor(dataset.class_counts)
    groups = shot_groups(counts)
    split_counts = torch.as_tensor(dataset.split_counts)
    word_lens = [len(w) for w in dataset.word_id_lists()] if len(dataset) else []
    return {
        "name": dataset.name,
        "split": dataset.split,
        "num_images": len(dataset),
        "num_classes": len(dataset.classes),
        "multi_label": dataset.multi_label,
        "train_class_counts": counts.tolist(),
        "split_class_counts": split_counts.tolist(),
        "train_images": int(dataset.meta.get("train_size", 0)) or None,
        "imbalance_ratio": imbalance_ratio(counts),
        "shot_groups": {k: len(v) for k, v in groups.items()},
        "shot_group_images_in_split": {k: int(split_counts[v].sum().item()) for k, v in groups.items()},
        "vocab_size": len(dataset.vocab),
        "mean_words_per_image": (sum(word_lens) / len(word_lens)) if word_lens else 0.0,
        "images_without_words": sum(1 for n in word_lens if n == 0),
        "bad_images": dataset.bad_images.count,
    }


def format_summary(summary: dict, classes: Sequence[str] | None = None, *, show_classes: int = 10) -> str:
    """Readable report of `summarize(...)`: totals, imbalance, shot groups, head and tail classes."""
    s = summary
    counts = s["train_class_counts"]
    lines = [
        f"dataset {s['name']} [{s['split']}]: {s['num_images']} images, {s['num_classes']} classes"
        f"{' (multi-label)' if s['multi_label'] else ''}, vocabulary {s['vocab_size']} words "
        f"({s['mean_words_per_image']:.2f} per image, {s['images_without_words']} images without words)",
        f"training counts per class: max {max(counts) if counts else 0}, min {min(counts) if counts else 0}, "
        f"imbalance ratio {s['imbalance_ratio']:.1f}",
        "shot groups (training count; many > 100, medium 20..100, few < 20): " + ", ".join(
            f"{g} {s['shot_groups'][g]} classes / {s['shot_group_images_in_split'][g]} {s['split']} images"
            for g in SHOT_GROUPS),
    ]
    if s.get("bad_images"):
        lines.append(f"bad images skipped: {s['bad_images']}")
    if classes is not None and counts and show_classes > 0:
        order = sorted(range(len(counts)), key=lambda i: (-counts[i], i))
        split_counts = s["split_class_counts"]

        def row(i):
            return f"  {counts[i]:6d} {split_counts[i]:6d}  {classes[i]}"
        lines.append(f"  {'train':>6s} {s['split']:>6s}  class")
        if len(order) <= 2 * show_classes:
            lines += [row(i) for i in order]
        else:
            lines += [row(i) for i in order[:show_classes]] + ["  ..."] + [row(i) for i in order[-show_classes:]]
    return "\n".join(lines)
