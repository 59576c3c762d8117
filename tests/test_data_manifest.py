"""Manifest datasets (CSV and JSONL): labels, words, splits, paths, errors, bad images."""
import json
import warnings

import numpy as np
import pytest
import torch
from data_fixtures import corrupt_image, manifest_rows, write_csv, write_image, write_jsonl, write_transparent
from PIL import Image

from pycmlt.data import ImageLoadError, build_dataset, build_datasets, collate
from pycmlt.data.manifest import ManifestError

pytestmark = pytest.mark.usefixtures("isolated_cache")  # decoded-image cache in tmp_path


def _expected(rows, split):
    return [r for r in rows if r["split"] == split]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_single_label(tmp_path, fmt, split):
    rows = manifest_rows(tmp_path)
    path = tmp_path / f"data.{fmt}"
    (write_csv if fmt == "csv" else write_jsonl)(path, rows)
    ds = build_dataset("manifest", split, path=path, image_size=10)
    exp = _expected(rows, split)
    assert ds.classes == ["cat", "dog", "fox"] and not ds.multi_label and len(ds) == len(exp)
    for i, r in enumerate(exp):
        assert ds.paths[i] == str(tmp_path / r["image"])
        assert ds.classes[ds.label(i)] == r["label"]
        assert ds.words(i) == r["words"]
    train = _expected(rows, "train")
    assert ds.class_counts.tolist() == [sum(r["label"] == c for r in train) for c in ds.classes]
    pixels = np.asarray(Image.open(tmp_path / exp[0]["image"]).convert("RGB").resize((10, 10)))
    assert ds.raw_image(0).shape == (3, 10, 10) and ds.raw_image(0).dtype == torch.uint8
    assert abs(ds.raw_image(0).permute(1, 2, 0).float().mean() - float(pixels.mean())) < 12


def test_multi_label_and_pipe_words(tmp_path):
    rows = manifest_rows(tmp_path, multi_label=True)
    for r in rows:
        r["words"] = ["two words", "x"]
    write_csv(tmp_path / "m.csv", rows, sep="|")
    write_jsonl(tmp_path / "m.jsonl", rows)
    for name in ("m.csv", "m.jsonl"):
        ds = build_dataset("manifest", "train", root=tmp_path / name)
        exp = _expected(rows, "train")
        assert ds.multi_label and ds.targets.shape == (len(exp), 3)
        for i, r in enumerate(exp):
            assert [ds.classes[c] for c in torch.nonzero(ds.targets[i]).flatten()] == sorted(r["labels"])
            assert ds.words(i) == ["two words", "x"]
        assert ds.class_counts.tolist() == [sum(c in r["labels"] for r in exp) for c in ds.classes]


def test_no_split_column_is_a_seeded_stratified_split(tmp_path):
    rows = manifest_rows(tmp_path, n=40)
    write_csv(tmp_path / "m.csv", rows, with_split=False)
    parts = build_datasets("manifest", ("train", "val", "test"), path=tmp_path / "m.csv", test_fraction=0.25,
                           val_fraction=0.25, seed=5)
    paths = [set(parts[s].paths) for s in ("train", "val", "test")]
    assert sum(map(len, paths)) == 40 and not (paths[0] & paths[1] or paths[0] & paths[2] or paths[1] & paths[2])
    assert parts["test"].vocab is parts["train"].vocab
    for c in range(3):  # every class is in train, and split roughly by the fractions
        assert parts["train"].split_counts[c] >= 1
    again = build_dataset("manifest", "test", path=tmp_path / "m.csv", test_fraction=0.25, val_fraction=0.25, seed=5)
    assert set(again.paths) == paths[2]


def test_folder_of_split_files_and_absolute_paths(tmp_path):
    rows = manifest_rows(tmp_path)
    rows[0]["image"] = str(tmp_path / rows[0]["image"])   # absolute
    write_csv(tmp_path / "train.csv", _expected(rows, "train"), with_split=False)
    write_jsonl(tmp_path / "test.jsonl", _expected(rows, "test"), with_split=False)
    train = build_dataset("manifest", "train", path=tmp_path)
    test = build_dataset("manifest", "test", path=tmp_path)
    assert len(train) == len(_expected(rows, "train")) and len(test) == len(_expected(rows, "test"))
    assert train.paths[0] == rows[0]["image"]


def test_unknown_test_words_are_dropped(tmp_path):
    rows = manifest_rows(tmp_path)
    for r in rows:
        if r["split"] == "test":
            r["words"] = ["never-in-train", "w0"]
    write_jsonl(tmp_path / "m.jsonl", rows)
    test = build_dataset("manifest", "test", path=tmp_path / "m.jsonl")
    assert "never-in-train" not in test.vocab
    assert test.words(0) == ["never-in-train", "w0"]
    assert test.vocab.decode(test.word_ids(0).tolist()) == ["w0"]


