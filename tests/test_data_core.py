"""The shared data machinery: Sample/Batch/collate, Vocabulary, WordTable, transforms, long-tail
helpers and statistics, the class-balanced sampler, the cache writer and the registry."""
import os

import numpy as np
import pytest
import torch

from pycmlt.data import (WORD_PAD, BadSample, Batch, ClassBalancedSampler, Sample, Vocabulary, augment_batch,
                         build_dataset, collate, imbalance_ratio, shot_groups, train_transform)
from pycmlt.data.cache import cache_dir, load_npz, save_npz_atomic
from pycmlt.data.longtail import cap_per_class, longtail_targets, stratified_split, subsample_longtail
from pycmlt.data.registry import canonical_name
from pycmlt.data.stats import shot_group_of_classes
from pycmlt.data.transforms import Normalize, RandomCrop, image_mean_std
from pycmlt.data.words import WordTable, tokenize


def _sample(i, k, multi=None):
    label = torch.tensor(multi, dtype=torch.float32) if multi is not None else i % 3
    return Sample(image=torch.full((3, 4, 4), float(i)), label=label, word_ids=torch.arange(k), index=i)


def test_collate_single_label_pads_words():
    b = collate([_sample(0, 2), _sample(1, 0), _sample(2, 3)])
    assert b.images.shape == (3, 3, 4, 4) and b.labels.tolist() == [0, 1, 2] and b.labels.dtype == torch.long
    assert b.word_ids.tolist() == [[0, 1, WORD_PAD], [WORD_PAD] * 3, [0, 1, 2]]
    assert b.word_mask.tolist() == [[True, True, False], [False] * 3, [True] * 3]
    assert b.word_lists() == [[0, 1], [], [0, 1, 2]] and b.indices.tolist() == [0, 1, 2]
    assert not b.multi_label and len(b) == 3


def test_collate_multi_label_no_words_and_bad_samples():
    b = collate([_sample(0, 0, [1, 0]), BadSample(7, "/x.jpg", "no such file"), _sample(2, 0, [1, 1])])
    assert b.multi_label and b.labels.dtype == torch.float32 and b.labels.tolist() == [[1, 0], [1, 1]]
    assert b.word_ids.shape == (2, 0) and b.bad_paths == ["/x.jpg"] and b.indices.tolist() == [0, 2]
    empty = collate([BadSample(1, "/a", "r")])
    assert len(empty) == 0 and empty.bad_paths == ["/a"]


def test_batch_to_and_pin_memory():
    b = collate([_sample(0, 1), _sample(1, 2)])
    moved = b.to("cpu")
    assert isinstance(moved, Batch) and torch.equal(moved.word_ids, b.word_ids)
    if torch.cuda.is_available():
        assert b.to("cuda").images.is_cuda


def test_vocabulary_build_encode_persist(tmp_path):
    v = Vocabulary.build([["b", "a", "a"], ["a", "c"], ["a"], ["c", "rare"]], min_count=2)
    assert list(v) == ["a", "c"] and v.counts.tolist() == [3, 2]   # document frequency, most frequent first
    assert v.encode(["c", "unknown", "a", "c"]).tolist() == [1, 0]  # unknown dropped, duplicates removed
    assert v.decode([1, -1, 0]) == ["c", "a"] and "a" in v and "b" not in v and v.get("b") == -1
    with pytest.raises(KeyError, match="'b' is not in the vocabulary"):
        v.index("b")
    v.save(tmp_path / "v.json")
    w = Vocabulary.load(tmp_path / "v.json")
    assert w == v and w.counts.tolist() == [3, 2]
    ordered = Vocabulary.build([["b", "a"], ["c"]], order=["c", "b", "a", "z"])
    assert list(ordered) == ["c", "b", "a"]
    with pytest.raises(ValueError, match="duplicate"):
        Vocabulary(["x", "x"])
    assert len(Vocabulary.build([[]])) == 0 and Vocabulary.build([[]]).encode(["a"]).numel() == 0


