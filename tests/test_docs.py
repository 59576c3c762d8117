"""The design the code cites lives in the repository: no file points to numbered sections of a design
document kept elsewhere or to a path outside the repository, and every `docs/...` path the code,
the tests, the benchmarks, the README and docs/ itself cite exists."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED_DIRS = ("pycmlt", "csrc", "tests", "benchmarks")
SUFFIXES = {".py", ".h", ".cuh", ".cpp", ".cu", ".md", ".txt", ".sh", ".toml", ".cfg"}

# Built from pieces so that this file does not match its own patterns.
_DESIGN = "DES" + "IGN"
OLD_SECTION_CITATION = re.compile(_DESIGN + r"\s+(?:section\s+)?\d")
OUTSIDE_PATHS = re.compile(_DESIGN + r"\.md|\.\./shared|/work/" + "shared")
DOCS_PATH = re.compile(r"(?<![\w/.])docs/[\w./-]*")
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")


def scanned_files() -> list[Path]:
    files = [ROOT / "README.md"]
    for folder in SCANNED_DIRS:
        files += sorted(p for p in (ROOT / folder).rglob("*") if p.is_file() and p.suffix in SUFFIXES)
    return files


def docs_files() -> list[Path]:
    return sorted((ROOT / "docs").rglob("*.md"))


def _lines_matching(pattern: re.Pattern, files) -> list[str]:
    found = []
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if pattern.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    return found


def test_scanned_files_exist():
    """The scan covers the real code (a wrong ROOT would make the other tests pass vacuously)."""
    names = {p.relative_to(ROOT).as_posix() for p in scanned_files()}
    assert {"README.md", "pycmlt/ops/cross_entropy.py", "csrc/ops.cpp", "pycmlt/kernels/cross_entropy.py"} <= names


def test_no_numbered_design_section_citations():
    found = _lines_matching(OLD_SECTION_CITATION, scanned_files())
    assert not found, "cite the docs/ file that explains it instead:\n" + "\n".join(found)


def test_no_paths_outside_the_repository():
    found = _lines_matching(OUTSIDE_PATHS, scanned_files() + docs_files())
    assert not found, "files point outside the repository:\n" + "\n".join(found)


def test_readme_links_stay_inside_the_repository():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    outside = [target for target in MARKDOWN_LINK.findall(text)
               if "://" not in target and not target.startswith("#")
               and not (ROOT / target.split("#")[0]).resolve().is_relative_to(ROOT)]
    assert not outside, f"README links outside the repository: {outside}"
    assert "docs/README.md" in MARKDOWN_LINK.findall(text), "the README must link to docs/"


def test_cited_docs_paths_exist():
    missing = []
    for path in scanned_files():
        for cited in DOCS_PATH.findall(path.read_text(encoding="utf-8", errors="replace")):
            cited = cited.rstrip(".")
            if not (ROOT / cited).exists():
                missing.append(f"{path.relative_to(ROOT)} cites {cited}")
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("page", docs_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_links_between_docs_pages_exist(page):
    broken = []
    for target in MARKDOWN_LINK.findall(page.read_text(encoding="utf-8")):
        file_part = target.split("#")[0]
        if "://" in target or not file_part:
            continue
        resolved = (page.parent / file_part).resolve()
        if not resolved.exists() or not resolved.is_relative_to(ROOT):
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)} links to missing or outside files: {broken}"
