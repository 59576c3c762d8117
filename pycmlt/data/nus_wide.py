"""NUS-WIDE (Chua et al. 2009) from its official distribution layout.

    <root>/ImageList/TrainImagelist.txt, TestImagelist.txt   one image per line, Windows-style path
                                                              (e.g. "actor\\0001_2124494179.jpg" or
                                                              "C:\\ImageData\\Flickr\\actor\\0001_2124494179.jpg")
    <root>/ImageList/Imagelist.txt                            all 269,648 images (needed only with AllTags1k.txt)
    <root>/Groundtruth/TrainTestLabels/Labels_<concept>_Train.txt, Labels_<concept>_Test.txt
                                                              one 0/1 per line, aligned with the split's image list
    <root>/ConceptsList/Concepts81.txt                        the 81 concept names (optional: else the names in
                                                              the label file names, sorted)
    <root>/NUS_WID_Tags/TagList1k.txt                         the 1,000 tags, one per line
    <root>/NUS_WID_Tags/Train_Tags1k.dat, Test_Tags1k.dat     per-split image x tag 0/1 matrices, or
    <root>/NUS_WID_Tags/AllTags1k.txt                         the 269,648 x 1,000 matrix aligned with Imagelist.txt
    <root>/Flickr/<concept dir>/<file>.jpg                    the images (`image_dir` overrides <root>/Flickr)

Labels are the 81 concepts; descriptional words are the image's tags among the 1k tag list.
mode="multi-label" (default): every image with at least one concept (drop_unlabeled=True), multi-hot
labels, the official split unchanged (its concept distribution is already long-tailed).
mode="single-label": only images with exactly one positive concept. Optional long-tailed training
split: imbalance_ratio=rho subsamples the training images per class to the "exp" (or "pareto")
profile with the largest class at n_max (default: its available count), seeded; optional
test_per_class caps the test images per class (a balanced-ish test set). Classes left with fewer
than min_class_count training images are dropped from every split.
NUS-WIDE has no official validation split: split="val" is `val_fraction` [0.1] of the official
training images (after the mode's filtering, before any long-tail subsampling) held out by a seeded
draw -- per class in single-label mode (every class keeps at least one training image), uniformly
over images in multi-label mode; the training split is the rest. test_per_class also caps val.
val_fraction=0 keeps the whole official training split and builds no val split.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pycmlt.data.dataset import FileDataset
from pycmlt.data.image_modes import DEFAULT_BACKGROUND
from pycmlt.data.longtail import cap_per_class, stratified_split, subsample_longtail
from pycmlt.data.textfiles import LayoutError, find_file, read_binary_matrix, read_lines
from pycmlt.data.vocab import Vocabulary
from pycmlt.data.words import WordTable

MODES = ("multi-label", "single-label")
SPLIT_NAMES = {"train": "Train", "test": "Test"}
SPLITS = ("train", "val", "test")


def relative_image_path(line: str) -> str:
    """'C:\\ImageData\\Flickr\\actor\\0001_2124494179.jpg' -> 'actor/0001_2124494179.jpg'."""
    p = line.strip().replace("\\", "/")
    low = p.lower()
    k = low.rfind("flickr/")
    if k >= 0:
        p = p[k + len("flickr/"):]
    return p.lstrip("./")


def _concepts(root: Path) -> list[str]:
    for c in ("ConceptsList/Concepts81.txt", "Concepts81.txt", "Groundtruth/Concepts81.txt"):
        if (root / c).is_file():
            return read_lines(root / c)
    files = sorted((root / "Groundtruth" / "TrainTestLabels").glob("Labels_*_Train.txt"))
    if not files:
        raise LayoutError(f"NUS-WIDE: no concept list (ConceptsList/Concepts81.txt) and no label files "
                          f"Groundtruth/TrainTestLabels/Labels_<concept>_Train.txt under {root}")
    return [f.name[len("Labels_"):-len("_Train.txt")] for f in files]


def _split_images(root: Path, split: str) -> list[str]:
    name = SPLIT_NAMES[split]
    path = find_file(root, f"ImageList/{name}Imagelist.txt", f"ImageList/{name}ImageList.txt",
                     f"{name}Imagelist.txt", what=f"NUS-WIDE {split} image list")
    return [relative_image_path(x) for x in read_lines(path)]


def _split_labels(root: Path, split: str, concepts: list[str], n: int) -> np.ndarray:
    cols = []
    for c in concepts:
        p = find_file(root, f"Groundtruth/TrainTestLabels/Labels_{c}_{SPLIT_NAMES[split]}.txt",
                      what=f"NUS-WIDE labels of concept {c!r} ({split})")
        cols.append(read_binary_matrix(p, 1, nrows=n)[:, 0])
    return np.stack(cols, 1) if cols else np.zeros((n, 0), dtype=np.uint8)


def _split_tags(root: Path, split: str, rel_paths: list[str], ntags: int) -> np.ndarray:
    name = SPLIT_NAMES[split]
    for c in (f"NUS_WID_Tags/{name}_Tags1k.dat", f"NUS_WID_Tags/{name}_Tags1k.txt", f"{name}_Tags1k.dat"):
        if (root / c).is_file():
            return read_binary_matrix(root / c, ntags, nrows=len(rel_paths))
    all_tags = find_file(root, "NUS_WID_Tags/AllTags1k.txt", "AllTags1k.txt",
                         what=f"NUS-WIDE tag matrix (NUS_WID_Tags/{name}_Tags1k.dat or NUS_WID_Tags/AllTags1k.txt)")
    all_list = find_file(root, "ImageList/Imagelist.txt", "ImageList/ImageList.txt",
                         what="NUS-WIDE full image list (needed to align AllTags1k.txt)")
    all_paths = [relative_image_path(x) for x in read_lines(all_list)]
    m = read_binary_matrix(all_tags, ntags, nrows=len(all_paths))
    row = {p: i for i, p in enumerate(all_paths)}
    missing = [p for p in rel_paths if p not in row]
    if missing:
        raise LayoutError(f"NUS-WIDE: {len(missing)} {split} images are not in {all_list} (e.g. {missing[0]})")
    return m[[row[p] for p in rel_paths]]


def _load_split(root: Path, split: str, concepts: list[str], tags: list[str]):
    rel = _split_images(root, split)
    labels = _split_labels(root, split, concepts, len(rel))
    words = WordTable.from_indicator(tags, _split_tags(root, split, rel, len(tags)))
    return rel, labels, words


def load_nus_wide(split: str = "train", *, root: str | Path, mode: str = "multi-label", image_size: int = 224,
                  resize: str = "crop", image_dir: str | Path | None = None, imbalance_ratio: float | None = None,
                  profile: str = "exp", n_max: int | None = None, test_per_class: int | None = None,
                  min_class_count: int = 1, drop_unlabeled: bool = True, exclude_concept_tags: bool = False,
                  val_fraction: float = 0.1, seed: int = 0, min_word_count: int = 1, vocab: Vocabulary | None = None,
                  skip_bad: bool = False, augment: bool | None = None, transform=None, mean=None, std=None,
                  background: str | tuple = DEFAULT_BACKGROUND, image_cache: bool = True,
                  cache_root: str | Path | None = None) -> FileDataset:
    """The NUS-WIDE split `split` ("train", "val" or "test") in `mode` (see the module doc)."""
    if split not in SPLITS:
        raise ValueError(f"NUS-WIDE has splits {SPLITS}, got {split!r}")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if split == "val" and val_fraction == 0:
        raise ValueError("NUS-WIDE with val_fraction=0 has no val split; use val_fraction > 0")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "multi-label" and (imbalance_ratio is not None or test_per_class is not None):
        raise ValueError("imbalance_ratio and test_per_class apply to mode='single-label' "
                         "(the multi-label split keeps the official, naturally long-tailed, distribution)")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise LayoutError(f"NUS-WIDE root {root} is not a directory")
    concepts = _concepts(root)
    tags = read_lines(find_file(root, "NUS_WID_Tags/TagList1k.txt", "TagList1k.txt", what="NUS-WIDE tag list"))
    concept_set = set(concepts)
    source = {"train": "train", "val": "train", "test": "test"}  # the official file each split comes from
    parts = {s: _load_split(root, s, concepts, tags) for s in ({"train", source[split]})}

    selected = {}
    for s, (rel, labels, words) in parts.items():
        npos = labels.sum(1)
        keep = np.nonzero(npos == 1)[0] if mode == "single-label" else (
            np.nonzero(npos > 0)[0] if drop_unlabeled else np.arange(len(rel)))
        y = labels[keep].argmax(1) if mode == "single-label" else labels[keep]
        if s == "train" and val_fraction > 0:
            selected["val"], (keep, y) = _carve_val(keep, y, mode, val_fraction, seed)
        selected[s] = (keep, y)
    if mode == "single-label":
        for s, (keep, y) in selected.items():
            if s == "train" and imbalance_ratio is not None:
                sub = subsample_longtail(y, len(concepts), imbalance_ratio, seed=seed, profile=profile, n_max=n_max)
            elif s != "train" and test_per_class is not None:
                sub = cap_per_class(y, len(concepts), test_per_class, seed=seed)
            else:
                continue
            selected[s] = (keep[sub], y[sub])

    classes = list(concepts)
    if mode == "single-label":  # drop classes too rare in the (subsampled) training split
        counts = np.bincount(selected["train"][1], minlength=len(concepts))
        kept_classes = np.nonzero(counts >= max(1, min_class_count))[0]
        remap = -np.ones(len(concepts), dtype=np.int64)
        remap[kept_classes] = np.arange(len(kept_classes))
        classes = [concepts[c] for c in kept_classes]
        for s, (keep, y) in selected.items():
            ok = remap[y] >= 0
            selected[s] = (keep[ok], remap[y][ok])

    def words_of(s):
        keep = selected[s][0]
        table = parts[source[s]][2].subset(keep)
        if exclude_concept_tags:
            table = WordTable.from_lists([w for w in ws if w not in concept_set] for ws in table.lists())
        return table

    train_words = words_of("train")
    train_y = torch.from_numpy(np.asarray(selected["train"][1]))
    class_counts = (train_y > 0).sum(0) if mode == "multi-label" else torch.bincount(train_y, minlength=len(classes))
    if vocab is None:
        vocab = Vocabulary.build(train_words.lists(), min_count=min_word_count, order=tags)
    keep, y = selected[split]
    img_root = Path(image_dir).expanduser() if image_dir else root / "Flickr"
    paths = [str(img_root / parts[source[split]][0][k]) for k in keep]
    kw = {} if mean is None else {"mean": mean, "std": std}
    return FileDataset(paths, image_size=image_size, resize=resize, skip_bad=skip_bad, background=background,
                       image_cache=image_cache, cache_root=cache_root, name="nus-wide", split=split,
                       classes=classes, vocab=vocab, labels=torch.from_numpy(np.asarray(y)),
                       words=train_words if split == "train" else words_of(split), class_counts=class_counts,
                       augment=augment, transform=transform,
                       meta={"mode": mode, "root": str(root), "imbalance_ratio_target": imbalance_ratio,
                             "profile": profile, "train_size": int(len(selected["train"][0])),
                             "concepts": concepts, "exclude_concept_tags": exclude_concept_tags,
                             "val_fraction": val_fraction}, **kw)


def _carve_val(keep: np.ndarray, y: np.ndarray, mode: str, fraction: float, seed: int):
    """((val keep, val labels), (train keep, train labels)): a seeded val draw from the training
    images, per class in single-label mode, over images in multi-label mode."""
    if mode == "single-label":
        parts = stratified_split(y, {"val": fraction}, seed=seed)
        val, train = parts["val"], parts["train"]
    else:
        order = np.random.default_rng([int(seed), 4]).permutation(len(keep))
        n_val = min(len(keep) - 1, int(round(fraction * len(keep)))) if len(keep) else 0
        val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
    return (keep[val], y[val]), (keep[train], y[train])