def test_word_table_and_tokenize():
    t = WordTable.from_lists([["a", "b", "a"], [], ["c", "a"]])
    assert t.lists() == [["a", "b"], [], ["c", "a"]]
    assert t.subset([2, 0]).lists() == [["c", "a"], ["a", "b"]] and t.subset([1]).lists() == [[]]
    ids, off = t.encode(Vocabulary(["a", "c"]))
    assert ids.tolist() == [0, 1, 0] and off.tolist() == [0, 1, 1, 3]
    m = WordTable.from_indicator(["x", "y", "z"], np.array([[1, 0, 1], [0, 0, 0], [0, 1, 0]]))
    assert m.lists() == [["x", "z"], [], ["y"]]
    assert tokenize("Face with Tears of Joy: medium-light skin tone, t-shirt +1") == [
        "face", "tears", "joy", "medium-light", "skin", "tone", "t-shirt", "+1"]


def test_transforms():
    img = torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8)
    norm = Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))(img)
    assert torch.allclose(norm, (img.float() / 255 - 0.5) / 0.25)
    g = torch.Generator().manual_seed(0)
    crops = [RandomCrop(2, generator=g)(img) for _ in range(50)]
    assert all(c.shape == img.shape for c in crops) and any(not torch.equal(c, img) for c in crops)
    assert any(torch.equal(c, img) for c in crops)  # the unshifted window is one of the 25 outcomes
    t = train_transform((0.5,) * 3, (0.5,) * 3, image_size=8)
    assert t(img).dtype == torch.float32 and t(img).shape == (3, 8, 8)
    batch = torch.randn(16, 3, 8, 8)
    out = augment_batch(batch, padding=2, generator=torch.Generator().manual_seed(1))
    assert out.shape == batch.shape
    # each output is a shifted (and maybe flipped) copy: its interior appears in the padded input
    for k in range(16):
        padded = torch.nn.functional.pad(batch[k], (2, 2, 2, 2))
        ok = any(torch.equal(padded[:, dy:dy + 8, dx:dx + 8], o) for dy in range(5) for dx in range(5)
                 for o in (out[k], out[k].flip(-1)))
        assert ok
    mean, std = image_mean_std(torch.full((2, 3, 4, 4), 255, dtype=torch.uint8))
    assert mean == (1.0, 1.0, 1.0) and min(std) > 0


def test_longtail_profiles_and_splits():
    assert longtail_targets(5, 100, 100.0, "exp") == [100, 31, 10, 3, 1]
    p = longtail_targets(10, 200, 50.0, "pareto")
    assert p[0] == 200 and p[-1] == 4 and p == sorted(p, reverse=True)
    labels = np.repeat(np.arange(4), [50, 50, 40, 30])
    keep = subsample_longtail(labels, 4, 10.0, seed=0)
    counts = np.bincount(labels[keep], minlength=4).tolist()
    assert counts == [50, 23, 10, 5]  # classes ranked by availability, ties by id
    assert np.array_equal(keep, subsample_longtail(labels, 4, 10.0, seed=0))
    assert not np.array_equal(keep, subsample_longtail(labels, 4, 10.0, seed=1))
    capped = cap_per_class(labels, 4, 7, seed=0)
    assert np.bincount(labels[capped]).tolist() == [7, 7, 7, 7]
    parts = stratified_split(np.array([0] * 10 + [1] * 2 + [2]), {"test": 0.5}, seed=0)
    assert len(parts["test"]) == 6 and np.bincount(np.array([0] * 10 + [1] * 2 + [2])[parts["train"]]).tolist() == [5, 1, 1]
    with pytest.raises(ValueError, match="imbalance_ratio must be >= 1"):
        longtail_targets(3, 10, 0.5)


def test_shot_groups_and_imbalance():
    counts = torch.tensor([500, 101, 100, 20, 19, 1])
    g = shot_groups(counts)
    assert g["many"].tolist() == [0, 1] and g["medium"].tolist() == [2, 3] and g["few"].tolist() == [4, 5]
    assert shot_group_of_classes(counts) == ["many", "many", "medium", "medium", "few", "few"]
    assert imbalance_ratio(counts) == 500.0 and imbalance_ratio([3, 0]) == float("inf")


