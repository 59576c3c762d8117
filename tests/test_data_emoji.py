"""emoji-lt: base keys, the split protocol, the real build (when the Debian packages are installed),
determinism, caching and the `pycmlt data` command."""
import os
import time
from collections import defaultdict

import numpy as np
import pytest
import torch

from pycmlt.cli import main
from pycmlt.data import build_dataset, collate, shot_groups
from pycmlt.data.emoji_bases import base_key
from pycmlt.data.emoji_sources import MissingEmojiSources, emoji_sources_available, find_emoji_sources

AVAILABLE, WHY = emoji_sources_available()
needs_packages = pytest.mark.skipif(not AVAILABLE, reason="emoji-lt sources not installed (run "
                                    "scripts/ensure_emoji_packages.sh; `make test` does): " + WHY)


def cps(s):
    return [int(c, 16) for c in s.split()]


def test_base_key_groups_skin_tone_gender_and_hair_variants():
    same = [
        ["1F3C3", "1F3C3 1F3FD", "1F3C3 200D 2640 FE0F", "1F3C3 1F3FF 200D 2642 FE0F"],          # runner
        ["1F9D1 200D 1F4BB", "1F468 200D 1F4BB", "1F469 1F3FB 200D 1F4BB"],                       # technologist
        ["1F9D1", "1F468", "1F469 1F3FE", "1F468 200D 1F9B0", "1F469 1F3FB 200D 1F9B2"],          # person, hair
        ["1F48F", "1F48F 1F3FB", "1F469 200D 2764 FE0F 200D 1F48B 200D 1F468",
         "1F9D1 1F3FB 200D 2764 FE0F 200D 1F48B 200D 1F9D1 1F3FC"],                               # kiss
        ["1F91D", "1F91D 1F3FD", "1FAF1 1F3FB 200D 1FAF2 1F3FF"],                                  # handshake
        ["1F46B", "1F46D 1F3FB", "1F9D1 200D 1F91D 200D 1F9D1", "1F469 1F3FB 200D 1F91D 200D 1F468 1F3FF"],
        ["1F385", "1F936 1F3FC", "1F9D1 200D 1F384"],                                             # Santa / Mx Claus
    ]
    for group in same:
        keys = {base_key(cps(s)) for s in group}
        assert len(keys) == 1, group
    different = ["2640 FE0F", "2642 FE0F", "26A7 FE0F", "1F600", "1F9D1 200D 1F373", "0031 FE0F 20E3"]
    keys = [base_key(cps(s)) for s in different]
    assert len(set(keys)) == len(keys) and all(keys)


def test_missing_sources_say_how_to_install(tmp_path):
    with pytest.raises(MissingEmojiSources, match="apt-get install -y fonts-noto-color-emoji unicode-data unicode-cldr-core"):
        find_emoji_sources(font=str(tmp_path / "NotoColorEmoji.ttf"))


@needs_packages
def test_protocol_plan_is_long_tailed_and_split_by_base():
    from pycmlt.data.emoji_lt import EmojiLTOptions, load_entries, plan_split
    entries = load_entries(find_emoji_sources())
    opts = EmojiLTOptions()
    plan = plan_split(entries, opts)
    classes = plan["classes"]
    assert 95 <= len(classes) <= 105                      # 99 subgroups in Unicode 15.0
    items = plan["items"]
    train_counts = np.bincount([plan["class_of_emoji"][e] for e, _, s in items if s == 0], minlength=len(classes))
    test_counts = np.bincount([plan["class_of_emoji"][e] for e, _, s in items if s == 1], minlength=len(classes))
    assert (test_counts == opts.test_per_class).all() and (train_counts >= opts.train_renderings).all()
    assert train_counts.max() / train_counts.min() > 100
    groups = shot_groups(torch.from_numpy(train_counts))
    assert all(len(groups[g]) > 0 for g in ("many", "medium", "few")), {g: len(v) for g, v in groups.items()}
    train_bases, test_bases = defaultdict(set), defaultdict(set)
    for e, r, s in items:
        cls = plan["class_of_emoji"][e]
        if s == 2:  # val: checked in test_val_split_holds_out_its_own_bases
            continue
        (train_bases if s == 0 else test_bases)[cls].add(base_key(entries[e].codepoints))
        assert (r < opts.train_renderings) == (s == 0)    # test renderings never reuse a train draw
    heldout = {classes.index(c) for c in plan["heldout_rendering_classes"]}
    assert heldout and all(plan["num_bases"][classes[c]] == 1 for c in heldout)
    for c in range(len(classes)):
        if c in heldout:
            assert train_bases[c] == test_bases[c]
        else:
            assert train_bases[c] and test_bases[c] and not train_bases[c] & test_bases[c]
    assert sum(len(e.keywords) > 0 for e in entries) > 0.98 * len(entries)   # CLDR covers nearly all


