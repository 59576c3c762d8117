"""Images per second of full passes over a manifest dataset of PNG files, through the DataLoader
path training uses (augment=False datasets, `collate`, batch 128), without and with the
decoded-image cache (pycmlt.data.image_cache), side by side in one process.

    python -m benchmarks.image_cache [--images 3000] [--size 32] [--folder /tmp/pycmlt-image-bench]

The images are generated once into --folder (seeded): RGB and RGBA drawings (gradients, ellipses,
rectangles), each side log-uniform in 64..2000 px. Passes: decoding every file (image_cache=False),
the first cached pass (decodes and writes the cache, in a fresh cache folder), then two passes that
read the cache.
"""
from __future__ import annotations

import argparse
import csv
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from pycmlt.data import build_dataset, collate


def make_images(folder: Path, n: int, seed: int = 0) -> Path:
    """n PNGs of mixed sizes and a manifest.csv listing them (skipped when already there)."""
    manifest = folder / "manifest.csv"
    if manifest.is_file() and sum(1 for _ in open(manifest)) == n + 1:
        return manifest
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        w, h = (int(math.exp(rng.uniform(math.log(64), math.log(2000)))) for _ in range(2))
        mode = "RGBA" if i % 5 == 0 else "RGB"
        x = np.linspace(0, 255, w, dtype=np.float32)[None, :]
        y = np.linspace(0, 255, h, dtype=np.float32)[:, None]
        c = rng.uniform(0.2, 1.0, 3)
        ones = np.ones((h, w), dtype=np.float32)
        base = np.dstack([x * c[0] + y * (1 - c[0]), x * c[1] * ones, y * c[2] * ones]).astype(np.uint8)
        im = Image.fromarray(base).convert(mode)
        if mode == "RGBA":
            im.putalpha(0)
        draw = ImageDraw.Draw(im)
        for _ in range(6):
            x0, x1 = sorted(rng.integers(0, w, 2).tolist())
            y0, y1 = sorted(rng.integers(0, h, 2).tolist())
            fill = tuple(rng.integers(0, 256, 3).tolist()) + ((255,) if mode == "RGBA" else ())
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=fill)
        name = f"{i:05d}.png"
        im.save(folder / name)
        rows.append((name, f"c{min(9, int(rng.exponential(2)))}"))
    with open(manifest, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "label", "split"])
        writer.writerows([name, label, "train"] for name, label in rows)
    return manifest


def full_pass(dataset, batch_size: int = 128, num_workers: int = 0) -> float:
    """Images per second of one shuffled pass through the DataLoader."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, collate_fn=collate,
                                         num_workers=num_workers)
    start, seen = time.perf_counter(), 0
    for batch in loader:
        seen += len(batch)
    return seen / (time.perf_counter() - start)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers (training's default: 0)")
    parser.add_argument("--folder", default=str(Path(tempfile.gettempdir()) / "pycmlt-image-bench"))
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    manifest = make_images(Path(args.folder), args.images)
    print(f"{args.images} PNGs in {args.folder} (ready in {time.perf_counter() - t0:.0f} s)")
    sides = [min(Image.open(p).size) for p in sorted(Path(args.folder).glob("*.png"))]
    print(f"shorter side: median {int(np.median(sides))} px, max {max(sides)} px")
    torch.manual_seed(0)
    common = dict(path=manifest, image_size=args.size, augment=False)
    with tempfile.TemporaryDirectory() as cache_root:
        files = build_dataset("manifest", "train", image_cache=False, **common)
        cached = build_dataset("manifest", "train", cache_root=cache_root, **common)
        results = {"decode every file (image_cache=False)": full_pass(files, num_workers=args.workers),
                   "first cached pass (decode + write)": full_pass(cached, num_workers=args.workers),
                   "cached pass 2": full_pass(cached, num_workers=args.workers),
                   "cached pass 3": full_pass(cached, num_workers=args.workers)}
    base = results["decode every file (image_cache=False)"]
    for name, rate in results.items():
        print(f"{name:40s} {rate:9.0f} images/s   {rate / base:6.1f}x")


if __name__ == "__main__":
    main()
