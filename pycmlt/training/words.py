"""Words inferred from images by a trained CMLTNet (cross-modal inference, docs/method.md and docs/evaluation.md): for
image files given on the command line, and for test examples next to their true words."""
from __future__ import annotations

from pathlib import Path

import torch

from pycmlt.data.image_modes import DEFAULT_BACKGROUND
from pycmlt.data.images import load_image
from pycmlt.data.transforms import Normalize
from pycmlt.models import CMLTNet


def images_from_files(paths: list[str | Path], image: dict) -> torch.Tensor:
    """[B, 3, S, S] model inputs from image files, prepared as at training (size, resize mode,
    background of transparent images, mean, std; models saved before the last two were recorded
    get the defaults)."""
    normalize = Normalize(image["mean"], image["std"])
    resize, background = image.get("resize", "crop"), image.get("background", DEFAULT_BACKGROUND)
    return torch.stack([normalize(load_image(p, image["size"], resize, background)) for p in paths])


def format_inferred(rows: list[list[tuple[str, float]]], names: list[str], truths: list[list[str]] | None = None,
                    predicted: list[str] | None = None) -> str:
    lines = []
    for i, (name, row) in enumerate(zip(names, rows)):
        lines.append(name)
        lines.append("  inferred: " + ", ".join(f"{w} ({s:.2f})" for w, s in row))
        if truths is not None:
            lines.append("  true:     " + (", ".join(truths[i]) if truths[i] else "(none)"))
        if predicted is not None:
            lines.append("  class:    " + predicted[i])
    return "\n".join(lines)


@torch.no_grad()
def test_examples(model: CMLTNet, dataset, indices: list[int], k: int = 5) -> str:
    """Inferred vs. true words (and predicted vs. true class) for some examples of a dataset."""
    device = next(model.parameters()).device
    images = torch.stack([dataset[i].image for i in indices]).to(device)
    rows = model.infer_words(images, k)
    predicted = model.eval()(images).logits.argmax(1).tolist()
    names, truths, classes = [], [], []
    for i, p in zip(indices, predicted):
        info = dataset.info(i)
        title = info.get("char") or info.get("name") or f"#{i}"
        label = dataset.classes[dataset.label(i)] if not dataset.multi_label else "-"
        names.append(f"{title}  [{label}]" + (f"  {info['name']}" if info.get("name") and info.get("char") else ""))
        truths.append(dataset.words(i))
        classes.append(f"{dataset.classes[p]} ({'right' if dataset.classes[p] == label else 'wrong'})")
    return format_inferred(rows, names, truths, classes)
