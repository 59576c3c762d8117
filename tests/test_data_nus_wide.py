"""NUS-WIDE loader on a tiny fixture in the official layout."""
import os
import re
from pathlib import Path

import pytest
import torch
from data_fixtures import NUS_CONCEPTS, NUS_TAGS, corrupt_image, make_nus_wide, write_transparent

from pycmlt.data import ImageLoadError, build_dataset, collate
from pycmlt.data.nus_wide import relative_image_path
from pycmlt.data.textfiles import LayoutError

pytestmark = pytest.mark.usefixtures("isolated_cache")  # decoded-image cache in tmp_path


@pytest.fixture(scope="module")
def nus(tmp_path_factory):
    root = tmp_path_factory.mktemp("nus")
    return root, make_nus_wide(root)


def test_relative_paths():
    assert relative_image_path("C:\\ImageData\\Flickr\\actor\\0001_2124494179.jpg") == "actor/0001_2124494179.jpg"
    assert relative_image_path("actor\\0001_2124494179.jpg  ") == "actor/0001_2124494179.jpg"


@pytest.mark.parametrize("split", ["train", "test"])
def test_multi_label_matches_ground_truth(nus, split):
    root, truth = nus
    ds = build_dataset("nus-wide", split, root=root, image_size=16, val_fraction=0)  # the official split
    t = truth[split]
    kept = [i for i, lab in enumerate(t["labels"]) if lab]           # drop_unlabeled=True
    assert ds.multi_label and len(ds) == len(kept)
    assert ds.classes == NUS_CONCEPTS
    for row, i in enumerate(kept):
        assert ds.paths[row] == str(root / "Flickr" / t["rel"][i])
        assert torch.nonzero(ds.targets[row]).flatten().tolist() == t["labels"][i]
        assert sorted(ds.words(row)) == sorted(NUS_TAGS[k] for k in t["tags"][i])
        assert set(ds.vocab.decode(ds.word_ids(row).tolist())) <= set(ds.words(row))
    train_truth = truth["train"]["labels"]
    expected = [sum(c in lab for lab in train_truth) for c in range(len(NUS_CONCEPTS))]
    assert ds.class_counts.tolist() == expected  # positives per class in the TRAIN split
    s = ds[0]
    assert s.image.shape == (3, 16, 16) and s.label.dtype == torch.float32 and s.label.shape == (4,)


def test_vocab_is_train_tags_in_official_order(nus):
    root, truth = nus
    ds = build_dataset("nus-wide", "train", root=root, val_fraction=0)
    used = {k for i, lab in enumerate(truth["train"]["labels"]) if lab for k in truth["train"]["tags"][i]}
    assert list(ds.vocab) == [NUS_TAGS[k] for k in sorted(used)]
    test = build_dataset("nus-wide", "test", root=root)
    assert test.vocab == ds.vocab


