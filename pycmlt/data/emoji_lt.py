"""emoji-lt: the built-in real long-tailed dataset (rendered emoji, class = emoji subgroup,
descriptional words = CLDR English keywords).

Protocol (defaults in brackets; README "emoji-lt" documents it for users):
- Every fully-qualified emoji of emoji-test.txt (3655 in Unicode 15.0) is one *emoji*; its class is
  its subgroup (99 classes); its words are the lower-cased tokens of its CLDR keywords
  (annotations + annotationsDerived; for the few emoji newer than the CLDR release, the tokens of
  the emoji's name in emoji-test.txt), stop words dropped.
- Emoji are grouped by *base* (emoji_bases.base_key: skin-tone, gender and hair variants share a base).
  In each class the bases are shuffled (seeded) and round(test_base_fraction * n_bases) [0.2] of
  them, at least 1 and at most n_bases - 1, are held out for the test split. All variants of a base
  are on the same side.
- Val (model selection): of the remaining bases, in the same shuffled order, round(val_base_fraction
  * n_bases) [0.1], at least 1, are held out for the val split, provided at least one base is left
  for training: a class with fewer than 2 bases left after the test split (e.g. 2 bases: 1 test,
  1 train) has no val images; such classes are listed in meta["classes_without_val"]. The test
  split is the same as with val_base_fraction=0 (the same bases, renderings and order); only the
  training split loses the val bases. val_base_fraction=0 builds no val split.
- Train: every emoji of the train bases, rendered `train_renderings` [3] times with independent
  augmentation. The training set inherits the natural long tail of the subgroups.
- Test: exactly `test_per_class` [30] images per class, rendered from the class's test emoji in a
  seeded order that takes one emoji of each test base in turn (so every test base is used before
  any is repeated); an emoji used more than once gets a new augmentation each time.
- Val: `val_per_class` [30] images per class that has val bases, chosen the same way from its val
  bases (a val emoji is never a train or test emoji).
- A class with a single base (e.g. animal-amphibian: only the frog) cannot be split by base: all its
  emoji are in train and its test images are held-out renderings (fresh augmentation draws, never
  used in train) of the same emoji. Such classes are listed in meta["heldout_rendering_classes"].
- Rendering k of emoji e uses numpy's Generator seeded with [seed, e, k]; train renderings use
  k = 0..R-1 and test renderings k = R, R+1, ..., so train and test never share a draw.
The dataset is deterministic for (sources, seed, options) and is cached as one .npz under the cache
directory (pycmlt.data.cache); a second call loads it in well under a second.
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pycmlt.data.cache import build_log, load_or_rebuild, rendered_dataset_path, save_npz_atomic, write_json_atomic
from pycmlt.data.dataset import ArrayDataset
from pycmlt.data.emoji_bases import base_key
from pycmlt.data.emoji_render import EmojiRenderer, RenderAugment
from pycmlt.data.emoji_sources import EmojiEntry, find_emoji_sources, load_cldr_keywords, parse_emoji_test
from pycmlt.data.stats import FEW_SHOT_MAX, MANY_SHOT_MIN, imbalance_ratio, shot_groups
from pycmlt.data.transforms import image_mean_std
from pycmlt.data.vocab import Vocabulary
from pycmlt.data.words import WordTable, tokenize

FORMAT_VERSION = 3
SPLIT_CODES = {"train": 0, "test": 1, "val": 2}


@dataclass(frozen=True)
class EmojiLTOptions:
    image_size: int = 32
    seed: int = 0
    train_renderings: int = 3
    test_per_class: int = 30
    test_base_fraction: float = 0.2
    val_base_fraction: float = 0.1
    val_per_class: int = 30
    augment: RenderAugment = RenderAugment()

    def __post_init__(self):
        if not 8 <= self.image_size <= 512:
            raise ValueError(f"image_size must be in [8, 512], got {self.image_size}")
        if self.train_renderings < 1:
            raise ValueError(f"train_renderings must be >= 1, got {self.train_renderings}")
        if self.test_per_class < 1:
            raise ValueError(f"test_per_class must be >= 1, got {self.test_per_class}")
        if not 0 < self.test_base_fraction < 1:
            raise ValueError(f"test_base_fraction must be in (0, 1), got {self.test_base_fraction}")
        if not 0 <= self.val_base_fraction < 1:
            raise ValueError(f"val_base_fraction must be in [0, 1), got {self.val_base_fraction}")
        if self.val_per_class < 1:
            raise ValueError(f"val_per_class must be >= 1, got {self.val_per_class}")

    def to_dict(self) -> dict:
        return {"image_size": self.image_size, "seed": self.seed, "train_renderings": self.train_renderings,
                "test_per_class": self.test_per_class, "test_base_fraction": self.test_base_fraction,
                "val_base_fraction": self.val_base_fraction, "val_per_class": self.val_per_class,
                "augment": self.augment.to_dict()}


def emoji_words(entry: EmojiEntry) -> list[str]:
    """Descriptional words of an emoji: tokens of its CLDR keywords, else of its name."""
    phrases = entry.keywords if entry.keywords else [entry.name]
    out: list[str] = []
    for p in phrases:
        for t in tokenize(p):
            if t not in out:
                out.append(t)
    return out


def load_entries(sources) -> list[EmojiEntry]:
    entries = parse_emoji_test(sources.emoji_test)
    keywords = load_cldr_keywords(sources.annotations)
    for e in entries:
        e.keywords = list(keywords.get(e.cldr_key, []))
    return entries


def _held_out_count(fraction: float, n_bases: int, n_available: int) -> int:
    """Bases held out for a split: round(fraction * n_bases), at least 1, leaving one for training."""
    return min(n_available - 1, max(1, int(round(fraction * n_bases))))


def _balanced_items(emoji_of_bases: list[list[int]], per_class: int, first_rendering: int, code: int, rng) -> list:
    """`per_class` (emoji, rendering, split code) items taking one emoji of each base in turn (each
    base's variants in a seeded order); an emoji used again gets the next rendering index."""
    per_base = [[v[i] for i in rng.permutation(len(v))] for v in emoji_of_bases]
    order = [v[j] for j in range(max(map(len, per_base))) for v in per_base if j < len(v)]
    uses: dict[int, int] = defaultdict(int)
    items = []
    for t in range(per_class):
        e = order[t % len(order)]
        items.append((e, first_rendering + uses[e], code))
        uses[e] += 1
    return items


def plan_split(entries: list[EmojiEntry], opts: EmojiLTOptions) -> dict:
    """Which emoji go to train/val/test and the rendering plan (see the module doc)."""
    classes: list[str] = []
    for e in entries:
        if e.subgroup not in classes:
            classes.append(e.subgroup)
    cls_of = {c: i for i, c in enumerate(classes)}
    bases: dict[int, dict[str, list[int]]] = defaultdict(dict)
    for k, e in enumerate(entries):
        bases[cls_of[e.subgroup]].setdefault(base_key(e.codepoints), []).append(k)

    items = []  # (emoji index, rendering index, split code)
    test_bases, val_bases, heldout, without_val = {}, {}, [], []
    for c in range(len(classes)):
        keys = sorted(bases[c])
        rng = np.random.default_rng([opts.seed, 1_000_003, c])
        keys = [keys[i] for i in rng.permutation(len(keys))]
        n = len(keys)
        if n == 1:
            n_test = 0
            heldout.append(classes[c])
            test_emoji_keys = keys
        else:
            n_test = _held_out_count(opts.test_base_fraction, n, n)
            test_emoji_keys = keys[:n_test]
        rest = n - n_test
        n_val = _held_out_count(opts.val_base_fraction, n, rest) if opts.val_base_fraction > 0 and rest >= 2 else 0
        if opts.val_base_fraction > 0 and n_val == 0:
            without_val.append(classes[c])
        test_bases[classes[c]] = keys[:n_test]
        val_bases[classes[c]] = keys[n_test:n_test + n_val]
        for key in keys[n_test + n_val:]:
            for e in bases[c][key]:
                for r in range(opts.train_renderings):
                    items.append((e, r, SPLIT_CODES["train"]))
        items += _balanced_items([bases[c][key] for key in test_emoji_keys], opts.test_per_class,
                                 opts.train_renderings, SPLIT_CODES["test"], rng)
        if n_val:
            val_rng = np.random.default_rng([opts.seed, 2_000_003, c])
            items += _balanced_items([bases[c][key] for key in val_bases[classes[c]]], opts.val_per_class,
                                     opts.train_renderings, SPLIT_CODES["val"], val_rng)
    return {"classes": classes, "class_of_emoji": [cls_of[e.subgroup] for e in entries], "items": items,
            "test_bases": test_bases, "val_bases": val_bases, "heldout_rendering_classes": heldout,
            "classes_without_val": without_val, "num_bases": {classes[c]: len(bases[c]) for c in range(len(classes))}}


def _cache_path(sources, opts: EmojiLTOptions, root: Path | None) -> Path:
    return rendered_dataset_path("emoji-lt", sources, opts.to_dict(), opts.image_size, opts.seed, FORMAT_VERSION, root)


def build_emoji_lt(opts: EmojiLTOptions = EmojiLTOptions(), *, cache_root: str | Path | None = None,
                   rebuild: bool = False, verbose: bool = True, sources=None) -> Path:
    """Build (or find) the cached emoji-lt file for `opts`; returns its path. Prints a report when
    it builds (class counts, imbalance ratio, shot groups) if `verbose`."""
    sources = sources or find_emoji_sources()
    path = _cache_path(sources, opts, Path(cache_root) if cache_root else None)
    if path.is_file() and not rebuild:
        return path
    t0 = time.perf_counter()
    entries = load_entries(sources)
    plan = plan_split(entries, opts)
    items = plan["items"]
    renderer = EmojiRenderer(sources.font)
    size = opts.image_size
    images = np.zeros((len(items), size, size, 3), dtype=np.uint8)
    by_emoji: dict[int, list[int]] = defaultdict(list)
    for n, (e, _, _) in enumerate(items):
        by_emoji[e].append(n)
    build_log(f"emoji-lt: rendering {len(items)} images of {len(by_emoji)} emoji at {size}x{size} "
         f"(seed {opts.seed}) into {path}", verbose)
    for e in sorted(by_emoji):
        glyph = renderer.glyph(entries[e].text)
        for n in by_emoji[e]:
            images[n] = renderer.render(glyph, size, np.random.default_rng([opts.seed, e, items[n][1]]), opts.augment)
    emoji_idx = np.asarray([it[0] for it in items], dtype=np.int32)
    rendering = np.asarray([it[1] for it in items], dtype=np.int16)
    split = np.asarray([it[2] for it in items], dtype=np.uint8)
    labels = np.asarray(plan["class_of_emoji"], dtype=np.int16)[emoji_idx]
    train = split == SPLIT_CODES["train"]
    mean, std = image_mean_std(torch.from_numpy(images[train]))
    counts = np.bincount(labels[train], minlength=len(plan["classes"]))
    seconds = time.perf_counter() - t0
    meta = {
        "format_version": FORMAT_VERSION,
        "options": opts.to_dict(),
        "sources": {str(k): v for k, v in zip(("font", "emoji_test", "annotations", "annotations_derived"),
                                              map(str, sources.files()))},
        "unicode_emoji_version": _emoji_test_version(sources.emoji_test),
        "classes": plan["classes"],
        "emoji": [{"text": x.text, "codepoints": " ".join(f"{c:04X}" for c in x.codepoints), "name": x.name,
                   "group": x.group, "subgroup": x.subgroup, "version": x.version, "base": base_key(x.codepoints),
                   "keywords": x.keywords, "words": emoji_words(x), "keywords_from": "cldr" if x.keywords else "name"}
                  for x in entries],
        "test_bases": plan["test_bases"],
        "val_bases": plan["val_bases"],
        "classes_without_val": plan["classes_without_val"],
        "num_bases": plan["num_bases"],
        "heldout_rendering_classes": plan["heldout_rendering_classes"],
        "mean": list(mean), "std": list(std),
        "train_size": int(train.sum()), "test_size": int((split == SPLIT_CODES["test"]).sum()),
        "val_size": int((split == SPLIT_CODES["val"]).sum()),
        "train_class_counts": counts.tolist(),
        "build_seconds": round(seconds, 2),
    }
    save_npz_atomic(path, meta, images=images, emoji=emoji_idx, rendering=rendering, split=split, labels=labels)
    write_json_atomic(path.with_suffix(".json"), {k: v for k, v in meta.items() if k != "emoji"})
    build_log(build_report(meta), verbose)
    return path


def _emoji_test_version(path) -> str:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("# Version:"):
                return line.split(":", 1)[1].strip()
            if not line.startswith("#"):
                break
    return "unknown"


def build_report(meta: dict) -> str:
    counts = np.asarray(meta["train_class_counts"])
    classes = meta["classes"]
    groups = shot_groups(torch.from_numpy(counts))
    order = np.argsort(-counts, kind="stable")
    lines = [
        f"emoji-lt built in {meta['build_seconds']:.1f} s: {len(classes)} classes, {meta['train_size']} train / "
        f"{meta['val_size']} val / {meta['test_size']} test images at "
        f"{meta['options']['image_size']}x{meta['options']['image_size']} "
        f"(Unicode emoji {meta['unicode_emoji_version']}, seed {meta['options']['seed']})",
        f"train images per class: max {counts.max()} ({classes[order[0]]}), min {counts.min()} "
        f"({classes[order[-1]]}), imbalance ratio {imbalance_ratio(counts):.1f}",
        f"shot groups: many (> {MANY_SHOT_MIN}) {len(groups['many'])} classes, medium ({FEW_SHOT_MAX}..{MANY_SHOT_MIN}) "
        f"{len(groups['medium'])}, few (< {FEW_SHOT_MAX}) {len(groups['few'])}",
        "classes tested on held-out renderings (a single base): " + (", ".join(meta["heldout_rendering_classes"]) or "none"),
        "classes without val images (fewer than 2 bases left after the test split): "
        + (", ".join(meta["classes_without_val"]) or "none"),
        "train images per class: " + ", ".join(f"{classes[i]} {counts[i]}" for i in order),
    ]
    return "\n".join(lines)


class EmojiLT(ArrayDataset):
    """One split ("train", "val" or "test") of emoji-lt. `info(i)` gives the emoji, its name and keywords."""

    def item_key(self, i: int) -> str:
        """The emoji shown: its renderings are one item, not independent samples."""
        return self.meta["emoji"][int(self._emoji[i])]["text"]

    def info(self, i: int) -> dict:
        e = self.meta["emoji"][int(self._emoji[i])]
        return {**super().info(i), "emoji": e["text"], "name": e["name"], "codepoints": e["codepoints"],
                "keywords": e["keywords"], "base": e["base"], "rendering": int(self._rendering[i])}


def load_emoji_lt(split: str = "train", *, image_size: int = 32, seed: int = 0, train_renderings: int = 3,
                  test_per_class: int = 30, test_base_fraction: float = 0.2, val_base_fraction: float = 0.1,
                  val_per_class: int = 30, augment_render: RenderAugment | dict | None = None,
                  cache_root: str | Path | None = None, rebuild: bool = False, verbose: bool = True,
                  min_word_count: int = 1, vocab: Vocabulary | None = None, augment: bool | None = None,
                  transform=None, skip_bad: bool = False, font: str | None = None, emoji_test: str | None = None,
                  annotations: list[str] | None = None) -> EmojiLT:
    """The emoji-lt split `split`, building the cache first if needed (see the module doc).
    skip_bad has no effect (the images are in memory); it is accepted for uniform configs."""
    if split not in SPLIT_CODES:
        raise ValueError(f"emoji-lt has splits {tuple(SPLIT_CODES)}, got {split!r}")
    if split == "val" and val_base_fraction == 0:
        raise ValueError("emoji-lt built with val_base_fraction=0 has no val split; use val_base_fraction > 0")
    if isinstance(augment_render, dict):
        augment_render = RenderAugment(**{k: tuple(v) if k == "scale" else v for k, v in augment_render.items()})
    opts = EmojiLTOptions(image_size=image_size, seed=seed, train_renderings=train_renderings,
                          test_per_class=test_per_class, test_base_fraction=test_base_fraction,
                          val_base_fraction=val_base_fraction, val_per_class=val_per_class,
                          augment=augment_render or RenderAugment())
    sources = find_emoji_sources(font, emoji_test, annotations)
    path, meta, arrays = load_or_rebuild(
        "emoji-lt", lambda rebuild_now: build_emoji_lt(opts, cache_root=cache_root, rebuild=rebuild or rebuild_now,
                                                       verbose=verbose, sources=sources), verbose)
    emoji_words_all = [e["words"] for e in meta["emoji"]]
    split_arr = arrays["split"]
    train = split_arr == SPLIT_CODES["train"]
    if vocab is None:
        vocab = Vocabulary.build((emoji_words_all[e] for e in arrays["emoji"][train]), min_count=min_word_count)
    sel = np.nonzero(split_arr == SPLIT_CODES[split])[0]
    emoji = arrays["emoji"][sel]
    images = torch.from_numpy(arrays["images"][sel]).permute(0, 3, 1, 2).contiguous()
    labels = torch.from_numpy(arrays["labels"][sel].astype(np.int64))
    meta = {**meta, "cache_path": str(path)}
    ds = EmojiLT(images=images, name="emoji-lt", split=split, classes=meta["classes"], vocab=vocab, labels=labels,
                 words=WordTable.from_lists(emoji_words_all[e] for e in emoji),
                 class_counts=torch.tensor(meta["train_class_counts"], dtype=torch.long),
                 mean=meta["mean"], std=meta["std"], augment=augment, transform=transform, meta=meta)
    ds._emoji = emoji
    ds._rendering = arrays["rendering"][sel]
    ds.heldout_rendering_classes = list(meta["heldout_rendering_classes"])
    return ds