@needs_packages
def test_val_split_holds_out_its_own_bases_and_leaves_the_test_split_unchanged():
    from pycmlt.data.emoji_lt import SPLIT_CODES, EmojiLTOptions, load_entries, plan_split
    entries = load_entries(find_emoji_sources())
    plan = plan_split(entries, EmojiLTOptions())
    no_val = plan_split(entries, EmojiLTOptions(val_base_fraction=0))
    def of(p, split):
        return [it for it in p["items"] if it[2] == SPLIT_CODES[split]]
    assert of(plan, "test") == of(no_val, "test") and plan["test_bases"] == no_val["test_bases"]
    assert not of(no_val, "val") and not no_val["classes_without_val"]
    sides = defaultdict(lambda: defaultdict(set))      # class -> split -> bases
    for e, _, s in plan["items"]:
        sides[plan["class_of_emoji"][e]][s].add(base_key(entries[e].codepoints))
    classes = plan["classes"]
    for c, split_bases in sides.items():
        train, val, test = (split_bases[SPLIT_CODES[k]] for k in ("train", "val", "test"))
        assert train and not train & val and not val & test
        if classes[c] in plan["classes_without_val"]:  # the documented rule: < 2 bases left after the test split
            assert not val and plan["num_bases"][classes[c]] - len(plan["test_bases"][classes[c]]) < 2
        else:
            assert len(val) >= 1 and set(plan["val_bases"][classes[c]]) == val
    val_counts = np.bincount([plan["class_of_emoji"][e] for e, _, _ in of(plan, "val")], minlength=len(classes))
    assert set(val_counts.tolist()) == {0, 30} and (val_counts == 0).sum() == len(plan["classes_without_val"])
    # train loses exactly the emoji of the val bases (30 val images need not show every one of them)
    val_base_emoji = {k for k, x in enumerate(entries)
                      if base_key(x.codepoints) in plan["val_bases"][classes[plan["class_of_emoji"][k]]]}
    assert {e for e, _, _ in of(plan, "val")} <= val_base_emoji
    assert {e for e, _, _ in of(no_val, "train")} - {e for e, _, _ in of(plan, "train")} == val_base_emoji


@pytest.fixture(scope="module")
def emoji_cache(tmp_path_factory):
    if not AVAILABLE:
        pytest.skip(WHY)
    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYCMLT_CACHE_DIR", str(root))
        t = time.perf_counter()
        train = build_dataset("emoji-lt", "train", verbose=False)
        seconds = time.perf_counter() - t
        yield root, train, seconds


@needs_packages
def test_default_build(emoji_cache):
    root, train, seconds = emoji_cache
    assert seconds < 120  # "under a minute" on a quiet machine; the test machine is shared
    test = build_dataset("emoji-lt", "test", vocab=train.vocab, cache_root=root, verbose=False)
    assert len(train.classes) == len(test.classes) >= 95 and train.image_size == 32
    assert len(test) == 30 * len(test.classes) and len(train) == int(train.class_counts.sum())
    assert test.class_counts.tolist() == train.class_counts.tolist() == train.split_counts.tolist()
    assert all(len(v) for v in shot_groups(train.class_counts).values())
    # no base on both sides outside the flagged classes, and the test emoji are never train emoji there
    flagged = {train.classes.index(c) for c in train.heldout_rendering_classes}
    tr = {(train.label(i), train.info(i)["base"]) for i in range(len(train))}
    te = {(test.label(i), test.info(i)["base"]) for i in range(len(test))}
    assert {c for c, _ in tr & te} <= flagged
    # images: real renderings (not blank), words from CLDR, normalised samples
    img = train.raw_image(0)
    assert img.dtype == torch.uint8 and img.shape == (3, 32, 32) and img.float().std() > 20
    info = test.info(5)
    assert info["emoji"] and info["keywords"] and set(test.words(5)) <= {w for k in info["keywords"] for w in k.lower().split()}
    b = collate([train[i] for i in range(64)])
    assert b.images.shape == (64, 3, 32, 32) and abs(float(b.images.mean())) < 1.5
    assert train.meta["build_seconds"] > 0 and len(train.vocab) > 500
    # val: distinct emoji, never in train or test; item_key names the emoji (renderings share it)
    val = build_dataset("emoji-lt", "val", vocab=train.vocab, cache_root=root, verbose=False)
    assert len(val) == 30 * (len(val.classes) - len(val.meta["classes_without_val"]))
    val_emoji = {val.item_key(i) for i in range(len(val))}
    assert not val_emoji & {train.item_key(i) for i in range(len(train))}
    assert not val_emoji & {test.item_key(i) for i in range(len(test))}
    assert test.item_key(5) == info["emoji"] and len({test.item_key(i) for i in range(len(test))}) < len(test)


