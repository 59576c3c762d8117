"""Manifest datasets: how users bring their own data, as a CSV or JSON-lines file.

One row per image:
  image   path of the image, relative to the manifest's folder (or `image_root`) or absolute  [required]
  label   one class name (single-label; a list here is an error: use labels)                 [label or labels]
  labels  class names of a multi-label image: "a|b" in CSV, a list (or "a|b") in JSONL
  words   descriptional words: "w1 w2" (white space) or "phrase one|phrase two" (when it contains
          "|") in CSV; a list of strings (or such a string) in JSONL                         [optional]
  split   train / val / test (also: training, valid, validation, dev, testing)             [optional]
Other columns are ignored. CSV files need a header row; .tsv files are tab-separated.

`path` may also be a folder holding train.csv / val.csv / test.csv (or .jsonl): the split comes from
the file name. Without a split column, the rows are split per class (seeded) with test_fraction
[0.2] and val_fraction [0.0]. Classes are `classes` (a list or a text file, one per line) or the
sorted distinct labels (numerically when all labels are integers).
"""
from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from pycmlt.data.dataset import FileDataset
from pycmlt.data.image_modes import DEFAULT_BACKGROUND
from pycmlt.data.longtail import cap_per_class, stratified_split, subsample_longtail
from pycmlt.data.vocab import Vocabulary
from pycmlt.data.words import WordTable

SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "dev": "val", "test": "test", "testing": "test"}
EXTENSIONS = (".csv", ".tsv", ".jsonl", ".ndjson", ".json")


class ManifestError(ValueError):
    pass


