"""benchmarks/manifest/make_symbols_manifest.py writes a manifest pycmlt reads: classes are Unicode
blocks, words the tokens of each character's name, and no character is drawn in two splits."""
import csv

import numpy as np
import pytest

from benchmarks.manifest import make_symbols_manifest as symbols
from pycmlt.data import build_dataset

pytestmark = pytest.mark.skipif(not symbols.BLOCKS_TXT.is_file(), reason="needs Debian's unicode-data (make test "
                                "installs it)")


def test_blocks_words_and_the_split_by_character(tmp_path):
    found = symbols.characters_by_block()
    assert len(found["Arrows"]) == 112 and min(map(len, found.values())) >= symbols.MIN_CHARACTERS
    assert symbols.name_words("\u21a9") == ["leftwards", "arrow", "hook"]
    for n in (4, 5, 112):
        parts = symbols.split_block([chr(0x2190 + i) for i in range(n)], np.random.default_rng(0))
        assert sorted(sum(parts.values(), [])) == [chr(0x2190 + i) for i in range(n)]
        assert len(parts["test"]) >= 1 and len(parts["val"]) >= 1 and len(parts["train"]) >= 1

    out = tmp_path / "symbols"
    assert symbols.main(["--out", str(out), "--blocks", "Currency Symbols", "Block Elements",
                         "--val-per-class", "3", "--test-per-class", "4"]) == 0
    with open(out / "manifest.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    chars = {s: {r["image"].split("-")[1] for r in rows if r["split"] == s} for s in ("train", "val", "test")}
    assert not (chars["train"] & chars["val"] or chars["train"] & chars["test"] or chars["val"] & chars["test"])
    train = build_dataset("manifest", "train", root=str(out / "manifest.csv"))
    test = build_dataset("manifest", "test", root=str(out / "manifest.csv"))
    assert list(train.classes) == ["Block Elements", "Currency Symbols"] and len(test) == 8
    assert "sign" in train.vocab  # "EURO SIGN", ...
    with pytest.raises(SystemExit):
        symbols.main(["--out", str(out), "--blocks", "Nope"])