@needs_packages
def test_deterministic_renderings_and_cache_reuse(emoji_cache):
    from pycmlt.data.emoji_lt import load_entries
    from pycmlt.data.emoji_render import EmojiRenderer, RenderAugment
    root, train, _ = emoji_cache
    path = train.meta["cache_path"]
    mtime = os.stat(path).st_mtime_ns
    t = time.perf_counter()
    again = build_dataset("emoji-lt", "train", cache_root=root, verbose=False)
    assert time.perf_counter() - t < 10 and os.stat(path).st_mtime_ns == mtime    # loaded, not rebuilt
    assert torch.equal(again.images, train.images)
    # every rendering is a pure function of (seed, emoji, rendering index): re-render a sample of them
    entries = load_entries(find_emoji_sources())
    renderer = EmojiRenderer(find_emoji_sources().font)
    for i in np.random.default_rng(0).choice(len(train), 12, replace=False):
        e, r = int(train._emoji[i]), int(train._rendering[i])
        img = renderer.render(renderer.glyph(entries[e].text), 32, np.random.default_rng([0, e, r]), RenderAugment())
        assert np.array_equal(img, train.images[i].permute(1, 2, 0).numpy())
    assert [p for p in os.listdir(os.path.dirname(path)) if p.endswith(".tmp")] == []


@needs_packages
def test_corrupt_cache_rebuilds_and_seed_changes_the_split(tmp_path):
    from pycmlt.data.emoji_lt import EmojiLTOptions, load_entries, plan_split
    kw = dict(image_size=8, train_renderings=1, test_per_class=2, cache_root=tmp_path, verbose=False)
    a = build_dataset("emoji-lt", "test", seed=1, **kw)
    path = a.meta["cache_path"]
    with open(path, "wb") as f:
        f.write(b"garbage")
    b = build_dataset("emoji-lt", "test", seed=1, **kw)
    assert torch.equal(a.images, b.images) and torch.equal(a.targets, b.targets)
    entries = load_entries(find_emoji_sources())
    plans = [plan_split(entries, EmojiLTOptions(seed=s)) for s in (1, 1, 2)]
    assert plans[0]["items"] == plans[1]["items"] and plans[0]["test_bases"] != plans[2]["test_bases"]


@needs_packages
def test_cli_build_and_info(emoji_cache, capsys, monkeypatch):
    root, _, _ = emoji_cache
    monkeypatch.setenv("PYCMLT_CACHE_DIR", str(root))
    assert main(["data", "build", "emoji-lt"]) == 0
    out = capsys.readouterr().out
    assert "imbalance ratio" in out and "shot groups" in out and str(root) in out
    assert main(["data", "info", "emoji-lt", "--split", "test", "--classes", "2"]) == 0
    out = capsys.readouterr().out
    assert "[test]" in out and "few" in out


def test_cli_info_synthetic_and_errors(capsys):
    assert main(["data", "info", "synthetic", "--option", "num_classes=6", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"num_classes": 6' in out
    assert main(["data", "info", "synthetic", "--option", "nope=1"]) == 2
    assert "does not take option" in capsys.readouterr().err
    assert main(["data", "info", "nus-wide", "--root", "/nonexistent/nus"]) == 2
