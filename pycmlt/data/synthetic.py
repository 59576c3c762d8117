"""synthetic: a procedurally generated compositional long-tailed dataset (builds in about a second).

A class is a (colour, shape, texture) triple, e.g. "red striped circle"; an image shows one object of
its class (multi_label=True: one or two objects of different classes) at a random position, size and
rotation, with a jittered colour, over a random noisy background. The descriptional words of an
image are its attribute words -- each kept with probability `word_keep` -- plus true but
class-irrelevant words about the object's size ("small", "large") and position ("left", "right",
"top", "bottom") when they apply. Classes are drawn (seeded) so that every tail class shares at
least one attribute word with a head class: words carry knowledge from head to tail.

Training counts follow the "exp" long-tail profile n_r = n_max * rho^(-r/(C-1)) (rho =
`imbalance_ratio`); val and test have `val_per_class` / `test_per_class` images per class.
"""
from __future__ import annotations

import numpy as np
import torch

from pycmlt.data.dataset import ArrayDataset
from pycmlt.data.longtail import longtail_targets
from pycmlt.data.transforms import image_mean_std
from pycmlt.data.vocab import Vocabulary
from pycmlt.data.words import WordTable

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (235, 210, 40),
           "purple": (140, 50, 180), "orange": (245, 140, 30)}
SHAPES = ("circle", "square", "triangle", "diamond", "cross", "ring")
TEXTURES = ("solid", "striped", "dotted", "checkered")
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


def choose_classes(num_classes: int, seed: int, head_fraction: float = 0.3) -> list[tuple[str, str, str]]:
    """`num_classes` distinct (colour, shape, texture) triples; the first round(head_fraction * C) are
    the head; each later one shares at least one attribute with a head class."""
    combos = [(c, s, t) for c in COLOURS for s in SHAPES for t in TEXTURES]
    if not 1 <= num_classes <= len(combos):
        raise ValueError(f"num_classes must be in [1, {len(combos)}], got {num_classes}")
    rng = np.random.default_rng([seed, 11])
    order = [combos[i] for i in rng.permutation(len(combos))]
    n_head = max(1, int(round(head_fraction * num_classes)))
    chosen = order[:n_head]
    for combo in order[n_head:]:
        if len(chosen) == num_classes:
            break
        if any(a == b for h in chosen[:n_head] for a, b in zip(combo, h)):
            chosen.append(combo)
    return chosen


def _shape_mask(shape: str, xx, yy, r: float) -> np.ndarray:
    ax, ay = np.abs(xx), np.abs(yy)
    if shape == "circle":
        return xx ** 2 + yy ** 2 <= r ** 2
    if shape == "square":
        return (ax <= r * 0.85) & (ay <= r * 0.85)
    if shape == "diamond":
        return ax + ay <= r
    if shape == "triangle":
        return (yy <= r * 0.7) & (yy >= -r) & (ax <= (yy + r) * 0.6)
    if shape == "cross":
        return ((ax <= r * 0.3) & (ay <= r)) | ((ay <= r * 0.3) & (ax <= r))
    if shape == "ring":
        d2 = xx ** 2 + yy ** 2
        return (d2 <= r ** 2) & (d2 >= (0.55 * r) ** 2)
    raise ValueError(shape)


def _texture(texture: str, xx, yy, rng) -> np.ndarray:
    """1 where the texture is dark inside the object."""
    period = rng.uniform(4.0, 6.0)
    if texture == "solid":
        return np.zeros_like(xx, dtype=bool)
    if texture == "striped":
        a = rng.uniform(0, np.pi)
        return np.mod(xx * np.cos(a) + yy * np.sin(a), period) < period / 2
    if texture == "dotted":
        return (np.mod(xx, period) - period / 2) ** 2 + (np.mod(yy, period) - period / 2) ** 2 < (period / 3.2) ** 2
    if texture == "checkered":
        return (np.floor(xx / (period * 0.7)) + np.floor(yy / (period * 0.7))) % 2 == 0
    raise ValueError(texture)


def _draw(canvas: np.ndarray, cls: tuple[str, str, str], cx: float, cy: float, r: float, rng) -> None:
    s = canvas.shape[0]
    colour, shape, texture = cls
    angle = rng.uniform(-0.5, 0.5) if shape != "circle" else 0.0
    y, x = np.mgrid[0:s, 0:s].astype(np.float64) + 0.5
    dx, dy = x - cx, y - cy
    xx = dx * np.cos(angle) + dy * np.sin(angle)
    yy = -dx * np.sin(angle) + dy * np.cos(angle)
    mask = _shape_mask(shape, xx, yy, r)
    rgb = np.clip(np.asarray(COLOURS[colour], dtype=np.float64) + rng.uniform(-25, 25, size=3), 0, 255)
    dark = _texture(texture, xx, yy, rng) & mask
    canvas[mask] = rgb
    canvas[dark] = rgb * 0.35


