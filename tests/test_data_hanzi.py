"""hanzi-lt: definition words, the Unihan parsers, the split-by-character protocol (on made-up and on
the real Unihan data), the held-out font, glyph coverage, a small real build, caching and the CLI."""
import bz2
import os
import zipfile
from collections import Counter, defaultdict

import numpy as np
import pytest
import torch
from PIL import Image

from pycmlt.cli import main
from pycmlt.data import build_dataset, shot_groups
from pycmlt.data.emoji_render import RenderAugment, render_glyph
from pycmlt.data.hanzi_lt import (SPLIT_CODES, HanziLTOptions, definition_words, load_hanzi_lt, plan_split,
                                  split_sizes)
from pycmlt.data.hanzi_sources import (FONT_NAMES, HanziEntry, MissingHanziSources, find_hanzi_sources,
                                       font_coverage, hanzi_sources_available, load_entries, radical_names)

AVAILABLE, WHY = hanzi_sources_available()
needs_packages = pytest.mark.skipif(not AVAILABLE, reason="hanzi-lt sources not installed (run "
                                    "scripts/ensure_hanzi_packages.sh; `make test` does): " + WHY)
TRAIN, VAL, TEST = SPLIT_CODES["train"], SPLIT_CODES["val"], SPLIT_CODES["test"]


def test_definition_words_drop_stop_words_numbers_radical_and_cross_references():
    assert definition_words("pigeon, dove") == ["pigeon", "dove"]
    assert definition_words("water, liquid, lotion, juice; Kangxi radical 85") == ["water", "liquid", "lotion", "juice"]
    assert definition_words("wide, extensive, broad; rad. 53") == ["wide", "extensive", "broad"]
    assert definition_words("(same as U+4E18 丘) hillock or mound") == ["hillock", "mound"]
    assert definition_words("to be the 3rd of the 12 branches; 3.3 meters") == ["branches", "meters"]
    assert definition_words("one's own; a river in Jiāngxī; place name (深水埗)") == \
        ["own", "river", "jiāngxī", "place", "name"]
    assert definition_words("used with “pong” (U+4E53 乓) for “ping pong”") == ["pong", "ping"]


def test_split_sizes_leave_a_training_character_in_every_class():
    opts = HanziLTOptions()
    assert split_sizes(1, opts) == (0, 0)        # val and test: held-out renderings
    assert split_sizes(2, opts) == (0, 1)        # val: held-out renderings
    assert split_sizes(3, opts) == (1, 1)
    assert split_sizes(100, opts) == (10, 20)
    for n in range(1, 500):
        n_val, n_test = split_sizes(n, opts)
        assert n - n_val - n_test >= 1


def test_options_are_checked():
    with pytest.raises(ValueError, match="heldout_font"):
        HanziLTOptions(heldout_font="song")
    with pytest.raises(ValueError, match="heldout_font"):
        HanziLTOptions(fonts=("ukai",), heldout_font="ukai")
    with pytest.raises(ValueError, match="train_fonts_per_char must be in \\[1, 3\\]"):
        HanziLTOptions(heldout_font="ukai", train_fonts_per_char=4)
    with pytest.raises(ValueError, match="fonts must be distinct"):
        HanziLTOptions(fonts=("uming", "uming"))
    with pytest.raises(ValueError, match="val_fraction \\+ test_fraction"):
        HanziLTOptions(val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ValueError, match="test_per_class"):
        HanziLTOptions(test_per_class=0)
    with pytest.raises(ValueError, match="hanzi-lt has splits"):
        load_hanzi_lt("dev")


def _made_up(sizes: dict[int, int]) -> list[HanziEntry]:
    """Entries with `sizes[radical]` characters per radical (code points from U+4E00 on)."""
    out, cp = [], 0x4E00
    for radical, n in sizes.items():
        for _ in range(n):
            out.append(HanziEntry(chr(cp), radical, 1, f"meaning {cp}", len(out) + 1))
            cp += 1
    return out


def _check_plan(entries, opts, coverage, plan):
    """The protocol's invariants: returns {split code: set of characters}."""
    chars = defaultdict(set)
    per_class = defaultdict(Counter)
    draws = set()
    for k, f, r, s in plan["items"]:
        font = opts.fonts[f]
        assert ord(entries[k].char) in coverage[font], (entries[k].char, font)   # only glyphs the font has
        assert (r < opts.train_fonts_per_char) == (s == TRAIN)
        assert (k, r) not in draws                                                # no draw used twice
        draws.add((k, r))
        chars[s].add(k)
        per_class[s][plan["class_of_char"][k]] += 1
    n_classes = len(plan["radicals"])
    assert set(per_class[VAL].values()) == {opts.val_per_class} and len(per_class[VAL]) == n_classes
    assert set(per_class[TEST].values()) == {opts.test_per_class} and len(per_class[TEST]) == n_classes
    flagged = {s: set(v) for s, v in plan["heldout_rendering_classes"].items()}
    for s, name in ((VAL, "val"), (TEST, "test")):
        leaked = {plan["class_of_char"][k] for k in chars[s] & chars[TRAIN]}
        assert leaked <= flagged[name]                                           # only classes too small to split
        for c in flagged[name]:
            assert {k for k in chars[s] if plan["class_of_char"][k] == c} <= chars[TRAIN]
    return chars


