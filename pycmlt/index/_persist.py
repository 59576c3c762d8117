"""The on-disk format of a WordIndex: one directory holding

    meta.json    {"format": "pycmlt.WordIndex", "format_version": 1, "kind", "dim", "num_words",
                  "normalize", "nlist", "nprobe", "words_sha256", "index_sha256", "created_with"}
    words.json   the vocabulary, a JSON array of strings in id order
    index.faiss  the FAISS index (faiss.write_index of the CPU index)

Files are written under temporary names and renamed into place, meta.json last. Loading checks
every field, both checksums, and that the FAISS index agrees with the metadata, so a truncated,
edited or mismatched directory is an IndexFormatError rather than silently wrong search results."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pycmlt.atomic_write import atomic_path, atomic_write_json, atomic_write_text

FORMAT_NAME = "pycmlt.WordIndex"
FORMAT_VERSION = 1
META_FILE, WORDS_FILE, INDEX_FILE = "meta.json", "words.json", "index.faiss"
OURS = (META_FILE, WORDS_FILE, INDEX_FILE)


class IndexFormatError(ValueError):
    """A directory that is not a readable pycmlt WordIndex (missing, corrupt or mismatched files)."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def words_sha256(words) -> str:
    return hashlib.sha256(json.dumps(list(words), ensure_ascii=False).encode("utf-8")).hexdigest()


def _is_ours(name: str) -> bool:
    """A file of a WordIndex, or a temporary one left by an interrupted save (pycmlt.atomic_write)."""
    return any(name == f or (name.startswith(f + ".") and name.endswith(".tmp")) for f in OURS)


def prepare_directory(path: Path) -> None:
    """Create `path`, or accept an empty directory or an earlier WordIndex directory (overwritten);
    refuse to write into any other non-empty directory or over a file."""
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"cannot save a WordIndex to {path}: it is a file, not a directory")
    if path.is_dir():
        entries = {p.name for p in path.iterdir()}
        others = sorted(e for e in entries if not _is_ours(e))
        if entries and not (META_FILE in entries and not others):
            raise FileExistsError(f"cannot save a WordIndex to {path}: the directory holds other files "
                                  f"({', '.join(others[:5])}); choose an empty or new directory")
    path.mkdir(parents=True, exist_ok=True)


def write(path: Path, cpu_index, words: list[str], meta: dict) -> None:
    from pycmlt.index._faiss import faiss

    prepare_directory(path)
    atomic_write_text(path / WORDS_FILE, json.dumps(words, ensure_ascii=False) + "\n")
    with atomic_path(path / INDEX_FILE) as tmp:
        faiss().write_index(cpu_index, str(tmp))
    full = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **meta,
            "words_sha256": words_sha256(words), "index_sha256": sha256_file(path / INDEX_FILE)}
    atomic_write_json(path / META_FILE, full)


_REQUIRED = {"kind": str, "dim": int, "num_words": int, "normalize": bool, "nlist": (int, type(None)),
             "nprobe": (int, type(None)), "words_sha256": str, "index_sha256": str}


def read(path: Path):
    """(meta, words, cpu_index) of a saved WordIndex, or IndexFormatError saying what is wrong."""
    from pycmlt.index._faiss import faiss, index_kind

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no WordIndex at {path}: the directory does not exist")
    if not path.is_dir():
        raise IndexFormatError(f"{path} is not a WordIndex directory (it is a file)")
    meta_path = path / META_FILE
    if not meta_path.is_file():
        raise IndexFormatError(f"{path} is not a WordIndex directory: {META_FILE} is missing")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise IndexFormatError(f"{meta_path} is not valid JSON ({exc}); the directory is corrupt") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise IndexFormatError(f"{meta_path} does not describe a pycmlt WordIndex "
                               f"(format {meta.get('format') if isinstance(meta, dict) else None!r})")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise IndexFormatError(f"{meta_path}: format_version is missing or not an integer")
    if version > FORMAT_VERSION:
        raise IndexFormatError(f"{path} was written in WordIndex format {version}, newer than this pycmlt "
                               f"reads (format {FORMAT_VERSION}); upgrade pycmlt to load it")
    if version < 1:
        raise IndexFormatError(f"{path}: unknown WordIndex format version {version}")
    for key, types in _REQUIRED.items():
        value = meta.get(key)
        if not isinstance(value, types) or (isinstance(value, bool) and types is int):
            raise IndexFormatError(f"{meta_path}: field {key!r} is missing or has the wrong type ({value!r})")
    if meta["kind"] not in ("flat", "ivf"):
        raise IndexFormatError(f"{meta_path}: unknown index kind {meta['kind']!r}")

    words_path = path / WORDS_FILE
    if not words_path.is_file():
        raise IndexFormatError(f"{path}: {WORDS_FILE} (the vocabulary) is missing")
    try:
        words = json.loads(words_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise IndexFormatError(f"{words_path} is not valid JSON ({exc}); the vocabulary is corrupt") from None
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise IndexFormatError(f"{words_path} must hold a JSON array of strings")
    if words_sha256(words) != meta["words_sha256"]:
        raise IndexFormatError(f"{words_path} does not match {META_FILE} (checksum differs): the vocabulary was "
                               "edited or belongs to another index")
    if len(words) != meta["num_words"]:
        raise IndexFormatError(f"{words_path} holds {len(words)} words but {META_FILE} says {meta['num_words']}")

    index_path = path / INDEX_FILE
    if not index_path.is_file():
        raise IndexFormatError(f"{path}: {INDEX_FILE} (the FAISS index) is missing")
    if sha256_file(index_path) != meta["index_sha256"]:
        raise IndexFormatError(f"{index_path} does not match {META_FILE} (checksum differs): the FAISS index is "
                               "truncated, corrupt or from another save")
    try:
        cpu_index = faiss().read_index(str(index_path))
    except Exception as exc:  # FAISS raises RuntimeError with its C++ message
        raise IndexFormatError(f"FAISS cannot read {index_path}: {exc}") from None
    kind = index_kind(cpu_index)
    if kind != meta["kind"]:
        raise IndexFormatError(f"{index_path} holds a {type(cpu_index).__name__}, but {META_FILE} says kind "
                               f"{meta['kind']!r}")
    if cpu_index.metric_type != faiss().METRIC_INNER_PRODUCT:
        raise IndexFormatError(f"{index_path} does not use the inner-product metric")
    if cpu_index.ntotal != len(words) or cpu_index.d != meta["dim"]:
        raise IndexFormatError(f"{index_path} holds {cpu_index.ntotal} vectors of dimension {cpu_index.d}, but the "
                               f"vocabulary has {len(words)} words and {META_FILE} says dimension {meta['dim']}")
    return meta, words, cpu_index
