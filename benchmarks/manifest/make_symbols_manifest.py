"""Writes symbols-lt, a long-tailed dataset in pycmlt's manifest format, for checking that CMLTNet's
defaults work on data they were never chosen on (`pycmlt compare --dataset manifest`).

Images are Unicode characters drawn from matplotlib's DejaVu Sans (shipped with matplotlib, so the
same everywhere); a character's class is its Unicode block (Blocks.txt of Debian's unicode-data, the
package emoji-lt installs) and its descriptional words are the tokens of its Unicode name
("LEFTWARDS ARROW WITH HOOK" -> leftwards, arrow, hook). Block sizes give a natural long tail
(404 covered characters down to 4). Like hanzi-lt, the split is by character: in each block
round(0.2 n) characters (at least 1) are test characters and round(0.1 n) (at least 1) val
characters, never drawn in training; every training character is drawn once, and val / test are
balanced: `--val-per-class` / `--test-per-class` drawings per block, round robin over its held-out
characters. Drawings use hanzi-lt's augmentation (scale, rotation, shift, random background,
contrasting ink), seeded per (seed, code point, drawing).

    python benchmarks/manifest/make_symbols_manifest.py --out runs/symbols-lt
    pycmlt compare --dataset manifest --data-root runs/symbols-lt/manifest.csv --methods balanced-softmax cmltnet ...
"""
from __future__ import annotations

import argparse
import csv
import re
import unicodedata
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image

from pycmlt.data.emoji_render import RenderAugment
from pycmlt.data.hanzi_render import HanziRenderer
from pycmlt.data.hanzi_sources import font_coverage

BLOCKS_TXT = Path("/usr/share/unicode/Blocks.txt")
FONT = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
STOP_WORDS = frozenset({"with", "and", "of", "the", "for", "to", "in", "on", "form"})
MIN_CHARACTERS = 4  # a block needs a training, a val and a test character and one more


def unicode_blocks(path: Path = BLOCKS_TXT) -> list[tuple[int, int, str]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: apt-get install unicode-data (make demo installs it)")
    blocks = []
    for line in path.read_text().splitlines():
        match = re.match(r"([0-9A-F]+)\.\.([0-9A-F]+); (.+)", line)
        if match:
            blocks.append((int(match[1], 16), int(match[2], 16), match[3].strip()))
    return blocks


def name_words(char: str) -> list[str]:
    """The tokens of a character's Unicode name, lower-cased, without a few function words."""
    return [w for w in unicodedata.name(char).lower().split() if w not in STOP_WORDS]


def characters_by_block(font: Path = FONT) -> dict[str, list[str]]:
    """Drawable, named characters (no control, format, separator or combining mark) per block."""
    blocks, covered = unicode_blocks(), font_coverage(font)
    found: dict[str, list[str]] = {}
    for cp in sorted(covered):
        char = chr(cp)
        if unicodedata.category(char)[0] in "CZM" or not unicodedata.name(char, ""):
            continue
        block = next((name for lo, hi, name in blocks if lo <= cp <= hi), None)
        if block is not None:
            found.setdefault(block, []).append(char)
    return {b: chars for b, chars in found.items() if len(chars) >= MIN_CHARACTERS}


def split_block(chars: list[str], rng: np.random.Generator) -> dict[str, list[str]]:
    order = [chars[i] for i in rng.permutation(len(chars))]
    n = len(order)
    n_test = min(max(1, round(0.2 * n)), n - 2)
    n_val = min(max(1, round(0.1 * n)), n - n_test - 1)
    return {"test": order[:n_test], "val": order[n_test:n_test + n_val], "train": order[n_test + n_val:]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder for images/ and manifest.csv")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-per-class", type=int, default=10)
    p.add_argument("--test-per-class", type=int, default=20)
    p.add_argument("--blocks", nargs="+", metavar="BLOCK", help="only these Unicode blocks (default: every "
                   f"block with at least {MIN_CHARACTERS} drawable characters)")
    args = p.parse_args(argv)
    found = characters_by_block()
    unknown = sorted(set(args.blocks or []) - set(found))
    if unknown:
        p.error(f"--blocks: {unknown} are not blocks with {MIN_CHARACTERS}+ drawable characters; "
                f"known: {sorted(found)}")
    out = Path(args.out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    renderer, aug = HanziRenderer(FONT, "dejavu-sans"), RenderAugment()
    rows = []
    for block, chars in sorted(found.items()):
        if args.blocks and block not in args.blocks:
            continue
        parts = split_block(chars, np.random.default_rng([args.seed, sum(map(ord, block))]))
        draws = {"train": [(c, 0) for c in parts["train"]]}
        for split, count in (("val", args.val_per_class), ("test", args.test_per_class)):
            held = parts[split]
            draws[split] = [(held[k % len(held)], 1 + k // len(held)) for k in range(count)]
        for split, items in draws.items():
            for char, k in items:
                draw = k + (1000 if split == "test" else 0)  # train 0, val 1.., test 1001..: never shared
                rng = np.random.default_rng([args.seed, ord(char), draw])
                name = f"{split}-{ord(char):05X}-{k}.png"
                Image.fromarray(renderer.render(char, args.size, rng, aug)).save(out / "images" / name)
                rows.append({"image": f"images/{name}", "label": block, "words": " ".join(name_words(char)),
                             "split": split})
    with open(out / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["image", "label", "words", "split"])
        writer.writeheader()
        writer.writerows(rows)
    counts = {s: sum(r["split"] == s for r in rows) for s in ("train", "val", "test")}
    print(f"wrote {out / 'manifest.csv'}: {len({r['label'] for r in rows})} classes, {counts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