def _split_field(value, sep: str | None) -> list[str]:
    """A list value as is; a string split on '|' when it contains one, else on `sep` (None = white space)."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    s = str(value).strip()
    if not s:
        return []
    parts = s.split("|") if "|" in s else s.split(sep)
    return [p.strip() for p in parts if p.strip()]


def read_manifest(path: Path) -> list[dict]:
    """Rows of a manifest file as dicts, each with its '_line' number."""
    suffix = path.suffix.lower()
    rows = []
    if suffix in (".csv", ".tsv"):
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",")
            if reader.fieldnames is None or "image" not in [h.strip() for h in reader.fieldnames]:
                raise ManifestError(f"{path}: the header must have an 'image' column, got {reader.fieldnames}")
            for row in reader:
                rows.append({(k or "").strip(): v for k, v in row.items()} | {"_line": reader.line_num})
    elif suffix in (".jsonl", ".ndjson", ".json"):
        with open(path, encoding="utf-8-sig") as f:
            for ln, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ManifestError(f"{path}:{ln}: not valid JSON ({e.msg})") from None
                if not isinstance(obj, dict):
                    raise ManifestError(f"{path}:{ln}: each line must be a JSON object")
                rows.append({**obj, "_line": ln})
    else:
        raise ManifestError(f"{path}: unknown manifest type {suffix!r} (use one of {EXTENSIONS})")
    return rows


def _collect(path: Path) -> list[tuple[Path, dict, str | None]]:
    """(manifest file, row, split from the file name or None) for a file or a folder of split files."""
    if path.is_dir():
        out = []
        for split in ("train", "val", "test"):
            for ext in EXTENSIONS:
                f = path / f"{split}{ext}"
                if f.is_file():
                    out += [(f, r, split) for r in read_manifest(f)]
        if not out:
            raise ManifestError(f"{path}: no train/val/test manifest files ({', '.join(EXTENSIONS)}) in this folder")
        return out
    if not path.is_file():
        raise ManifestError(f"manifest {path} does not exist")
    return [(path, r, None) for r in read_manifest(path)]


def _natural_sort(names) -> list[str]:
    names = sorted(set(names))
    if names and all(n.lstrip("-").isdigit() for n in names):
        return sorted(names, key=int)
    return names


def load_manifest(split: str = "train", *, path: str | Path | None = None, root: str | Path | None = None,
                  image_size: int = 224, resize: str = "crop",
                  image_root: str | Path | None = None, multi_label: bool | None = None,
                  classes: list[str] | str | Path | None = None, word_sep: str | None = None,
                  test_fraction: float = 0.2, val_fraction: float = 0.0, imbalance_ratio: float | None = None,
                  profile: str = "exp", n_max: int | None = None, test_per_class: int | None = None, seed: int = 0,
                  min_word_count: int = 1, vocab: Vocabulary | None = None, skip_bad: bool = False,
                  augment: bool | None = None, transform=None, mean=None, std=None,
                  background: str | tuple = DEFAULT_BACKGROUND, image_cache: bool = True,
                  cache_root: str | Path | None = None) -> FileDataset:
    """The split `split` ("train", "val", "test") of a manifest dataset (see the module doc)."""
    split = SPLIT_ALIASES.get(split, split)
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be train, val or test, got {split!r}")
    if (path is None) == (root is None):
        raise TypeError("give the manifest file or folder as path= (or its alias root=)")
    path = Path(path if path is not None else root).expanduser()
    entries = _collect(path)
    if not entries:
        raise ManifestError(f"{path}: the manifest has no rows")
    if multi_label is None:
        multi_label = any("labels" in r for _, r, _ in entries)
    images, label_lists, word_lists, splits = [], [], [], []
    for f, r, file_split in entries:
        where = f"{f}:{r['_line']}"
        img = str(r.get("image") or "").strip()
        if not img:
            raise ManifestError(f"{where}: empty 'image'")
        base = Path(image_root).expanduser() if image_root else f.parent
        images.append(str(Path(img) if Path(img).is_absolute() else base / img))
        key = "labels" if "labels" in r else "label"
        raw = r.get(key)
        if not multi_label and isinstance(raw, (list, tuple, dict)):
            raise ManifestError(f"{where}: {key!r} must be one class name in a single-label manifest, got {raw!r} "
                                "(a multi-label image lists its classes under 'labels')")
        labs = _split_field(raw, None) if multi_label else ([str(raw).strip()] if raw not in (None, "") else [])
        if not multi_label and not labs:
            raise ManifestError(f"{where}: missing 'label'")
        label_lists.append(labs)
        word_lists.append(_split_field(r.get("words"), word_sep))
        s = r.get("split")
        if s not in (None, ""):
            s = SPLIT_ALIASES.get(str(s).strip().lower())
            if s is None:
                raise ManifestError(f"{where}: unknown split {r.get('split')!r} (use train, val or test)")
        splits.append(s or file_split)

    if classes is None:
        class_list = _natural_sort(lab for labs in label_lists for lab in labs)
    elif isinstance(classes, (str, Path)):
        class_list = [ln.strip() for ln in Path(classes).read_text(encoding="utf-8").splitlines() if ln.strip()]
    else:
        class_list = [str(c) for c in classes]
    cid = {c: i for i, c in enumerate(class_list)}
    for (f, r, _), labs in zip(entries, label_lists):
        for lab in labs:
            if lab not in cid:
                raise ManifestError(f"{f}:{r['_line']}: label {lab!r} is not one of the {len(class_list)} classes")

    n = len(entries)
    first = np.asarray([cid[labs[0]] if labs else -1 for labs in label_lists], dtype=np.int64)
    if all(s is None for s in splits):
        parts = stratified_split(first, {"test": test_fraction, "val": val_fraction}, seed=seed)
        split_of = np.empty(n, dtype=object)
        for name, idx in parts.items():
            split_of[idx] = name
    elif any(s is None for s in splits):
        k = next(i for i, s in enumerate(splits) if s is None)
        raise ManifestError(f"{entries[k][0]}:{entries[k][1]['_line']}: missing 'split' (other rows have one)")
    else:
        split_of = np.asarray(splits, dtype=object)

    def select(s):
        idx = np.nonzero(split_of == s)[0]
        if not multi_label:
            if s == "train" and imbalance_ratio is not None:
                idx = idx[subsample_longtail(first[idx], len(class_list), imbalance_ratio, seed=seed,
                                             profile=profile, n_max=n_max)]
            elif s != "train" and test_per_class is not None:
                idx = idx[cap_per_class(first[idx], len(class_list), test_per_class, seed=seed)]
        return idx

    def labels_of(idx):
        if not multi_label:
            return torch.from_numpy(first[idx])
        y = torch.zeros(len(idx), len(class_list), dtype=torch.bool)
        for row, k in enumerate(idx):
            y[row, [cid[lab] for lab in label_lists[k]]] = True
        return y

    train_idx, idx = select("train"), select(split)
    train_y = labels_of(train_idx)
    class_counts = train_y.sum(0).to(torch.long) if multi_label else torch.bincount(train_y, minlength=len(class_list))
    empty = [class_list[c] for c in torch.nonzero(class_counts == 0).flatten().tolist()]
    if empty:
        warnings.warn(f"manifest {path}: {len(empty)} classes have no training image ({', '.join(empty[:5])}...); "
                      "class-balanced losses need every class in the training split", stacklevel=2)
    if vocab is None:
        vocab = Vocabulary.build((word_lists[k] for k in train_idx), min_count=min_word_count)
    kw = {} if mean is None else {"mean": mean, "std": std}
    return FileDataset([images[k] for k in idx], image_size=image_size, resize=resize, skip_bad=skip_bad,
                       background=background, image_cache=image_cache, cache_root=cache_root, name="manifest", split=split, classes=class_list, vocab=vocab, labels=labels_of(idx),
                       words=WordTable.from_lists(word_lists[k] for k in idx), class_counts=class_counts,
                       augment=augment, transform=transform,
                       meta={"path": str(path), "train_size": int(len(train_idx)), "imbalance_ratio_target": imbalance_ratio},
                       **kw)