def test_plan_splits_by_character_on_made_up_entries():
    entries = _made_up({1: 40, 2: 12, 3: 3, 4: 2, 5: 1})
    everything = frozenset(ord(e.char) for e in entries)
    coverage = {f: everything for f in FONT_NAMES}
    coverage["ukai"] = frozenset(ord(e.char) for e in entries[::2])             # ukai lacks every other one
    opts = HanziLTOptions(val_per_class=4, test_per_class=10, train_fonts_per_char=2)
    plan = plan_split(entries, opts, coverage)
    chars = _check_plan(entries, opts, coverage, plan)
    assert plan["heldout_rendering_classes"] == {"val": [3, 4], "test": [4]}
    # classes with 3+ characters: val and test characters are distinct and never rendered in training
    big = {k for k, e in enumerate(entries) if e.radical <= 3}
    assert not chars[VAL] & chars[TEST] & big and not (chars[VAL] | chars[TEST]) & chars[TRAIN] & big
    # training: 2 distinct fonts per character (1 when only one training font has it: none here)
    fonts_of = defaultdict(list)
    for k, f, r, s in plan["items"]:
        if s == TRAIN:
            fonts_of[k].append(f)
    assert all(len(v) == 2 == len(set(v)) for v in fonts_of.values())
    # test round robin: every test character of a class before one is repeated
    first = [k for k, f, r, s in plan["items"] if s == TEST and plan["class_of_char"][k] == 0]
    assert split_sizes(40, opts)[1] == 8 and len(set(first[:8])) == 8 and set(first[8:]) <= set(first[:8])
    assert plan_split(entries, opts, coverage)["items"] == plan["items"]            # deterministic
    other_seed = HanziLTOptions(seed=1, val_per_class=4, test_per_class=10, train_fonts_per_char=2)
    assert plan_split(entries, other_seed, coverage)["items"] != plan["items"]


def test_heldout_font_is_never_trained_on_and_is_the_whole_test():
    entries = _made_up({1: 30, 2: 6, 3: 1})
    everything = frozenset(ord(e.char) for e in entries)
    coverage = {f: everything for f in FONT_NAMES}
    opts = HanziLTOptions(heldout_font="ukai", val_per_class=3, test_per_class=5)
    plan = plan_split(entries, opts, coverage)
    _check_plan(entries, opts, coverage, plan)
    held = opts.fonts.index("ukai")
    fonts = {s: {f for _, f, _, s2 in plan["items"] if s2 == s} for s in (TRAIN, VAL, TEST)}
    assert held not in fonts[TRAIN] and held not in fonts[VAL] and fonts[TEST] == {held}
    plain = plan_split(entries, HanziLTOptions(val_per_class=3, test_per_class=5), coverage)
    assert plan["split_of_char"] == plain["split_of_char"]                          # same characters held out


def _unihan_dir(tmp_path, kind: str):
    """A tiny Unicode folder: five characters, one without a definition, one not in the table."""
    rows = {
        "Unihan_OtherMappings.txt": ["U+6C34\tkTGH\t2013:343", "U+4E00\tkTGH\t2013:1", "U+7E9F\tkTGH\t2013:20",
                                     "U+4E8C\tkTGH\t2013:2"],
        "Unihan_IRGSources.txt": ["U+4E00\tkRSUnicode\t1.0", "U+6C34\tkRSUnicode\t85.0 3.3", "U+7E9F\tkRSUnicode\t120'.0",
                                  "U+4E8C\tkRSUnicode\t7.0", "U+4E01\tkRSUnicode\t1.1"],
        "Unihan_Readings.txt": ["U+4E00\tkDefinition\tone; a, an; alone", "U+6C34\tkDefinition\twater, liquid",
                                "U+7E9F\tkDefinition\tsilk; radical 120", "U+4E01\tkDefinition\tmale adult"],
    }
    folder = tmp_path / kind
    folder.mkdir()
    for name, lines in rows.items():
        text = "# " + name + "\n#\n" + "\n".join(lines) + "\n"
        if kind == "plain":
            (folder / name).write_text(text, encoding="utf-8")
        elif kind == "bz2":
            (folder / (name + ".bz2")).write_bytes(bz2.compress(text.encode()))
        else:
            with zipfile.ZipFile(folder / "Unihan.zip", "a") as z:
                z.writestr(name, text)
    (folder / "CJKRadicals.txt").write_text("# CJKRadicals-15.0.0.txt\n1; 2F00; 4E00\n7; 2F06; 4E8C\n85; 2F54; 6C34\n"
                                            "120; 2F77; 7CF8\n120'; 2EB0; 7E9F\n", encoding="utf-8")
    (folder / "UnicodeData.txt").write_text("2F00;KANGXI RADICAL ONE;So;0;ON;<compat> 4E00;;;;N;;;;;\n"
                                            "2F54;KANGXI RADICAL WATER;So;0;ON;<compat> 6C34;;;;N;;;;;\n"
                                            "2F77;KANGXI RADICAL SILK;So;0;ON;<compat> 7CF8;;;;N;;;;;\n", encoding="utf-8")
    return folder


