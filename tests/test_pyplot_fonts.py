"""pycmlt's figures draw hanzi-lt's class names ("水 water"): a CJK font is a fallback behind the default."""
import logging
import warnings

import pytest

from pycmlt.evaluation.pyplot import CJK_FONT_FILES, cjk_font_file, pyplot


def test_cjk_font_file_is_the_first_existing_candidate(tmp_path):
    present = tmp_path / "b.ttc"
    present.write_bytes(b"")
    assert cjk_font_file([tmp_path / "a.ttc", present, tmp_path / "c.ttc"]) == present
    assert cjk_font_file([tmp_path / "missing.ttc"]) is None


@pytest.mark.skipif(cjk_font_file() is None, reason=f"no CJK font installed ({', '.join(CJK_FONT_FILES)}); "
                                                    "`make test` installs hanzi-lt's fonts")
def test_a_cjk_class_name_is_drawn_without_missing_glyphs(tmp_path, caplog):
    plt = pyplot()
    fig, ax = plt.subplots()
    ax.set_title("水 water")
    ax.set_xlabel("水 in bold", fontweight="bold")
    ax.set_ylabel("the default font, DejaVu Sans, still draws Latin text")
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING, logger="matplotlib.font_manager"):
        warnings.simplefilter("error")  # matplotlib warns "Glyph ... missing from font(s)" otherwise
        fig.savefig(tmp_path / "title.png")
    plt.close(fig)
    assert not [r.getMessage() for r in caplog.records if "findfont" in r.getMessage()]
    assert pyplot() is plt  # configured once
    import matplotlib
    assert matplotlib.rcParams["font.family"][0] == "sans-serif"  # the fallback is appended, not first
