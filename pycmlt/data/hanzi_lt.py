"""hanzi-lt: the second built-in real long-tailed dataset (Chinese characters rendered in four font
styles, class = Kangxi radical, descriptional words = the Unihan English definition).

Protocol (defaults in brackets; README "hanzi-lt" documents it for users):
- Every character of the Table of General Standard Chinese Characters (Unihan kTGH, 8,105) that has
  an English definition (kDefinition) is one *character* (7,727 in Unicode 15.0). Its class is the
  Kangxi radical of its first kRSUnicode value (simplified forms such as 120' count as their radical:
  213 classes, 450 characters down to 1: a natural long tail). A class is named by the radical as a
  character and its English name from UnicodeData.txt ("水 water"). Its words: `definition_words`.
- Split by character. In each class the characters are shuffled (seeded); round(test_fraction * n)
  [0.2] of them (at least 1, at most n - 1) are test characters and round(val_fraction * n) [0.1]
  (at least 1, leaving at least one for training) are val characters; the rest train. A val or test
  character is never rendered in training, in any font. A class of 2 characters has no val
  character and a class of 1 character neither a val nor a test one: like emoji-lt's single-base
  classes, that split renders the class's training characters again with fresh augmentation draws
  (in fonts they were not trained in first). Such classes are listed per split in
  meta["heldout_rendering_classes"] and on the split object as `heldout_rendering_classes`.
- Fonts: uming (Ming), ukai (Kai), zenhei (Hei), hanazono (Mincho); a character is only rendered in
  fonts whose cmap has it. Train: every training character in `train_fonts_per_char` [1] distinct
  fonts (a seeded choice among the training fonts that have it), one augmented rendering each.
- Val and test are balanced: exactly `val_per_class` [10] and `test_per_class` [30] images per class,
  taken from the class's held-out (character, font) pairs round robin: every held-out character in
  one font before any in a second font, and every pair before one is repeated with a new draw.
- `heldout_font` [None]: that font is never used in training; the test renders only in it (a style
  never seen) and val only in the training fonts, so model selection does not see the style either.
- Rendering k of character c uses numpy's Generator seeded with [seed, c, k]; train renderings use
  k < train_fonts_per_char and val/test renderings k >= train_fonts_per_char, so no draw is shared.
- Augmentation as in emoji-lt (emoji_render.render_glyph): scale, rotation, shift, random background;
  the glyph is drawn in black or white, whichever contrasts more with the background. The training
  transform does not flip images (meta["flip_ok"] is False): a mirrored character is not the character.

Size [32 px, 1 font per training character]: one 12-epoch resnet32 run should take about 6 minutes
on 2 CPU cores. Two fonts per training character (10,631 training images, the first default) were
measured at 38 s per epoch (280 images/s), about 8 minutes per run; one font gives 5,351 training
images (seed 0): 15 such runs (val every epoch, test once) took 77 minutes, about 5 minutes each.
48 px would cost 2.25 times more per image; at 32 px the radical, the component that decides the
class, is legible in every style.

The dataset is deterministic for (sources, seed, options) and is cached as one .npz under the cache
directory (pycmlt.data.cache); a second call loads it in well under a second.
"""
from __future__ import annotations

import re
import time
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pycmlt.data.cache import build_log, load_or_rebuild, rendered_dataset_path, save_npz_atomic, write_json_atomic
from pycmlt.data.dataset import ArrayDataset
from pycmlt.data.emoji_render import RenderAugment, render_glyph
from pycmlt.data.hanzi_render import HanziRenderer
from pycmlt.data.hanzi_sources import (FONT_NAMES, FONT_PACKAGES, HanziEntry, find_hanzi_sources, font_version,
                                       load_entries, radical_names)
from pycmlt.data.stats import FEW_SHOT_MAX, MANY_SHOT_MIN, imbalance_ratio, shot_groups
from pycmlt.data.transforms import image_mean_std
from pycmlt.data.vocab import Vocabulary
from pycmlt.data.words import STOPWORDS, WordTable, tokenize

FORMAT_VERSION = 1
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}

# Function words of the definitions ("to be", "one's", "used in"), and tokens that name the radical
# system or a source rather than the meaning ("Kangxi radical 85", "rad. 53", "(Cant.)").
DEFINITION_STOPWORDS = STOPWORDS | frozenset({
    "be", "been", "being", "am", "are", "was", "were", "it", "its", "this", "that", "these", "those", "which",
    "who", "whom", "whose", "what", "one's", "someone", "something", "into", "onto", "upon", "about", "so",
    "such", "than", "then", "used", "also", "very", "but", "if", "etc", "e.g", "i.e", "cf",
    "radical", "kangxi", "rad", "cant"})
