"""The source files of emoji-lt, from three Debian packages, and their parsers.

- fonts-noto-color-emoji: /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf (a CBDT bitmap font)
- unicode-data:           /usr/share/unicode/emoji/emoji-test.txt (every emoji, its group/subgroup)
- unicode-cldr-core:      /usr/share/unicode/cldr/common/annotations/en.xml and
                          /usr/share/unicode/cldr/common/annotationsDerived/en.xml (English keywords)

Each path can be overridden by an argument or an environment variable (PYCMLT_EMOJI_FONT,
PYCMLT_EMOJI_TEST, PYCMLT_CLDR_ANNOTATIONS as an os.pathsep-separated list). Missing files raise
`MissingEmojiSources`, whose message says how to install the packages.
"""
from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

DEBIAN_PACKAGES = ("fonts-noto-color-emoji", "unicode-data", "unicode-cldr-core")
INSTALL_HINT = ("install them with:  sudo apt-get install -y " + " ".join(DEBIAN_PACKAGES)
                + "   (or run scripts/ensure_emoji_packages.sh from the pycmlt repository; `make demo` does it)")

FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf",
    "/usr/share/fonts/noto/NotoColorEmoji.ttf",
    "/usr/share/fonts/google-noto-emoji/NotoColorEmoji.ttf",
)
EMOJI_TEST_CANDIDATES = (
    "/usr/share/unicode/emoji/emoji-test.txt",
    "/usr/share/unicode-data/emoji/emoji-test.txt",
)
CLDR_CANDIDATES = (
    ("/usr/share/unicode/cldr/common/annotations/en.xml", "/usr/share/unicode/cldr/common/annotationsDerived/en.xml"),
)
VS16 = 0xFE0F


class MissingEmojiSources(FileNotFoundError):
    pass


@dataclass(frozen=True)
class EmojiSources:
    font: Path
    emoji_test: Path
    annotations: tuple[Path, ...]  # annotations/en.xml, annotationsDerived/en.xml

    def files(self) -> list[Path]:
        return [self.font, self.emoji_test, *self.annotations]


def _first_existing(candidates) -> Path | None:
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    return None


def find_emoji_sources(font: str | None = None, emoji_test: str | None = None,
                       annotations: list[str] | tuple[str, ...] | None = None) -> EmojiSources:
    """Locate the source files (arguments, then environment variables, then the Debian paths)."""
    missing = []
    font_p = _first_existing([font] if font else [os.environ.get("PYCMLT_EMOJI_FONT"), *FONT_CANDIDATES])
    if font_p is None:
        missing.append(f"Noto Color Emoji font ({font or FONT_CANDIDATES[0]}; package fonts-noto-color-emoji)")
    test_p = _first_existing([emoji_test] if emoji_test else [os.environ.get("PYCMLT_EMOJI_TEST"), *EMOJI_TEST_CANDIDATES])
    if test_p is None:
        missing.append(f"emoji-test.txt ({emoji_test or EMOJI_TEST_CANDIDATES[0]}; package unicode-data)")
    if annotations:
        ann_sets = [tuple(annotations)]
    elif os.environ.get("PYCMLT_CLDR_ANNOTATIONS"):
        ann_sets = [tuple(os.environ["PYCMLT_CLDR_ANNOTATIONS"].split(os.pathsep))]
    else:
        ann_sets = list(CLDR_CANDIDATES)
    ann_p = next((tuple(Path(a) for a in s) for s in ann_sets if all(Path(a).is_file() for a in s)), None)
    if ann_p is None:
        missing.append(f"CLDR English annotations ({', '.join(ann_sets[0])}; package unicode-cldr-core)")
    if missing:
        raise MissingEmojiSources("emoji-lt needs files from the Debian packages "
                                  + ", ".join(DEBIAN_PACKAGES) + "; missing: " + "; ".join(missing)
                                  + ". " + INSTALL_HINT)
    return EmojiSources(font_p, test_p, ann_p)


def emoji_sources_available() -> tuple[bool, str]:
    """(True, "") when the default source files exist and Pillow can lay out emoji sequences
    (its raqm layout, which needs the system FriBiDi library), else (False, the reason)."""
    try:
        sources = find_emoji_sources()
    except MissingEmojiSources as e:
        return False, str(e)
    try:
        from pycmlt.data.emoji_render import EmojiRenderer
        EmojiRenderer(sources.font)
    except (OSError, RuntimeError) as e:
        return False, str(e)
    return True, ""


@dataclass
class EmojiEntry:
    codepoints: tuple[int, ...]
    group: str
    subgroup: str
    name: str
    version: str
    keywords: list[str] = field(default_factory=list)  # CLDR keyword phrases ([] if CLDR lacks the emoji)

    @property
    def text(self) -> str:
        return "".join(map(chr, self.codepoints))

    @property
    def cldr_key(self) -> str:
        """CLDR annotation files write emoji without U+FE0F."""
        return "".join(chr(c) for c in self.codepoints if c != VS16)


_LINE = re.compile(r"^([0-9A-Fa-f ]+?)\s*;\s*([a-z-]+)\s*#\s*\S+\s+E(\d+\.\d+)\s+(.*)$")


def parse_emoji_test(path: str | Path, status: str = "fully-qualified") -> list[EmojiEntry]:
    """Entries of emoji-test.txt with the given status, in file (CLDR) order."""
    group = subgroup = None
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("# group:"):
                group = line.split(":", 1)[1].strip()
            elif line.startswith("# subgroup:"):
                subgroup = line.split(":", 1)[1].strip()
            elif line and not line.startswith("#"):
                m = _LINE.match(line)
                if m is None:
                    raise ValueError(f"{path}: cannot parse line {line!r}")
                if m.group(2) != status:
                    continue
                cps = tuple(int(c, 16) for c in m.group(1).split())
                out.append(EmojiEntry(cps, group or "", subgroup or "", m.group(4).strip(), m.group(3)))
    if not out:
        raise ValueError(f"{path}: no {status} emoji found; is it an emoji-test.txt file?")
    return out


def load_cldr_keywords(paths) -> dict[str, list[str]]:
    """{emoji (without U+FE0F): [keyword phrases]} from CLDR annotation XML files (tts names excluded)."""
    out: dict[str, list[str]] = {}
    for p in paths:
        for a in ET.parse(p).getroot().iter("annotation"):
            if a.get("type") == "tts" or not a.text:
                continue
            cp = a.get("cp", "").replace("\ufe0f", "")
            kws = out.setdefault(cp, [])
            for k in a.text.split("|"):
                k = k.strip()
                if k and k not in kws:
                    kws.append(k)
    return out