def test_class_balanced_sampler():
    targets = torch.tensor([0] * 90 + [1] * 9 + [2])
    s = ClassBalancedSampler(targets, num_samples=3000, seed=0)
    drawn = targets[torch.tensor(list(s))]
    frac = torch.bincount(drawn, minlength=3).float() / len(drawn)
    assert torch.allclose(frac, torch.full((3,), 1 / 3), atol=0.04)
    assert list(s) == list(ClassBalancedSampler(targets, num_samples=3000, seed=0))
    s.set_epoch(1)
    assert list(s) != list(ClassBalancedSampler(targets, num_samples=3000, seed=0))
    r0 = list(ClassBalancedSampler(targets, 100, seed=2, num_replicas=2, rank=0))
    r1 = list(ClassBalancedSampler(targets, 100, seed=2, num_replicas=2, rank=1))
    assert len(r0) == len(r1) == 50
    multi = torch.zeros(10, 3)
    multi[:8, 0] = 1
    multi[8:, 1] = 1
    multi[9, 2] = 1
    picks = list(ClassBalancedSampler(multi, 600, seed=0))
    assert sum(p == 9 for p in picks) > 150   # the only class-2 image is drawn for class 2 and half of class 1


def test_cache_atomic_roundtrip(tmp_path, monkeypatch):
    monkeypatch.setenv("PYCMLT_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("PYCMLT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "pycmlt"
    p = save_npz_atomic(tmp_path / "d" / "x.npz", {"a": [1, "ü"]}, arr=np.arange(5, dtype=np.uint8))
    meta, arrays = load_npz(p)
    assert meta == {"a": [1, "ü"]} and arrays["arr"].tolist() == [0, 1, 2, 3, 4]
    assert os.listdir(tmp_path / "d") == ["x.npz"]  # no temporary file left behind


def test_registry():
    assert canonical_name("NUS_WIDE") == "nus-wide" and canonical_name("vireo") == "vireo-food-172"
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        build_dataset("imagenet")
    with pytest.raises(TypeError, match="does not take option.*colour"):
        build_dataset("synthetic", colour="red")
    with pytest.raises(ValueError, match="has splits"):
        build_dataset("nus-wide", "validation", root=".")
    ds = build_dataset({"name": "synthetic", "num_classes": 5, "n_max": 20, "imbalance_ratio": 4}, "val")
    assert ds.split == "val" and len(ds.classes) == 5 and ds.class_counts.tolist() == [20, 14, 10, 7, 5]


def test_load_image_resize_modes_and_exif_orientation(tmp_path):
    from PIL import Image

    from pycmlt.data import ImageLoadError, load_image
    arr = np.zeros((10, 30, 3), dtype=np.uint8)   # 30 wide, 10 high: red | green | blue thirds
    arr[:, :10, 0] = 255
    arr[:, 10:20, 1] = 255
    arr[:, 20:, 2] = 255
    Image.fromarray(arr).save(tmp_path / "a.png")
    crop = load_image(tmp_path / "a.png", 10, "crop")          # the centre square: green
    assert crop.shape == (3, 10, 10) and crop[1].float().mean() > 240 and crop[0].float().mean() < 15
    squash = load_image(tmp_path / "a.png", 6, "squash")       # all three thirds, left to right
    assert squash[0, :, 0].float().mean() > 200 and squash[2, :, -1].float().mean() > 200
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6                                           # "rotate 90 CW to display"
    im.save(tmp_path / "r.jpg", exif=exif, quality=95)
    rot = load_image(tmp_path / "r.jpg", 6, "squash")          # red third now on top
    assert rot[0, 0, :].float().mean() > 180 and rot[2, -1, :].float().mean() > 180
    with pytest.raises(ValueError, match="resize must be one of"):
        load_image(tmp_path / "a.png", 6, "stretch")
    with pytest.raises(ImageLoadError, match="missing.png: no such file"):
        load_image(tmp_path / "missing.png", 6)