@pytest.mark.parametrize("content,match", [
    ('{"image": "a.png", "label": "x", "split": "holdout"}\n', r"m.jsonl:1: unknown split 'holdout'"),
    ('{"image": "a.png", "label": "x"}\nnot json\n', r"m.jsonl:2: not valid JSON"),
    ('{"image": "a.png"}\n', r"m.jsonl:1: missing 'label'"),
    ('{"image": "", "label": "x"}\n', r"m.jsonl:1: empty 'image'"),
    ('{"image": "a.png", "label": ["a", "b"]}\n', r"m.jsonl:1: 'label' must be one class name .* under 'labels'"),
    ('{"image": "a.png", "label": "x", "split": "train"}\n{"image": "b.png", "label": "x"}\n', r"m.jsonl:2: missing 'split'"),
])
def test_manifest_errors_name_the_line(tmp_path, content, match):
    (tmp_path / "m.jsonl").write_text(content)
    with pytest.raises(ManifestError, match=match):
        build_dataset("manifest", "train", path=tmp_path / "m.jsonl")


def test_csv_needs_image_column_and_known_classes(tmp_path):
    (tmp_path / "m.csv").write_text("path,label\na.png,x\n")
    with pytest.raises(ManifestError, match="'image' column"):
        build_dataset("manifest", "train", path=tmp_path / "m.csv")
    (tmp_path / "m.csv").write_text("image,label\na.png,x\nb.png,y\n")
    with pytest.raises(ManifestError, match=r"m.csv:3: label 'y' is not one of the 1 classes"):
        build_dataset("manifest", "train", path=tmp_path / "m.csv", classes=["x"])
    with pytest.raises(ManifestError, match="does not exist"):
        build_dataset("manifest", "train", path=tmp_path / "none.csv")


def test_numeric_labels_sorted_numerically_and_empty_class_warns(tmp_path):
    for i in range(4):
        write_image(tmp_path / f"{i}.png", i)
    rows = [{"image": f"{i}.png", "label": str(lab), "split": "train"} for i, lab in enumerate([10, 2, 10, 2])]
    rows.append({"image": "0.png", "label": "3", "split": "test"})
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        ds = build_dataset("manifest", "train", path=tmp_path / "m.jsonl")
    assert ds.classes == ["2", "3", "10"] and ds.class_counts.tolist() == [2, 0, 2]
    assert any("no training image" in str(x.message) for x in w)


def test_corrupt_and_missing_images(tmp_path):
    rows = manifest_rows(tmp_path)
    write_csv(tmp_path / "m.csv", rows)
    corrupt_image(tmp_path / rows[0]["image"])
    (tmp_path / rows[1]["image"]).unlink()
    ds = build_dataset("manifest", "train", path=tmp_path / "m.csv", image_size=8)
    with pytest.raises(ImageLoadError, match="0.jpg"):
        ds[0]
    with pytest.raises(ImageLoadError, match="1.png: no such file"):
        ds[1]
    skip = build_dataset("manifest", "train", path=tmp_path / "m.csv", image_size=8, skip_bad=True)
    b = collate([skip[i] for i in range(len(skip))])
    assert len(b) == len(skip) - 2 and sorted(b.bad_paths) == sorted(str(tmp_path / r["image"]) for r in rows[:2])
    assert skip.bad_images.count == 2


def test_background_option_and_directory_rows(tmp_path):
    rows = manifest_rows(tmp_path)
    write_csv(tmp_path / "m.csv", rows)
    write_transparent(tmp_path / rows[0]["image"])
    ds = build_dataset("manifest", "train", path=tmp_path / "m.csv", image_size=8, background="#0000ff")
    assert ds.raw_image(0)[:, 0, 0].tolist() == [0, 0, 255]
    assert build_dataset("manifest", "train", path=tmp_path / "m.csv", image_size=8).raw_image(0).min() == 255
    with pytest.raises(ValueError, match="background must be"):
        build_dataset("manifest", "train", path=tmp_path / "m.csv", background="transparent-ish")
    with pytest.raises(ValueError, match="image_size must be a positive int"):
        build_dataset("manifest", "train", path=tmp_path / "m.csv", image_size=0)
    (tmp_path / rows[1]["image"]).unlink()
    (tmp_path / rows[1]["image"]).mkdir()
    with pytest.raises(ImageLoadError, match="1.png: is a directory"):
        build_dataset("manifest", "train", path=tmp_path / "m.csv", image_size=8)[1]
