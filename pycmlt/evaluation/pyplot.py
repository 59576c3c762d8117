"""matplotlib for pycmlt's figures: the Agg backend (files, no display) and a font that can draw the
class names of the built-in datasets. hanzi-lt names its classes by a radical and its English name
("水 water"); matplotlib's default DejaVu Sans has no CJK glyph and would draw empty boxes (with a
warning per glyph), so an installed CJK font is added as a per-glyph fallback behind it."""
from __future__ import annotations

import dataclasses
from pathlib import Path

# CJK fonts looked for, first found wins: hanzi-lt's own Hei and Ming fonts (Debian packages
# fonts-wqy-zenhei, fonts-arphic-uming), then Noto CJK where a system has it.
CJK_FONT_FILES = (
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
)
_configured = False


def cjk_font_file(candidates=CJK_FONT_FILES) -> Path | None:
    """The first existing file among candidates, or None."""
    return next((Path(p) for p in candidates if Path(p).is_file()), None)


def _add_fallback_font(path: Path) -> str:
    """Registers the font at path as a normal and a bold face (CJK fonts often declare one weight such
    as 300 or 500, which makes matplotlib log "Failed to find font weight" at every lookup of the
    default weight or of a bold title) and returns its family name. Bold text is drawn in the font's
    one weight."""
    from matplotlib import font_manager, ft2font

    entry = font_manager.ttfFontProperty(ft2font.FT2Font(str(path)))
    font_manager.fontManager.ttflist.extend(dataclasses.replace(entry, weight=w) for w in (400, 700))
    font_manager.fontManager._findfont_cached.cache_clear()
    return entry.name


def pyplot():
    """matplotlib.pyplot on the Agg backend, with a CJK fallback font when one is installed."""
    global _configured
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not _configured:
        _configured = True
        path = cjk_font_file()
        if path is not None:
            family = _add_fallback_font(path)
            current = list(matplotlib.rcParams["font.family"])
            if family not in current:
                matplotlib.rcParams["font.family"] = [*current, family]
    return plt
