"""VireoFood-172 loader on a tiny fixture in the official layout."""
from pathlib import Path

import pytest
import torch
from data_fixtures import VIREO_FOODS, VIREO_INGREDIENTS, make_vireo, truncate_image, write_transparent

from pycmlt.data import ImageLoadError, build_dataset, collate
from pycmlt.data.textfiles import LayoutError

pytestmark = pytest.mark.usefixtures("isolated_cache")  # decoded-image cache in tmp_path


@pytest.fixture(scope="module")
def vireo(tmp_path_factory):
    root = tmp_path_factory.mktemp("vireo")
    return root, make_vireo(root)


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_splits_labels_words(vireo, split):
    root, truth = vireo
    ds = build_dataset("vireo-food-172", split, root=root, image_size=12)
    rows = truth[split]
    assert len(ds) == len(rows) and ds.classes == VIREO_FOODS and not ds.multi_label
    for i, (rel, c, ing) in enumerate(rows):
        assert ds.paths[i] == str(root / "ready_chinese_food" / rel.lstrip("/"))
        assert ds.label(i) == c
        assert ds.words(i) == [VIREO_INGREDIENTS[j] for j in ing]
    assert ds.class_counts.tolist() == [12, 6, 3]
    assert list(ds.vocab) == [w for w in VIREO_INGREDIENTS if any(w in [VIREO_INGREDIENTS[j] for j in r[2]]
                                                                   for r in truth["train"])]
    b = collate([ds[i] for i in range(len(ds))])
    assert b.images.shape == (len(ds), 3, 12, 12) and b.labels.dtype == torch.long
    assert [ds.vocab.decode(w) for w in b.word_lists()] == [ds.words(i) for i in range(len(ds))]


def test_longtail_subsample_and_cap(vireo):
    root, _ = vireo
    lt = build_dataset("vireo-food-172", "train", root=root, imbalance_ratio=6.0, seed=3)
    assert lt.class_counts.tolist() == [12, 4, 2]   # exp profile floor(12 * 6^(-r/2)) = 12, 4, 2
    test = build_dataset("vireo-food-172", "test", root=root, imbalance_ratio=6.0, seed=3, test_per_class=2)
    assert test.split_counts.tolist() == [2, 2, 2] and test.class_counts.tolist() == [12, 4, 2]


def test_layout_errors(tmp_path):
    make_vireo(tmp_path)
    lines = (tmp_path / "SplitAndIngreLabel" / "IngreLabel.txt").read_text().splitlines()
    (tmp_path / "SplitAndIngreLabel" / "IngreLabel.txt").write_text("\n".join(lines[1:]) + "\n")
    with pytest.raises(LayoutError, match="no ingredient row"):
        build_dataset("vireo-food-172", "train", root=tmp_path)
    (tmp_path / "SplitAndIngreLabel" / "TE.txt").unlink()
    with pytest.raises(LayoutError, match="TE.txt"):
        build_dataset("vireo-food-172", "test", root=tmp_path)
    with pytest.raises(ValueError, match="has splits"):
        build_dataset("vireo-food-172", "dev", root=tmp_path)


def test_truncated_jpeg(tmp_path):
    make_vireo(tmp_path)
    ds = build_dataset("vireo-food-172", "train", root=tmp_path, image_size=8)
    truncate_image(Path(ds.paths[0]))
    with pytest.raises(ImageLoadError, match="1_1.jpg"):
        ds[0]
    skip = build_dataset("vireo-food-172", "train", root=tmp_path, image_size=8, skip_bad=True)
    b = collate([skip[i] for i in range(4)])
    assert len(b) == 3 and b.bad_paths == [ds.paths[0]] and b.indices.tolist() == [1, 2, 3]
    assert skip.bad_images.count == 1 and skip.bad_images.to_dict()["paths"] == [ds.paths[0]]


def test_background_option(tmp_path):
    make_vireo(tmp_path)
    ds = build_dataset("vireo-food-172", "test", root=tmp_path, image_size=8, background="black")
    write_transparent(Path(ds.paths[0]))
    assert ds.raw_image(0).max() == 0
