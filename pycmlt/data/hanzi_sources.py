"""The source files of hanzi-lt, from five Debian packages, and their parsers.

- unicode-data:        /usr/share/unicode/Unihan_*.txt.bz2 (kTGH: the 8,105 characters of the Table of
                       General Standard Chinese Characters; kRSUnicode: radical.strokes; kDefinition:
                       English definition), CJKRadicals.txt (radical number -> character) and
                       UnicodeData.txt (the radicals' names, "KANGXI RADICAL WATER")
- fonts-arphic-uming:  /usr/share/fonts/truetype/arphic/uming.ttc        (Ming)
- fonts-arphic-ukai:   /usr/share/fonts/truetype/arphic/ukai.ttc         (Kai, brush)
- fonts-wqy-zenhei:    /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc      (Hei, sans serif)
- fonts-hanazono:      /usr/share/fonts/truetype/hanazono/HanaMinA.ttf   (Mincho)

The Unihan files are read plain (`.txt`), bz2-compressed (`.txt.bz2`, Debian) or from `Unihan.zip`
(unicode.org). The Unicode folder can be given as an argument or PYCMLT_UNICODE_DIR, each font as
an argument. Missing files raise `MissingHanziSources`, whose message says how to install them.
"""
from __future__ import annotations

import bz2
import io
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from fontTools.ttLib import TTFont

FONT_PACKAGES = {  # font name -> (Debian package, file, style)
    "uming": ("fonts-arphic-uming", "/usr/share/fonts/truetype/arphic/uming.ttc", "Ming"),
    "ukai": ("fonts-arphic-ukai", "/usr/share/fonts/truetype/arphic/ukai.ttc", "Kai (brush)"),
    "zenhei": ("fonts-wqy-zenhei", "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc", "Hei (sans serif)"),
    "hanazono": ("fonts-hanazono", "/usr/share/fonts/truetype/hanazono/HanaMinA.ttf", "Mincho"),
}
FONT_NAMES = tuple(FONT_PACKAGES)
DEBIAN_PACKAGES = ("unicode-data", *(p for p, _, _ in FONT_PACKAGES.values()))
INSTALL_HINT = ("install them with:  sudo apt-get install -y " + " ".join(DEBIAN_PACKAGES)
                + "   (or run scripts/ensure_hanzi_packages.sh from the pycmlt repository; `make test` does it)")
UNICODE_DIR_CANDIDATES = ("/usr/share/unicode", "/usr/share/unicode-data")
UNIHAN_FILES = {"kTGH": "Unihan_OtherMappings.txt", "kRSUnicode": "Unihan_IRGSources.txt",
                "kDefinition": "Unihan_Readings.txt"}


class MissingHanziSources(FileNotFoundError):
    pass


@dataclass(frozen=True)
class HanziSources:
    unihan: tuple[Path, ...]  # the files holding kTGH, kRSUnicode, kDefinition (or one Unihan.zip)
    cjk_radicals: Path
    unicode_data: Path
    fonts: dict[str, Path]    # font name -> file, in FONT_NAMES order

    def files(self) -> list[Path]:
        return [*self.unihan, self.cjk_radicals, self.unicode_data, *self.fonts.values()]


def _unihan_files(folder: Path) -> tuple[Path, ...] | None:
    found = []
    for name in dict.fromkeys(UNIHAN_FILES.values()):
        path = next((folder / (name + ext) for ext in ("", ".bz2") if (folder / (name + ext)).is_file()), None)
        if path is None:
            break
        found.append(path)
    else:
        return tuple(found)
    return (folder / "Unihan.zip",) if (folder / "Unihan.zip").is_file() else None


def find_hanzi_sources(unicode_dir: str | None = None, font_paths: dict[str, str] | None = None,
                       fonts=FONT_NAMES) -> HanziSources:
    """Locate the source files (arguments, then PYCMLT_UNICODE_DIR, then the Debian paths) of the
    Unicode data and of the fonts named in `fonts`."""
    unknown = [f for f in [*fonts, *(font_paths or {})] if f not in FONT_PACKAGES]
    if unknown:
        raise ValueError(f"fonts must be among {', '.join(FONT_NAMES)}; got {', '.join(map(repr, unknown))}")
    missing = []
    folders = [unicode_dir] if unicode_dir else [os.environ.get("PYCMLT_UNICODE_DIR"), *UNICODE_DIR_CANDIDATES]
    folders = [Path(f) for f in folders if f]
    unihan = next((u for u in map(_unihan_files, folders) if u), None)
    if unihan is None:
        missing.append(f"the Unihan files {', '.join(dict.fromkeys(UNIHAN_FILES.values()))} (.bz2) or Unihan.zip in "
                       f"{folders[0]} (package unicode-data)")
    extra = {}
    for name in ("CJKRadicals.txt", "UnicodeData.txt"):
        extra[name] = next((f / name for f in folders if (f / name).is_file()), None)
        if extra[name] is None:
            missing.append(f"{folders[0] / name} (package unicode-data)")
    font_files = {}
    for name in fonts:
        package, default, _ = FONT_PACKAGES[name]
        path = Path((font_paths or {}).get(name, default))
        if path.is_file():
            font_files[name] = path
        else:
            missing.append(f"the {name} font {path} (package {package})")
    if missing:
        raise MissingHanziSources("hanzi-lt needs files from the Debian packages " + ", ".join(DEBIAN_PACKAGES)
                                  + "; missing: " + "; ".join(missing) + ". " + INSTALL_HINT)
    return HanziSources(unihan, extra["CJKRadicals.txt"], extra["UnicodeData.txt"], font_files)