def test_all_tags_layout_gives_same_words(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    make_nus_wide(a, per_split_tags=True)
    make_nus_wide(b, per_split_tags=False)   # AllTags1k.txt aligned with a shuffled Imagelist.txt
    for split in ("train", "test"):
        da = build_dataset("nus-wide", split, root=a)
        db = build_dataset("nus-wide", split, root=b)
        assert [da.words(i) for i in range(len(da))] == [db.words(i) for i in range(len(db))]


def test_single_label_subset_and_longtail(nus):
    root, truth = nus
    ds = build_dataset("nus-wide", "train", root=root, mode="single-label", val_fraction=0)
    single = [lab[0] for lab in truth["train"]["labels"] if len(lab) == 1]
    assert not ds.multi_label
    assert ds.classes == [NUS_CONCEPTS[c] for c in sorted(set(single))]
    assert sorted(ds.targets.tolist()) == sorted(ds.classes.index(NUS_CONCEPTS[c]) for c in single)
    natural = ds.class_counts.tolist()
    lt = build_dataset("nus-wide", "train", root=root, mode="single-label", imbalance_ratio=4.0, seed=1,
                       val_fraction=0)
    counts = lt.class_counts.tolist()
    assert max(counts) == max(natural)
    assert counts == sorted(counts, reverse=True) or len(set(counts)) < len(counts)
    assert all(c <= n for c, n in zip(counts, natural))
    again = build_dataset("nus-wide", "train", root=root, mode="single-label", imbalance_ratio=4.0, seed=1,
                          val_fraction=0)
    assert again.paths == lt.paths                   # seeded
    test = build_dataset("nus-wide", "test", root=root, mode="single-label", test_per_class=1)
    assert test.split_counts.max() <= 1
    assert torch.equal(test.class_counts, build_dataset("nus-wide", "train", root=root, mode="single-label").class_counts)


@pytest.mark.parametrize("mode", ["multi-label", "single-label"])
def test_val_split_is_carved_from_the_official_training_images(nus, mode):
    root, _ = nus
    official = build_dataset("nus-wide", "train", root=root, mode=mode, val_fraction=0)
    train = build_dataset("nus-wide", "train", root=root, mode=mode, seed=3)
    val = build_dataset("nus-wide", "val", root=root, mode=mode, seed=3, vocab=train.vocab)
    assert val.split == "val" and len(val) > 0 and not set(train.paths) & set(val.paths)
    assert sorted(train.paths + val.paths) == sorted(official.paths)
    assert build_dataset("nus-wide", "val", root=root, mode=mode, seed=3).paths == val.paths  # seeded
    assert build_dataset("nus-wide", "val", root=root, mode=mode, seed=4).paths != val.paths
    assert torch.equal(val.class_counts, train.class_counts) and val.item_key(0) == val.paths[0]
    if mode == "single-label":  # per class: every class keeps a training image
        assert (train.class_counts > 0).all()
    with pytest.raises(ValueError, match="no val split"):
        build_dataset("nus-wide", "val", root=root, mode=mode, val_fraction=0)


def test_options_checked(nus):
    root, _ = nus
    with pytest.raises(ValueError, match="single-label"):
        build_dataset("nus-wide", "train", root=root, imbalance_ratio=10)
    with pytest.raises(ValueError, match="mode must be one of"):
        build_dataset("nus-wide", "train", root=root, mode="both")
    with pytest.raises(LayoutError, match="no concept list"):
        build_dataset("nus-wide", "train", root=root / "Flickr")
    with pytest.raises(LayoutError, match="is not a directory"):
        build_dataset("nus-wide", "train", root=root / "nowhere")


def test_exclude_concept_tags(nus):
    root, _ = nus
    ds = build_dataset("nus-wide", "train", root=root, exclude_concept_tags=True)
    assert not set(ds.vocab) & set(NUS_CONCEPTS)
    assert all(not set(ds.words(i)) & set(NUS_CONCEPTS) for i in range(len(ds)))


def test_malformed_label_file(tmp_path):
    make_nus_wide(tmp_path)
    f = tmp_path / "Groundtruth" / "TrainTestLabels" / "Labels_sky_Train.txt"
    f.write_text("\n".join(f.read_text().split("\n")[:-3]) + "\n")  # rows missing
    with pytest.raises(LayoutError, match="Labels_sky_Train.txt: expected 40 rows"):
        build_dataset("nus-wide", "train", root=tmp_path)


def test_bad_images(tmp_path):
    make_nus_wide(tmp_path)
    ds = build_dataset("nus-wide", "train", root=tmp_path, image_size=8)
    bad, gone = ds.paths[1], ds.paths[2]
    corrupt_image(Path(bad))
    os.remove(gone)
    with pytest.raises(ImageLoadError, match=re.escape(bad)):
        ds[1]
    with pytest.raises(ImageLoadError, match="no such file"):
        ds[2]
    skipping = build_dataset("nus-wide", "train", root=tmp_path, image_size=8, skip_bad=True)
    loader = torch.utils.data.DataLoader(skipping, batch_size=4, collate_fn=collate, num_workers=2)
    seen, reported = 0, []
    for b in loader:
        seen += len(b)
        reported += b.bad_paths
    assert seen == len(skipping) - 2 and sorted(reported) == sorted([bad, gone])
    bad_found = skipping.verify_images()
    assert set(bad_found) == {bad, gone} and skipping.bad_images.count == 2
    assert len(skipping) == len(ds) - 2 and skipping.class_counts.sum() == skipping.split_counts.sum()
    assert all(isinstance(skipping[i].image, torch.Tensor) for i in range(len(skipping)))


def test_background_option(tmp_path):
    make_nus_wide(tmp_path)
    ds = build_dataset("nus-wide", "train", root=tmp_path, image_size=8, background=(0, 255, 0))
    write_transparent(Path(ds.paths[0]))
    assert ds.raw_image(0)[:, 4, 4].tolist() == [0, 255, 0]
