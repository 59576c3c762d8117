"""The synthetic compositional long-tailed dataset."""
import time

import torch

from pycmlt.data import build_dataset, build_datasets, collate, shot_groups
from pycmlt.data.synthetic import COLOURS, SHAPES, TEXTURES


def test_fast_deterministic_and_seed_dependent():
    t = time.perf_counter()
    a = build_datasets("synthetic", ("train", "val", "test"), seed=3)
    assert time.perf_counter() - t < 20
    b = build_datasets("synthetic", ("train", "test"), seed=3)
    for s in ("train", "test"):
        assert torch.equal(a[s].images, b[s].images) and torch.equal(a[s].targets, b[s].targets)
        assert [a[s].words(i) for i in range(len(a[s]))] == [b[s].words(i) for i in range(len(b[s]))]
    c = build_dataset("synthetic", "train", seed=4)
    assert not torch.equal(c.images[:50], a["train"].images[:50])
    assert a["test"].vocab is a["train"].vocab


def test_long_tail_and_balanced_test():
    ds = build_dataset("synthetic", "train", num_classes=20, n_max=300, imbalance_ratio=100)
    counts = ds.class_counts
    assert counts[0] == 300 and counts[-1] == 3 and torch.all(counts[:-1] >= counts[1:])
    assert torch.equal(ds.split_counts, counts)
    groups = shot_groups(counts)
    assert all(len(groups[g]) for g in ("many", "medium", "few"))
    test = build_dataset("synthetic", "test", num_classes=20, n_max=300, imbalance_ratio=100, test_per_class=15)
    assert test.split_counts.tolist() == [15] * 20 and torch.equal(test.class_counts, counts)


def test_classes_are_attribute_triples_sharing_words_with_the_head():
    ds = build_dataset("synthetic", "train", num_classes=30)
    attrs = ds.meta["class_attributes"]
    assert len({tuple(a) for a in attrs}) == 30
    assert all(a[0] in COLOURS and a[1] in SHAPES and a[2] in TEXTURES for a in attrs)
    head = attrs[:9]
    for tail in attrs[9:]:
        assert any(x == y for h in head for x, y in zip(tail, h))
    # words: mostly the attribute words of the class, plus size/position words
    hits = sum(set(attrs[ds.label(i)]) <= set(ds.words(i)) for i in range(len(ds)))
    assert hits > 0.6 * len(ds)
    allowed = set(COLOURS) | set(SHAPES) | set(TEXTURES) | {"small", "large", "left", "right", "top", "bottom"}
    assert set(ds.vocab) <= allowed


def test_images_show_the_class_colour():
    ds = build_dataset("synthetic", "test", num_classes=6, test_per_class=10, image_size=32)
    for i in range(len(ds)):
        colour = ds.meta["class_attributes"][ds.label(i)][0]
        rgb = torch.tensor(COLOURS[colour], dtype=torch.float32)
        pixels = ds.raw_image(i).permute(1, 2, 0).reshape(-1, 3).float()
        close = ((pixels - rgb).abs().max(1).values < 30).sum()
        assert close >= 12, (i, colour)


def test_multi_label_variant_and_loader():
    ds = build_dataset("synthetic", "train", multi_label=True, num_classes=8, n_max=60)
    assert ds.multi_label and ds.targets.shape == (len(ds), 8)
    assert (ds.targets.sum(1) >= 1).all() and (ds.targets.sum(1) == 2).any()
    assert torch.equal(ds.class_counts, ds.targets.sum(0).long())
    loader = torch.utils.data.DataLoader(ds, batch_size=32, shuffle=True, collate_fn=collate)
    b = next(iter(loader))
    assert b.labels.shape == (32, 8) and b.images.shape == (32, 3, 32, 32) and b.images.dtype == torch.float32
    assert b.word_mask.any(1).all()


def test_datasets_pickle_for_spawned_workers():
    import pickle
    ds = build_dataset("synthetic", "test", num_classes=4, test_per_class=3)
    ds.bad_images.add("/x.png", "broken")
    back = pickle.loads(pickle.dumps(ds))
    assert torch.equal(back[5].image, ds[5].image) and back.words(5) == ds.words(5)
    assert back.vocab == ds.vocab and back.bad_images.paths == ["/x.png"]
    back.bad_images.add("/y.png", "broken")
    assert back.bad_images.count == 2
