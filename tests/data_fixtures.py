"""Tiny on-disk datasets in the official layouts (NUS-WIDE, VireoFood-172, manifests), written with
generated PNG/JPEG images, plus the ground truth the loaders must reproduce."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, seed: int, size=(24, 18), fmt: str | None = None) -> np.ndarray:
    """A random RGB image; returns its pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, format=fmt)
    return arr


def corrupt_image(path: Path) -> None:
    """Overwrite with bytes that are not an image."""
    path.write_bytes(b"this is not an image\x00\x01\x02" * 10)


def truncate_image(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


# ------------------------------------------------------------------------------------------ NUS-WIDE
NUS_CONCEPTS = ["animal", "beach", "sky", "water"]
NUS_TAGS = ["sky", "blue", "sea", "dog", "sunset", "water", "nature", "beach"]


def make_nus_wide(root: Path, *, per_split_tags: bool = True, n_train: int = 40, n_test: int = 16, seed: int = 0) -> dict:
    """Official NUS-WIDE layout. Image i of a split has concept labels and tags drawn at random;
    the single-label ones are long-tailed over the concepts. Returns the ground truth."""
    rng = np.random.default_rng(seed)
    truth = {}
    all_lines, all_tags = [], []
    for split, n in (("Train", n_train), ("Test", n_test)):
        rel, labels, tags = [], [], []
        for i in range(n):
            d = ["actor", "beach", "sunset"][i % 3]
            name = f"{d}/{i:04d}_{split.lower()}{1000 + i}.jpg"
            kind = i % 4
            if kind == 0:      # no concept
                lab = []
            elif kind == 3:    # two concepts
                lab = sorted(rng.choice(len(NUS_CONCEPTS), 2, replace=False).tolist())
            else:              # one concept, long-tailed
                lab = [int(rng.choice(len(NUS_CONCEPTS), p=[0.55, 0.25, 0.15, 0.05]))]
            tg = sorted(rng.choice(len(NUS_TAGS), int(rng.integers(0, 4)), replace=False).tolist())
            rel.append(name)
            labels.append(lab)
            tags.append(tg)
            write_image(root / "Flickr" / name, seed=(0 if split == "Train" else 10_000) + i, fmt="JPEG")
        truth[split.lower()] = {"rel": rel, "labels": labels, "tags": tags}
        (root / "ImageList").mkdir(parents=True, exist_ok=True)
        # Train list in the short form, test list in the absolute Windows form (both occur)
        lines = [r.replace("/", "\\") if split == "Train" else "C:\\ImageData\\Flickr\\" + r.replace("/", "\\")
                 for r in rel]
        (root / "ImageList" / f"{split}Imagelist.txt").write_text("\r\n".join(lines) + "\r\n")
        gt = root / "Groundtruth" / "TrainTestLabels"
        gt.mkdir(parents=True, exist_ok=True)
        for c, concept in enumerate(NUS_CONCEPTS):
            (gt / f"Labels_{concept}_{split}.txt").write_text("".join(f"{int(c in lab)} \n" for lab in labels))
        mat = np.zeros((n, len(NUS_TAGS)), dtype=int)
        for i, tg in enumerate(tags):
            mat[i, tg] = 1
        tags_dir = root / "NUS_WID_Tags"
        tags_dir.mkdir(parents=True, exist_ok=True)
        if per_split_tags:
            (tags_dir / f"{split}_Tags1k.dat").write_text("".join("\t".join(map(str, row)) + "\t\n" for row in mat))
        all_lines += ["C:\\ImageData\\Flickr\\" + r.replace("/", "\\") for r in rel]
        all_tags += ["\t".join(map(str, row)) for row in mat]
    (root / "ConceptsList").mkdir(exist_ok=True)
    (root / "ConceptsList" / "Concepts81.txt").write_text("\n".join(NUS_CONCEPTS) + "\n")
    (root / "NUS_WID_Tags" / "TagList1k.txt").write_text("\n".join(NUS_TAGS) + "\n")
    order = rng.permutation(len(all_lines))  # Imagelist.txt is not in train-then-test order
    (root / "ImageList" / "Imagelist.txt").write_text("\n".join(all_lines[k] for k in order) + "\n")
    if not per_split_tags:
        (root / "NUS_WID_Tags" / "AllTags1k.txt").write_text("\n".join(all_tags[k] for k in order) + "\n")
    return truth


# ------------------------------------------------------------------------------------- VireoFood-172
VIREO_FOODS = ["Braised pork", "Egg fried rice", "Mapo tofu"]
VIREO_INGREDIENTS = ["pork", "egg", "rice", "tofu", "chili", "scallion"]


def make_vireo(root: Path, *, counts=None, seed: int = 0) -> dict:
    """Official VireoFood-172 layout with 3 classes. Returns {split: [(rel, class, ingredient ids)]}."""
    counts = counts or {"TR": [12, 6, 3], "VAL": [2, 2, 2], "TE": [3, 3, 3]}
    rng = np.random.default_rng(seed)
    meta = root / "SplitAndIngreLabel"
    meta.mkdir(parents=True, exist_ok=True)
    truth, ingre_lines = {}, []
    k = 0
    for split, per_class in counts.items():
        rows = []
        for c, n in enumerate(per_class):
            for _ in range(n):
                k += 1
                rel = f"/{c + 1}/{c + 1}_{k}.jpg"
                ing = sorted(set(rng.choice(len(VIREO_INGREDIENTS), 2, replace=False).tolist()) | {c})
                write_image(root / "ready_chinese_food" / rel.lstrip("/"), seed=k, fmt="JPEG")
                vals = ["1" if j in ing else "-1" for j in range(len(VIREO_INGREDIENTS))]
                ingre_lines.append(rel + " " + " ".join(vals))
                rows.append((rel, c, ing))
        (meta / f"{split}.txt").write_text("\n".join(r[0] for r in rows) + "\n")
        truth[{"TR": "train", "VAL": "val", "TE": "test"}[split]] = rows
    (meta / "IngreLabel.txt").write_text("\n".join(ingre_lines) + "\n")
    (meta / "IngredientList.txt").write_text("\n".join(VIREO_INGREDIENTS) + "\n")
    (meta / "FoodList.txt").write_text("\n".join(VIREO_FOODS) + "\n")
    return truth


# ------------------------------------------------------------------------------------------ manifests
def manifest_rows(root: Path, n: int = 12, multi_label: bool = False) -> list[dict]:
    """Rows with images written under root/img; labels cat/dog/fox (long-tailed), words, split."""
    rows = []
    names = ["cat", "cat", "cat", "dog", "cat", "dog", "fox", "cat", "dog", "cat", "cat", "fox"]
    for i in range(n):
        label = names[i % len(names)]
        rel = f"img/{i}.png" if i % 2 else f"img/{i}.jpg"
        write_image(root / rel, seed=100 + i, fmt="PNG" if i % 2 else "JPEG")
        row = {"image": rel, "words": [f"w{i % 3}", label + "-ish"], "split": "test" if i % 4 == 3 else "train"}
        if multi_label:
            row["labels"] = [label] + (["dog"] if i % 3 == 0 and label != "dog" else [])
        else:
            row["label"] = label
        rows.append(row)
    return rows


def write_csv(path: Path, rows: list[dict], *, with_split: bool = True, sep: str = " ") -> None:
    import csv
    key = "labels" if "labels" in rows[0] else "label"
    cols = ["image", key, "words"] + (["split"] if with_split else [])
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in rows:
            lab = "|".join(r[key]) if key == "labels" else r[key]
            w.writerow([r["image"], lab, sep.join(r["words"])] + ([r["split"]] if with_split else []))


def write_jsonl(path: Path, rows: list[dict], *, with_split: bool = True) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            d = dict(r)
            if not with_split:
                d.pop("split")
            f.write(json.dumps(d) + "\n")


def write_transparent(path: Path) -> None:
    """A fully transparent RGBA PNG (whatever the file name's extension): it loads as the background."""
    Image.new("RGBA", (24, 18), (0, 0, 0, 0)).save(path, format="PNG")