_CROSS_REFERENCE = re.compile(r"\([^)]*U\+[0-9A-Fa-f]{4,6}[^)]*\)")  # "(same as U+4E18 丘)"


def definition_words(definition: str) -> list[str]:
    """Descriptional words of a character: the lower-cased tokens of its Unihan definition without
    cross references to other characters, stop words, numbers (any token with a digit: "85", "4th",
    "u+4e18"), the tokens radical/kangxi and non-Latin tokens (Chinese place names)."""
    out: list[str] = []
    for t in tokenize(_CROSS_REFERENCE.sub(" ", definition), stopwords=DEFINITION_STOPWORDS):
        if any(ch.isdigit() for ch in t) or not all(ch.isascii() or "LATIN" in unicodedata.name(ch, "") for ch in t):
            continue
        if t not in out:
            out.append(t)
    return out


@dataclass(frozen=True)
class HanziLTOptions:
    image_size: int = 32
    seed: int = 0
    fonts: tuple[str, ...] = FONT_NAMES
    train_fonts_per_char: int = 1
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    val_per_class: int = 10
    test_per_class: int = 30
    heldout_font: str | None = None
    augment: RenderAugment = field(default_factory=RenderAugment)

    def __post_init__(self):
        object.__setattr__(self, "fonts", tuple(self.fonts))
        if not 8 <= self.image_size <= 512:
            raise ValueError(f"image_size must be in [8, 512], got {self.image_size}")
        unknown = [f for f in self.fonts if f not in FONT_PACKAGES]
        if not self.fonts or unknown or len(set(self.fonts)) != len(self.fonts):
            raise ValueError(f"fonts must be distinct names among {', '.join(FONT_NAMES)}, got {list(self.fonts)}")
        if self.heldout_font is not None and (self.heldout_font not in self.fonts or len(self.fonts) < 2):
            raise ValueError(f"heldout_font must be one of fonts {list(self.fonts)} (and leave another for training), "
                             f"got {self.heldout_font!r}")
        n_train_fonts = len(self.train_fonts)
        if not 1 <= self.train_fonts_per_char <= n_train_fonts:
            raise ValueError(f"train_fonts_per_char must be in [1, {n_train_fonts}] (the training fonts), "
                             f"got {self.train_fonts_per_char}")
        for name in ("val_fraction", "test_fraction"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"{name} must be in (0, 1), got {getattr(self, name)}")
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError(f"val_fraction + test_fraction must be < 1, got {self.val_fraction} + {self.test_fraction}")
        for name in ("val_per_class", "test_per_class"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def train_fonts(self) -> tuple[str, ...]:
        return tuple(f for f in self.fonts if f != self.heldout_font)

    def eval_fonts(self, split: str) -> tuple[str, ...]:
        if self.heldout_font is None:
            return self.fonts
        return (self.heldout_font,) if split == "test" else self.train_fonts

    def to_dict(self) -> dict:
        return {"image_size": self.image_size, "seed": self.seed, "fonts": list(self.fonts),
                "train_fonts_per_char": self.train_fonts_per_char, "val_fraction": self.val_fraction,
                "test_fraction": self.test_fraction, "val_per_class": self.val_per_class,
                "test_per_class": self.test_per_class, "heldout_font": self.heldout_font,
                "augment": self.augment.to_dict()}


def split_sizes(n: int, opts: HanziLTOptions) -> tuple[int, int]:
    """(val characters, test characters) of a class of n characters (see the module doc)."""
    if n < 2:
        return 0, 0
    n_test = min(n - 1, max(1, round(opts.test_fraction * n)))
    if n - n_test < 2:
        return 0, n_test
    return min(n - n_test - 1, max(1, round(opts.val_fraction * n))), n_test


def plan_split(entries: list[HanziEntry], opts: HanziLTOptions, coverage: dict[str, frozenset[int]]) -> dict:
    """Which characters go to train/val/test and the rendering plan (see the module doc). `coverage`
    maps each font of opts.fonts to the code points it has."""
    radicals = sorted({e.radical for e in entries})
    members: dict[int, list[int]] = defaultdict(list)
    for k, e in enumerate(entries):
        members[e.radical].append(k)
    font_index = {f: i for i, f in enumerate(opts.fonts)}

    def fonts_having(k: int, fonts) -> list[str]:
        return [f for f in fonts if ord(entries[k].char) in coverage[f]]

    items = []  # (character index, font index, rendering index, split code)
    split_of_char = {}
    heldout: dict[str, list[int]] = {"val": [], "test": []}
    unrendered = []
    uses: dict[int, int] = defaultdict(int)
    for c, radical in enumerate(radicals):
        rng = np.random.default_rng([opts.seed, 1_000_003, c])
        chars = [members[radical][i] for i in rng.permutation(len(members[radical]))]
        n_val, n_test = split_sizes(len(chars), opts)
        held = {"test": chars[:n_test], "val": chars[n_test:n_test + n_val]}
        train_chars = chars[n_test + n_val:]
        trained_in: dict[int, list[str]] = {}
        for k in train_chars:
            split_of_char[k] = "train"
            fonts = fonts_having(k, opts.train_fonts)
            trained_in[k] = [fonts[i] for i in rng.permutation(len(fonts))[:opts.train_fonts_per_char]]
            if not fonts:
                unrendered.append(k)
            for r, f in enumerate(trained_in[k]):
                items.append((k, font_index[f], r, SPLIT_CODES["train"]))
        for split, per_class in (("val", opts.val_per_class), ("test", opts.test_per_class)):
            for k in held[split]:
                split_of_char[k] = split
            order = _eval_order(held[split], lambda k: fonts_having(k, opts.eval_fonts(split)), rng)
            if not order:  # no held-out character (or none in the split's fonts): held-out renderings
                heldout[split].append(c)
                order = _eval_order(train_chars, lambda k: fonts_having(k, opts.eval_fonts(split)), rng,
                                    later=lambda k, f: f in trained_in[k])
            if not order:
                raise ValueError(f"hanzi-lt: no font of {list(opts.eval_fonts(split))} has a character of radical "
                                 f"{radical} for the {split} split")
            for t in range(per_class):
                k, f = order[t % len(order)]
                items.append((k, font_index[f], opts.train_fonts_per_char + uses[k], SPLIT_CODES[split]))
                uses[k] += 1
    return {"radicals": radicals, "class_of_char": [radicals.index(e.radical) for e in entries], "items": items,
            "split_of_char": [split_of_char[k] for k in range(len(entries))],
            "heldout_rendering_classes": heldout, "unrendered_train_chars": unrendered,
            "num_chars": [len(members[r]) for r in radicals]}


def _eval_order(chars: list[int], fonts_of, rng: np.random.Generator, later=None) -> list[tuple[int, str]]:
    """(character, font) pairs round robin: every character in its first font, then every one in its
    second, ... Each character's fonts (`fonts_of(k)`) come in a seeded order, those with
    `later(k, font)` true after the others."""
    per_char = []
    for k in chars:
        fonts = fonts_of(k)
        fonts = [fonts[i] for i in rng.permutation(len(fonts))]
        if later is not None:
            fonts.sort(key=lambda f: later(k, f))  # stable: keeps the seeded order within each group
        per_char.append(fonts)
    return [(k, fonts[j]) for j in range(max(map(len, per_char), default=0))
            for k, fonts in zip(chars, per_char) if j < len(fonts)]


def _cache_path(sources, opts: HanziLTOptions, root: Path | None) -> Path:
    return rendered_dataset_path("hanzi-lt", sources, opts.to_dict(), opts.image_size, opts.seed, FORMAT_VERSION, root)


def _unicode_version(sources) -> str:
    with open(sources.cjk_radicals, encoding="utf-8") as f:
        m = re.search(r"-(\d+\.\d+\.\d+)\.txt", f.readline())
    return m.group(1) if m else "unknown"


def build_hanzi_lt(opts: HanziLTOptions = HanziLTOptions(), *, cache_root: str | Path | None = None,
                   rebuild: bool = False, verbose: bool = True, sources=None) -> Path:
    """Build (or find) the cached hanzi-lt file for `opts`; returns its path. Prints a report when
    it builds (class counts, imbalance ratio, shot groups) if `verbose`."""
    sources = sources or find_hanzi_sources(fonts=opts.fonts)
    path = _cache_path(sources, opts, Path(cache_root) if cache_root else None)
    if path.is_file() and not rebuild:
        return path
    t0 = time.perf_counter()
    entries = load_entries(sources)
    names = radical_names(sources)
    renderers = {f: HanziRenderer(sources.fonts[f], f) for f in opts.fonts}
    plan = plan_split(entries, opts, {f: r.coverage for f, r in renderers.items()})
    items = sorted(range(len(plan["items"])), key=lambda n: plan["items"][n][:2])  # one glyph per (char, font)
    size = opts.image_size
    build_log(f"hanzi-lt: rendering {len(items)} images of {len(entries)} characters in {len(opts.fonts)} fonts at "
         f"{size}x{size} (seed {opts.seed}) into {path}", verbose)
    images = np.zeros((len(items), size, size, 3), dtype=np.uint8)
    glyph_key, glyph = None, None
    for n in items:
        k, f, r, _ = plan["items"][n]
        if (k, f) != glyph_key:
            glyph_key, glyph = (k, f), renderers[opts.fonts[f]].glyph(entries[k].char)
        images[n] = render_glyph(glyph, size, np.random.default_rng([opts.seed, k, r]), opts.augment)
    arr = np.asarray(plan["items"], dtype=np.int64).reshape(-1, 4)
    char_idx, font_idx = arr[:, 0].astype(np.int32), arr[:, 1].astype(np.uint8)
    rendering, split = arr[:, 2].astype(np.int16), arr[:, 3].astype(np.uint8)
    labels = np.asarray(plan["class_of_char"], dtype=np.int16)[char_idx]
    train = split == SPLIT_CODES["train"]
    mean, std = image_mean_std(torch.from_numpy(images[train]))
    classes = [f"{names[r][0]} {names[r][1]}" if r in names else f"radical {r}" for r in plan["radicals"]]
    counts = np.bincount(labels[train], minlength=len(classes))
    meta = {
        "format_version": FORMAT_VERSION,
        "options": opts.to_dict(),
        "sources": {"unihan": [str(p) for p in sources.unihan], "cjk_radicals": str(sources.cjk_radicals),
                    "unicode_data": str(sources.unicode_data), "fonts": {f: str(p) for f, p in sources.fonts.items()}},
        "unicode_version": _unicode_version(sources),
        "font_versions": {f: font_version(p) for f, p in sources.fonts.items()},
        "font_coverage": {f: sum(r.has(e.char) for e in entries) for f, r in renderers.items()},
        "classes": classes,
        "radicals": plan["radicals"],
        "chars": [{"char": e.char, "radical": e.radical, "tgh": e.tgh, "definition": e.definition,
                   "words": definition_words(e.definition), "split": s} for e, s in zip(entries, plan["split_of_char"])],
        "num_chars": dict(zip(classes, plan["num_chars"])),
        "heldout_rendering_classes": {s: [classes[c] for c in v] for s, v in plan["heldout_rendering_classes"].items()},
        "unrendered_train_chars": [entries[k].char for k in plan["unrendered_train_chars"]],
        "mean": list(mean), "std": list(std),
        "split_sizes": {s: int((split == code).sum()) for s, code in SPLIT_CODES.items()},
        "split_chars": {s: int(len(set(char_idx[split == code].tolist()))) for s, code in SPLIT_CODES.items()},
        "train_class_counts": counts.tolist(),
        "flip_ok": False,  # a mirrored character is not the character (its radical changes side)
        "build_seconds": round(time.perf_counter() - t0, 2),
    }
    save_npz_atomic(path, meta, images=images, char=char_idx, font=font_idx, rendering=rendering, split=split,
                    labels=labels)
    write_json_atomic(path.with_suffix(".json"), {k: v for k, v in meta.items() if k != "chars"})
    build_log(build_report(meta), verbose)
    return path


def build_report(meta: dict) -> str:
    counts = np.asarray(meta["train_class_counts"])
    classes = meta["classes"]
    groups = shot_groups(torch.from_numpy(counts))
    order = np.argsort(-counts, kind="stable")
    sizes, chars, size = meta["split_sizes"], meta["split_chars"], meta["options"]["image_size"]
    heldout = meta["heldout_rendering_classes"]
    lines = [
        f"hanzi-lt built in {meta['build_seconds']:.1f} s: {len(classes)} classes, " + ", ".join(
            f"{sizes[s]} {s} images ({chars[s]} characters)" for s in SPLIT_CODES)
        + f" at {size}x{size} (Unicode {meta['unicode_version']}, fonts {', '.join(meta['options']['fonts'])}"
        + (f", {meta['options']['heldout_font']} held out of training" if meta["options"]["heldout_font"] else "")
        + f", seed {meta['options']['seed']})",
        f"train images per class: max {counts.max()} ({classes[order[0]]}), min {counts.min()} "
        f"({classes[order[-1]]}), imbalance ratio {imbalance_ratio(counts):.1f}",
        f"shot groups: many (> {MANY_SHOT_MIN}) {len(groups['many'])} classes, medium ({FEW_SHOT_MAX}..{MANY_SHOT_MIN}) "
        f"{len(groups['medium'])}, few (< {FEW_SHOT_MAX}) {len(groups['few'])}",
        f"classes tested on held-out renderings of training characters (too few characters): "
        f"val {len(heldout['val'])}, test {len(heldout['test'])}: " + (", ".join(heldout["test"]) or "none"),
        "train images per class: " + ", ".join(f"{classes[i]} {counts[i]}" for i in order),
    ]
    return "\n".join(lines)


class HanziLT(ArrayDataset):
    """One split ("train", "val" or "test") of hanzi-lt. `info(i)` names the character and the font."""

    def info(self, i: int) -> dict:
        c = self.meta["chars"][int(self._char[i])]
        return {**super().info(i), "char": c["char"], "font": self.meta["options"]["fonts"][int(self._font[i])],
                "radical": c["radical"], "definition": c["definition"], "rendering": int(self._rendering[i])}

    def item_key(self, i: int) -> str:
        """The distinct item sample i renders: its character (the same in every font and rendering)."""
        return self.meta["chars"][int(self._char[i])]["char"]


_DEFAULTS = HanziLTOptions()  # the loader's defaults are the options' defaults, stated once


def load_hanzi_lt(split: str = "train", *, image_size: int = _DEFAULTS.image_size, seed: int = _DEFAULTS.seed,
                  fonts=_DEFAULTS.fonts, train_fonts_per_char: int = _DEFAULTS.train_fonts_per_char,
                  val_fraction: float = _DEFAULTS.val_fraction, test_fraction: float = _DEFAULTS.test_fraction,
                  val_per_class: int = _DEFAULTS.val_per_class, test_per_class: int = _DEFAULTS.test_per_class,
                  heldout_font: str | None = _DEFAULTS.heldout_font,
                  augment_render: RenderAugment | dict | None = None, cache_root: str | Path | None = None,
                  rebuild: bool = False, verbose: bool = True, min_word_count: int = 1,
                  vocab: Vocabulary | None = None, augment: bool | None = None, transform=None,
                  skip_bad: bool = False, unicode_dir: str | None = None,
                  font_paths: dict[str, str] | None = None) -> HanziLT:
    """The hanzi-lt split `split`, building the cache first if needed (see the module doc).
    skip_bad has no effect (the images are in memory); it is accepted for uniform configs."""
    if split not in SPLIT_CODES:
        raise ValueError(f"hanzi-lt has splits {tuple(SPLIT_CODES)}, got {split!r}")
    if isinstance(fonts, str):
        fonts = tuple(f.strip() for f in fonts.split(","))
    if isinstance(augment_render, dict):
        augment_render = RenderAugment(**{k: tuple(v) if k == "scale" else v for k, v in augment_render.items()})
    opts = HanziLTOptions(image_size=image_size, seed=seed, fonts=tuple(fonts),
                          train_fonts_per_char=train_fonts_per_char, val_fraction=val_fraction,
                          test_fraction=test_fraction, val_per_class=val_per_class, test_per_class=test_per_class,
                          heldout_font=heldout_font, augment=augment_render or RenderAugment())
    sources = find_hanzi_sources(unicode_dir, font_paths, opts.fonts)
    path, meta, arrays = load_or_rebuild(
        "hanzi-lt", lambda rebuild_now: build_hanzi_lt(opts, cache_root=cache_root, rebuild=rebuild or rebuild_now,
                                                       verbose=verbose, sources=sources), verbose)
    char_words = [c["words"] for c in meta["chars"]]
    split_arr = arrays["split"]
    if vocab is None:
        vocab = Vocabulary.build((char_words[k] for k in arrays["char"][split_arr == SPLIT_CODES["train"]]),
                                 min_count=min_word_count)
    sel = np.nonzero(split_arr == SPLIT_CODES[split])[0]
    chars = arrays["char"][sel]
    meta = {**meta, "cache_path": str(path)}
    ds = HanziLT(images=torch.from_numpy(arrays["images"][sel]).permute(0, 3, 1, 2).contiguous(), name="hanzi-lt",
                 split=split, classes=meta["classes"], vocab=vocab,
                 labels=torch.from_numpy(arrays["labels"][sel].astype(np.int64)),
                 words=WordTable.from_lists(char_words[k] for k in chars),
                 class_counts=torch.tensor(meta["train_class_counts"], dtype=torch.long),
                 mean=meta["mean"], std=meta["std"], augment=augment, transform=transform, meta=meta)
    ds._char, ds._font, ds._rendering = chars, arrays["font"][sel], arrays["rendering"][sel]
    ds.heldout_rendering_classes = list(meta["heldout_rendering_classes"].get(split, []))
    return ds