def hanzi_sources_available() -> tuple[bool, str]:
    """(True, "") when the default source files exist, else (False, the reason)."""
    try:
        find_hanzi_sources()
    except MissingHanziSources as e:
        return False, str(e)
    return True, ""


def _open_unihan(sources: HanziSources, name: str) -> io.TextIOBase:
    if len(sources.unihan) == 1 and sources.unihan[0].suffix == ".zip":
        archive = zipfile.ZipFile(sources.unihan[0])
        return io.TextIOWrapper(archive.open(name), encoding="utf-8")
    path = next(p for p in sources.unihan if p.name.startswith(name))
    return bz2.open(path, "rt", encoding="utf-8") if path.suffix == ".bz2" else open(path, encoding="utf-8")


def read_unihan(sources: HanziSources) -> dict[int, dict[str, str]]:
    """{code point: {"kTGH": ..., "kRSUnicode": ..., "kDefinition": ...}} (the fields a character has)."""
    out: dict[int, dict[str, str]] = {}
    for name in dict.fromkeys(UNIHAN_FILES.values()):
        keys = "|".join(k for k, f in UNIHAN_FILES.items() if f == name)
        with _open_unihan(sources, name) as f:
            text = f.read()
        for m in re.finditer(rf"^U\+([0-9A-F]{{4,6}})\t({keys})\t(.*)$", text, re.MULTILINE):
            out.setdefault(int(m.group(1), 16), {})[m.group(2)] = m.group(3)
    return out


@dataclass(frozen=True)
class HanziEntry:
    char: str
    radical: int      # Kangxi radical number (1..214) of the first kRSUnicode value
    strokes: int      # residual strokes
    definition: str   # kDefinition
    tgh: int          # number in the Table of General Standard Chinese Characters (1..8105)


_RS = re.compile(r"^(\d+)'*\.(-?\d+)$")


def load_entries(sources: HanziSources) -> list[HanziEntry]:
    """The standard characters (kTGH) that have an English definition, in table order."""
    out = []
    for cp, fields in read_unihan(sources).items():
        if "kTGH" not in fields or "kDefinition" not in fields:
            continue
        m = _RS.match(fields["kRSUnicode"].split()[0])
        if m is None:
            raise ValueError(f"U+{cp:04X}: cannot parse kRSUnicode {fields['kRSUnicode']!r}")
        tgh = int(fields["kTGH"].split()[0].split(":")[1])
        out.append(HanziEntry(chr(cp), int(m.group(1)), int(m.group(2)), fields["kDefinition"], tgh))
    if not out:
        raise ValueError(f"no character has both kTGH and kDefinition in {', '.join(map(str, sources.unihan))}")
    return sorted(out, key=lambda e: (e.tgh, e.char))


def radical_names(sources: HanziSources) -> dict[int, tuple[str, str]]:
    """{radical number: (the radical as a CJK ideograph, its English name)}: the name of its Kangxi
    Radicals character in UnicodeData.txt ("KANGXI RADICAL WATER" -> "water"), else "radical N"."""
    names = {}
    with open(sources.unicode_data, encoding="utf-8") as f:
        for line in f:
            cp, name = line.split(";", 2)[:2]
            if name.startswith("KANGXI RADICAL "):
                names[int(cp, 16)] = name[len("KANGXI RADICAL "):].lower()
    out = {}
    with open(sources.cjk_radicals, encoding="utf-8") as f:
        for line in f:
            fields = [x.strip() for x in line.split("#", 1)[0].split(";")]
            if len(fields) != 3 or not fields[0].isdigit():  # skip comments and simplified forms ("90'")
                continue
            number, radical, ideograph = int(fields[0]), int(fields[1], 16), chr(int(fields[2], 16))
            out[number] = (ideograph, names.get(radical, f"radical {number}"))
    return out


def font_coverage(path: str | Path) -> frozenset[int]:
    """The code points a font (first face of a .ttc) has a drawn glyph for: those its cmap maps to a
    glyph with an outline. Some cmaps list characters whose glyph is empty (ukai: 47 CJK ones), so
    for TrueType outlines a glyph of zero length in the `loca` table counts as missing."""
    try:
        with TTFont(str(path), fontNumber=0, lazy=True) as font:
            cmap = font.getBestCmap() or {}
            if "loca" not in font:  # CFF outlines: trust the cmap
                return frozenset(cmap)
            loca, glyph_id = font["loca"], {g: i for i, g in enumerate(font.getGlyphOrder())}
            return frozenset(c for c, g in cmap.items() if loca[glyph_id[g] + 1] > loca[glyph_id[g]])
    except Exception as e:  # fontTools raises several types for a broken file
        raise OSError(f"cannot read the character map of the font {path}: {e}") from e


def font_version(path: str | Path) -> str:
    """The font's version string (name ID 5), for the build metadata."""
    with TTFont(str(path), fontNumber=0, lazy=True) as font:
        return str(font["name"].getDebugName(5) or "unknown")