@pytest.mark.parametrize("kind", ["plain", "bz2", "zip"])
def test_unihan_parsers_read_plain_bz2_and_zip(tmp_path, kind):
    folder = _unihan_dir(tmp_path, kind)
    sources = find_hanzi_sources(unicode_dir=str(folder), fonts=())
    entries = load_entries(sources)
    assert [(e.char, e.radical, e.tgh) for e in entries] == [("一", 1, 1), ("纟", 120, 20), ("水", 85, 343)]
    assert definition_words(entries[1].definition) == ["silk"]
    names = radical_names(sources)
    assert names[85] == ("水", "water") and names[120] == ("糸", "silk") and names[7] == ("二", "radical 7")
    assert "120'" not in names and 120 in names


def test_missing_sources_say_how_to_install(tmp_path):
    with pytest.raises(MissingHanziSources, match="apt-get install -y unicode-data fonts-arphic-uming"):
        find_hanzi_sources(unicode_dir=str(tmp_path))
    folder = _unihan_dir(tmp_path, "plain")
    with pytest.raises(MissingHanziSources, match="the ukai font .*nope.ttc \\(package fonts-arphic-ukai\\)"):
        find_hanzi_sources(unicode_dir=str(folder), font_paths={"ukai": str(tmp_path / "nope.ttc")}, fonts=("ukai",))
    with pytest.raises(ValueError, match="fonts must be among"):
        find_hanzi_sources(unicode_dir=str(folder), fonts=("song",))


def test_mask_glyphs_are_drawn_in_the_contrasting_ink():
    mask = Image.new("L", (40, 40), 0)
    mask.paste(255, (10, 10, 30, 30))
    still = dict(max_rotation=0, max_shift=0)
    white = render_glyph(mask, 16, np.random.default_rng(0), RenderAugment(background="white", **still))
    assert tuple(white[0, 0]) == (255, 255, 255) and tuple(white[8, 8]) == (0, 0, 0)

    def luma(rgb):
        return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]

    for seed in range(20):  # random backgrounds: the ink is black or white, far from the background
        img = render_glyph(mask, 16, np.random.default_rng(seed), RenderAugment(**still)).astype(int)
        background, ink = img[0, 0], img[8, 8]
        assert tuple(ink) in {(0, 0, 0), (255, 255, 255)} and abs(luma(background) - luma(ink)) >= 127


# ---------------------------------------------------------------- the real sources (Debian packages)

@pytest.fixture(scope="module")
def real():
    if not AVAILABLE:
        pytest.skip(WHY)
    sources = find_hanzi_sources()
    return load_entries(sources), {f: font_coverage(p) for f, p in sources.fonts.items()}


@needs_packages
def test_real_plan_is_a_long_tail_split_by_character(real):
    entries, coverage = real
    assert 7600 <= len(entries) <= 7800                                    # 7,727 in Unicode 15.0
    opts = HanziLTOptions()
    plan = plan_split(entries, opts, coverage)
    chars = _check_plan(entries, opts, coverage, plan)
    sizes = sorted(plan["num_chars"])
    assert 210 <= len(plan["radicals"]) <= 214 and sizes[-1] > 400 and sizes[0] == 1
    train_counts = torch.bincount(torch.tensor([plan["class_of_char"][k] for k, _, _, s in plan["items"] if s == TRAIN]),
                                  minlength=len(plan["radicals"]))
    assert int(train_counts.max()) / int(train_counts.min()) > 100
    groups = shot_groups(train_counts)
    assert all(len(groups[g]) > 10 for g in ("many", "medium", "few")), {g: len(v) for g, v in groups.items()}
    assert len(chars[TEST] - chars[TRAIN]) > 1000 and len(chars[VAL] - chars[TRAIN]) > 400
    # the size chosen for 6-minute runs: one image per training character (the default, one font each)
    assert int(train_counts.sum()) == len(chars[TRAIN]) and 4500 < int(train_counts.sum()) < 6500
    assert len(plan["heldout_rendering_classes"]["test"]) == sum(n == 1 for n in plan["num_chars"])


