"""VireoFood-172 (Chen & Ngo 2016) from its official distribution layout.

    <root>/ready_chinese_food/<class id 1..172>/<image>.jpg     the images
    <root>/SplitAndIngreLabel/TR.txt, VAL.txt, TE.txt          one image per line, relative to
                                                               ready_chinese_food, e.g. "/1/1_1.jpg"
    <root>/SplitAndIngreLabel/IngreLabel.txt                   "<image> v_1 ... v_353" per image, v = 1
                                                               (ingredient present) or -1 / 0 (absent)
    <root>/SplitAndIngreLabel/IngredientList.txt               the 353 ingredient names, one per line
    <root>/SplitAndIngreLabel/FoodList.txt                     the 172 food (class) names, line k = class k
                                                               (also looked up in <root>; optional: else "1".."172")

The class of an image is its folder number (1-based in the files, 0-based labels here); its
descriptional words are its ingredient names. Splits: "train" (TR), "val" (VAL), "test" (TE).
The official training split is mildly imbalanced; imbalance_ratio=rho subsamples it to a long-tailed
"exp" (or "pareto") profile (seeded, largest class at n_max), and test_per_class caps val/test
images per class.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch

from pycmlt.data.dataset import FileDataset
from pycmlt.data.image_modes import DEFAULT_BACKGROUND
from pycmlt.data.longtail import cap_per_class, subsample_longtail
from pycmlt.data.textfiles import LayoutError, find_file, read_lines
from pycmlt.data.vocab import Vocabulary
from pycmlt.data.words import WordTable

SPLIT_FILES = {"train": "TR.txt", "val": "VAL.txt", "test": "TE.txt"}


def _norm(rel: str) -> str:
    return "/" + rel.strip().replace("\\", "/").lstrip("/")


def _class_of(rel: str, path: Path) -> int:
    try:
        return int(rel.strip("/").split("/")[0]) - 1
    except ValueError:
        raise LayoutError(f"{path}: image {rel!r} is not under a numbered class folder like /1/1_1.jpg") from None


def _ingredients(path: Path) -> dict[str, np.ndarray]:
    """{image: indices of its ingredients} from IngreLabel.txt."""
    out = {}
    ncols = None
    for ln, line in enumerate(read_lines(path), 1):
        parts = line.split()
        try:
            v = np.asarray(parts[1:], dtype=np.int16)
        except ValueError:
            raise LayoutError(f"{path}:{ln}: expected '<image> 1 -1 ...', got {line[:80]!r}") from None
        if ncols is None:
            ncols = len(v)
        elif len(v) != ncols:
            raise LayoutError(f"{path}:{ln}: {len(v)} ingredient values, the first line has {ncols}")
        out[_norm(parts[0])] = np.nonzero(v > 0)[0]
    return out


def load_vireo_food172(split: str = "train", *, root: str | Path, image_size: int = 224, resize: str = "crop",
                       imbalance_ratio: float | None = None, profile: str = "exp", n_max: int | None = None,
                       test_per_class: int | None = None, seed: int = 0, min_word_count: int = 1,
                       vocab: Vocabulary | None = None, skip_bad: bool = False, augment: bool | None = None,
                       transform=None, mean=None, std=None, background: str | tuple = DEFAULT_BACKGROUND,
                       image_cache: bool = True, cache_root: str | Path | None = None) -> FileDataset:
    """The VireoFood-172 split `split` (see the module doc)."""
    if split not in SPLIT_FILES:
        raise ValueError(f"VireoFood-172 has splits {tuple(SPLIT_FILES)}, got {split!r}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise LayoutError(f"VireoFood-172 root {root} is not a directory")
    meta_dir = root / "SplitAndIngreLabel"
    ingr_path = find_file(root, "SplitAndIngreLabel/IngreLabel.txt", what="VireoFood-172 ingredient labels")
    ingr = _ingredients(ingr_path)
    ncols = max((int(v.max()) + 1 for v in ingr.values() if len(v)), default=0)
    try:
        names = read_lines(find_file(root, "SplitAndIngreLabel/IngredientList.txt", "IngredientList.txt",
                                     what="VireoFood-172 ingredient list"))
    except LayoutError:
        names = [f"ingredient_{k + 1}" for k in range(ncols)]
    if len(names) < ncols:
        raise LayoutError(f"{meta_dir / 'IngredientList.txt'} has {len(names)} names; IngreLabel.txt uses {ncols}")
    repeats = Counter(names)
    if len(repeats) != len(names):  # keep words distinct if the list repeats a name: "name (k)"
        names = [n if repeats[n] == 1 else f"{n} ({k + 1})" for k, n in enumerate(names)]

    def split_rows(s):
        path = find_file(root, f"SplitAndIngreLabel/{SPLIT_FILES[s]}", what=f"VireoFood-172 {s} list")
        rels = [_norm(x.split()[0]) for x in read_lines(path)]
        return rels, np.asarray([_class_of(r, path) for r in rels], dtype=np.int64)

    rows = {s: split_rows(s) for s in {"train", split}}
    foods_file = None
    for c in ("SplitAndIngreLabel/FoodList.txt", "FoodList.txt"):
        if (root / c).is_file():
            foods_file = root / c
    num_classes = max(int(y.max()) + 1 if len(y) else 0 for _, y in rows.values())
    if foods_file is not None:
        classes = read_lines(foods_file)
        if len(classes) < num_classes:
            raise LayoutError(f"{foods_file} names {len(classes)} foods but the split files use class {num_classes}")
    else:
        classes = [str(k + 1) for k in range(num_classes)]

    def select(s):
        rels, y = rows[s]
        keep = np.arange(len(rels))
        if s == "train" and imbalance_ratio is not None:
            keep = subsample_longtail(y, len(classes), imbalance_ratio, seed=seed, profile=profile, n_max=n_max)
        elif s != "train" and test_per_class is not None:
            keep = cap_per_class(y, len(classes), test_per_class, seed=seed)
        missing = [rels[k] for k in keep if rels[k] not in ingr]
        if missing:
            raise LayoutError(f"{ingr_path}: no ingredient row for {len(missing)} {s} images (e.g. {missing[0]})")
        words = WordTable.from_lists([names[j] for j in ingr[rels[k]]] for k in keep)
        return [rels[k] for k in keep], y[keep], words

    train_rels, train_y, train_words = select("train")
    rels, y, words = (train_rels, train_y, train_words) if split == "train" else select(split)
    if vocab is None:
        vocab = Vocabulary.build(train_words.lists(), min_count=min_word_count, order=names)
    img_root = root / "ready_chinese_food"
    kw = {} if mean is None else {"mean": mean, "std": std}
    return FileDataset([str(img_root / r.lstrip("/")) for r in rels], image_size=image_size, resize=resize,
                       skip_bad=skip_bad, background=background, image_cache=image_cache, cache_root=cache_root,
                       name="vireo-food-172", split=split, classes=classes, vocab=vocab,
                       labels=torch.from_numpy(y), words=words,
                       class_counts=torch.bincount(torch.from_numpy(train_y), minlength=len(classes)),
                       augment=augment, transform=transform,
                       meta={"root": str(root), "imbalance_ratio_target": imbalance_ratio, "profile": profile,
                             "train_size": len(train_rels), "ingredients": names}, **kw)
