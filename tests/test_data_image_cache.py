"""The decoded-image cache of file datasets: hits, invalidation, damage, concurrency, options."""
import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from data_fixtures import manifest_rows, write_csv, write_image
from PIL import Image

import pycmlt.data.image_cache as image_cache_module
from pycmlt.data import ImageLoadError, build_dataset, collate, load_image
from pycmlt.data.image_cache import DecodedImageCache

pytestmark = pytest.mark.usefixtures("isolated_cache")


def _entries(root):
    return sorted(p for p in root.rglob("*") if p.is_file())


def _no_decoding(monkeypatch):
    def fail(*a, **k):
        raise AssertionError("decoded a file that is in the cache")
    monkeypatch.setattr(image_cache_module, "load_image", fail)


def test_second_read_comes_from_the_cache(tmp_path, monkeypatch, isolated_cache):
    rows = manifest_rows(tmp_path)
    write_csv(tmp_path / "m.csv", rows)
    ds = build_dataset("manifest", "train", path=tmp_path / "m.csv", image_size=10)
    first = [ds.raw_image(i) for i in range(len(ds))]
    for i, img in enumerate(first):
        assert torch.equal(img, load_image(ds.paths[i], 10))
    entries = _entries(isolated_cache / "images")
    assert len(entries) == len(ds) and all(p.suffix == ".u8" for p in entries)
    assert entries[0].parent.parent.name == "v1-10px-crop-ffffff"
    _no_decoding(monkeypatch)   # later epochs and later runs read the arrays
    again = build_dataset("manifest", "train", path=tmp_path / "m.csv", image_size=10)
    assert all(torch.equal(again.raw_image(i), first[i]) for i in range(len(ds)))


def test_changed_file_is_decoded_again(tmp_path):
    path = tmp_path / "a.png"
    write_image(path, seed=1)
    cache = DecodedImageCache(8)
    old = cache.load(path)
    write_image(path, seed=2)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # a new mtime even on coarse clocks
    new = cache.load(path)
    assert not torch.equal(new, old) and torch.equal(new, load_image(path, 8))


def test_damaged_entries_are_decoded_again(tmp_path):
    path = tmp_path / "a.png"
    write_image(path, seed=3)
    cache = DecodedImageCache(8)
    good = cache.load(path)
    entry = cache.entry_path(path, os.stat(path))
    data = bytearray(entry.read_bytes())
    data[5] ^= 0xFF                         # flipped bits: the CRC no longer matches
    entry.write_bytes(bytes(data))
    assert torch.equal(cache.load(path), good) and entry.read_bytes() != bytes(data)
    entry.write_bytes(entry.read_bytes()[:50])   # truncated
    assert torch.equal(cache.load(path), good) and len(entry.read_bytes()) == 3 * 8 * 8 + 4


def test_bad_images_are_reported_by_path_and_not_stored(tmp_path, isolated_cache):
    (tmp_path / "bad.png").write_bytes(b"not an image")
    cache = DecodedImageCache(8)
    for _ in range(2):
        with pytest.raises(ImageLoadError, match="bad.png"):
            cache.load(tmp_path / "bad.png")
    with pytest.raises(ImageLoadError, match="missing.png: no such file"):
        cache.load(tmp_path / "missing.png")
    with pytest.raises(ImageLoadError, match="is a directory"):
        cache.load(tmp_path)
    assert _entries(isolated_cache) == []


def test_settings_key_the_cache(tmp_path, isolated_cache):
    alpha = np.zeros((12, 12), np.uint8)
    alpha[3:9, 3:9] = 255
    Image.fromarray(np.dstack([alpha * 0] * 3 + [alpha]), "RGBA").save(tmp_path / "t.png")
    white = DecodedImageCache(12).load(tmp_path / "t.png")
    black = DecodedImageCache(12, background="black").load(tmp_path / "t.png")
    small = DecodedImageCache(6, resize="squash").load(tmp_path / "t.png")
    assert white[:, 0, 0].tolist() == [255] * 3 and black[:, 0, 0].tolist() == [0] * 3 and small.shape == (3, 6, 6)
    assert {p.parent.parent.name for p in _entries(isolated_cache)} == {
        "v1-12px-crop-ffffff", "v1-12px-crop-000000", "v1-6px-squash-ffffff"}


def test_concurrent_threads_and_workers_agree(tmp_path, isolated_cache):
    rows = manifest_rows(tmp_path, n=16)
    write_csv(tmp_path / "m.csv", rows)
    ds = build_dataset("manifest", "train", path=tmp_path / "m.csv", image_size=8, augment=False)
    truth = [load_image(p, 8) for p in ds.paths]
    cache = DecodedImageCache(8)
    with ThreadPoolExecutor(8) as pool:   # many readers and writers of the same entries at once
        results = list(pool.map(lambda k: (k % len(ds), cache.load(ds.paths[k % len(ds)])), range(8 * len(ds))))
    assert all(torch.equal(img, truth[k]) for k, img in results)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, collate_fn=collate)
    images = torch.cat([b.images for b in loader])
    assert torch.allclose(images, torch.stack([ds.transform(t) for t in truth]))
    assert not [p for p in isolated_cache.rglob("*.tmp")]   # every entry was renamed into place


def test_option_off_and_cache_root(tmp_path, isolated_cache):
    rows = manifest_rows(tmp_path)
    write_csv(tmp_path / "m.csv", rows)
    off = build_dataset("manifest", "train", path=tmp_path / "m.csv", image_size=8, image_cache=False)
    off.raw_image(0)
    assert off.image_cache is None and _entries(isolated_cache) == []
    mine = build_dataset("manifest", "train", path=tmp_path / "m.csv", image_size=8, cache_root=str(tmp_path / "c"))
    mine.verify_images()   # verification decodes every image once and fills the cache
    assert len(_entries(tmp_path / "c")) == len(mine) and _entries(isolated_cache) == []
    with pytest.raises(ValueError, match="image_cache must be True or False"):
        build_dataset("manifest", "train", path=tmp_path / "m.csv", image_cache="no")


def test_unwritable_cache_warns_once_and_still_loads(tmp_path, monkeypatch):
    write_image(tmp_path / "a.png", seed=4)
    write_image(tmp_path / "b.png", seed=5)
    (tmp_path / "blocked").write_text("a file where the cache folder should be")
    monkeypatch.setattr(image_cache_module, "_warned_unwritable", set())
    cache = DecodedImageCache(8, root=tmp_path / "blocked")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        imgs = [cache.load(tmp_path / n) for n in ("a.png", "b.png")]
    assert torch.equal(imgs[0], load_image(tmp_path / "a.png", 8))
    assert [str(w.message).startswith("cannot write the decoded-image cache") for w in caught] == [True]


def test_failed_rename_leaves_nothing_behind(tmp_path, monkeypatch, isolated_cache):
    write_image(tmp_path / "a.png", seed=6)
    monkeypatch.setattr(image_cache_module, "_warned_unwritable", set())

    def no_replace(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(image_cache_module.os, "replace", no_replace)
    with pytest.warns(UserWarning, match="disk full"):
        img = DecodedImageCache(8).load(tmp_path / "a.png")
    assert torch.equal(img, load_image(tmp_path / "a.png", 8)) and _entries(isolated_cache) == []