@needs_packages
def test_coverage_excludes_glyphs_that_the_cmap_lists_but_are_empty(real):
    from fontTools.ttLib import TTFont
    _, coverage = real
    path = find_hanzi_sources().fonts["ukai"]
    with TTFont(str(path), fontNumber=0, lazy=True) as font:
        cmap = font.getBestCmap()
    assert 0x39D0 in cmap and 0x39D0 not in coverage["ukai"]               # 㧐: an empty glyph in ukai
    assert 0x6C34 in coverage["ukai"]


@pytest.fixture(scope="module")
def small_build(tmp_path_factory):
    """A small real build: 16 px, one font per training character, 2 val and 3 test images per class."""
    if not AVAILABLE:
        pytest.skip(WHY)
    root = tmp_path_factory.mktemp("cache")
    kw = dict(image_size=16, train_fonts_per_char=1, val_per_class=2, test_per_class=3, cache_root=root, verbose=False)
    train = build_dataset("hanzi-lt", "train", **kw)
    splits = {"train": train, **{s: build_dataset("hanzi-lt", s, vocab=train.vocab, **kw) for s in ("val", "test")}}
    return root, kw, splits


@needs_packages
def test_small_build_splits_info_and_item_keys(small_build):
    _, _, ds = small_build
    train, val, test = ds["train"], ds["val"], ds["test"]
    assert len(train.classes) == len(test.classes) >= 210 and train.image_size == 16
    assert len(val) == 2 * len(val.classes) and len(test) == 3 * len(test.classes)
    assert test.class_counts.tolist() == train.split_counts.tolist()
    assert train.meta["flip_ok"] is False and "水 water" in train.classes
    train_chars = {train.item_key(i) for i in range(len(train))}
    for split in (val, test):
        flagged = {split.classes.index(c) for c in split.heldout_rendering_classes}
        for i in range(len(split)):
            info = split.info(i)
            assert info["char"] == split.item_key(i) and info["font"] in FONT_NAMES
            assert info["char"] not in train_chars or split.label(i) in flagged
    coverage = {f: font_coverage(p) for f, p in find_hanzi_sources().fonts.items()}
    for split in ds.values():
        assert all(ord(split.info(i)["char"]) in coverage[split.info(i)["font"]] for i in range(0, len(split), 7))
    info = test.info(0)
    assert set(test.words(0)) == set(definition_words(info["definition"]))
    img = train.raw_image(0)
    assert img.dtype == torch.uint8 and img.shape == (3, 16, 16) and img.float().std() > 20


@needs_packages
def test_renderings_are_deterministic_and_the_cache_is_reused(small_build):
    from pycmlt.data.hanzi_render import HanziRenderer
    root, kw, ds = small_build
    train = ds["train"]
    path = train.meta["cache_path"]
    mtime = os.stat(path).st_mtime_ns
    again = build_dataset("hanzi-lt", "train", **kw)
    assert os.stat(path).st_mtime_ns == mtime and torch.equal(again.images, train.images)
    renderers = {f: HanziRenderer(p, f) for f, p in find_hanzi_sources().fonts.items()}
    for i in np.random.default_rng(0).choice(len(train), 8, replace=False):
        info = train.info(i)
        rng = np.random.default_rng([0, int(train._char[i]), info["rendering"]])
        img = renderers[info["font"]].render(info["char"], 16, rng)
        assert np.array_equal(img, train.images[i].permute(1, 2, 0).numpy())
    with pytest.raises(KeyError, match="has no glyph"):
        renderers["ukai"].glyph("\u39d0")
    assert [p for p in os.listdir(os.path.dirname(path)) if p.endswith(".tmp")] == []


@needs_packages
def test_cli_build_reports_and_bad_options_fail_cleanly(small_build, capsys):
    root, kw, _ = small_build
    args = ["data", "build", "hanzi-lt", "--size", "16", "--cache-dir", str(root), "--option", "train_fonts_per_char=1",
            "--option", "val_per_class=2", "--option", "test_per_class=3"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert str(root) in out and "imbalance ratio" in out
    assert main(["data", "build", "hanzi-lt", "--cache-dir", str(root), "--option", "heldout_font=song"]) == 2
    assert "heldout_font must be one of fonts" in capsys.readouterr().err