def _render(classes_here, size: int, rng) -> tuple[np.ndarray, list[str]]:
    """One image with one object per class in `classes_here`; returns (HxWx3 uint8, nuisance words)."""
    bg = rng.uniform(60, 200, size=3)
    canvas = np.clip(bg + rng.normal(0, 10, size=(size, size, 3)), 0, 255)
    words: list[str] = []
    n = len(classes_here)
    for k, cls in enumerate(classes_here):
        r = rng.uniform(0.22, 0.38) * size / (1.0 if n == 1 else 1.45)
        lo, hi = r, size - r
        if n == 1:
            cx, cy = rng.uniform(lo, hi), rng.uniform(lo, hi)
        else:  # two objects: left and right halves
            half = size / 2
            cx = rng.uniform(max(lo, k * half + r * 0.6), min(hi, (k + 1) * half - r * 0.6))
            cy = rng.uniform(lo, hi)
        _draw(canvas, cls, cx, cy, r, rng)
        if n == 1:
            if r < 0.26 * size:
                words.append("small")
            elif r > 0.34 * size:
                words.append("large")
            if cx < 0.4 * size:
                words.append("left")
            elif cx > 0.6 * size:
                words.append("right")
            if cy < 0.4 * size:
                words.append("top")
            elif cy > 0.6 * size:
                words.append("bottom")
    return canvas.astype(np.uint8), words


class SyntheticLT(ArrayDataset):
    def info(self, i: int) -> dict:
        return {**super().info(i), "objects": self._objects[i]}


def load_synthetic(split: str = "train", *, num_classes: int = 24, image_size: int = 32, n_max: int = 200,
                   imbalance_ratio: float = 50.0, test_per_class: int = 20, val_per_class: int = 10,
                   word_keep: float = 0.9, multi_label: bool = False, second_object_prob: float = 0.5,
                   seed: int = 0, min_word_count: int = 1, vocab: Vocabulary | None = None,
                   augment: bool | None = None, transform=None, skip_bad: bool = False) -> SyntheticLT:
    """The split `split` ("train", "val", "test") of the synthetic dataset (see the module doc).
    skip_bad has no effect (the images are in memory); it is accepted for uniform configs."""
    if split not in SPLIT_CODES:
        raise ValueError(f"synthetic has splits {tuple(SPLIT_CODES)}, got {split!r}")
    if not 0 <= word_keep <= 1:
        raise ValueError(f"word_keep must be in [0, 1], got {word_keep}")
    if image_size < 8:
        raise ValueError(f"image_size must be >= 8, got {image_size}")
    classes = choose_classes(num_classes, seed)
    c = len(classes)
    counts = {"train": longtail_targets(c, n_max, imbalance_ratio, "exp"),
              "val": [val_per_class] * c, "test": [test_per_class] * c}

    def generate(which: str):
        code = SPLIT_CODES[which]
        primary = np.repeat(np.arange(c), counts[which])
        plan_rng = np.random.default_rng([seed, 13, code])
        primary = primary[plan_rng.permutation(len(primary))]
        train_p = np.asarray(counts["train"], dtype=np.float64)
        train_p /= train_p.sum()
        imgs = np.zeros((len(primary), image_size, image_size, 3), dtype=np.uint8)
        objects, word_lists = [], []
        for i, y in enumerate(primary):
            rng = np.random.default_rng([seed, 17, code, i])
            here = [int(y)]
            if multi_label and rng.random() < second_object_prob:
                other = int(rng.choice(c, p=train_p))
                if other != y:
                    here.append(other)
            imgs[i], nuisance = _render([classes[k] for k in here], image_size, rng)
            words = [w for k in here for w in classes[k] if rng.random() < word_keep]
            word_lists.append(list(dict.fromkeys(words + nuisance)))
            objects.append(here)
        return imgs, objects, word_lists

    def labels_of(objects):
        if not multi_label:
            return torch.tensor([o[0] for o in objects], dtype=torch.long)
        y = torch.zeros(len(objects), c, dtype=torch.bool)
        for i, o in enumerate(objects):
            y[i, o] = True
        return y

    train_imgs, train_objects, train_words = generate("train")
    train_labels = labels_of(train_objects)
    class_counts = (train_labels.sum(0) if multi_label else torch.bincount(train_labels, minlength=c)).to(torch.long)
    mean, std = image_mean_std(torch.from_numpy(train_imgs))
    if vocab is None:
        vocab = Vocabulary.build(train_words, min_count=min_word_count)
    if split == "train":
        imgs, objects, word_lists, labels = train_imgs, train_objects, train_words, train_labels
    else:
        imgs, objects, word_lists = generate(split)
        labels = labels_of(objects)
    names = [" ".join((col, tex, shp)) for col, shp, tex in classes]
    meta = {"attributes": {"colours": list(COLOURS), "shapes": list(SHAPES), "textures": list(TEXTURES)},
            "class_attributes": [list(x) for x in classes], "imbalance_ratio": imbalance_ratio, "seed": seed,
            "train_size": int(len(train_labels)), "n_max": n_max, "word_keep": word_keep}
    ds = SyntheticLT(images=torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous(), name="synthetic", split=split,
                     classes=names, vocab=vocab, labels=labels, words=WordTable.from_lists(word_lists),
                     class_counts=class_counts, mean=mean, std=std, augment=augment, transform=transform, meta=meta)
    ds._objects = objects
    return ds
