"""The on-disk cache of built datasets: location, keys, atomic writes.

Location: `$PYCMLT_CACHE_DIR` if set, else `$XDG_CACHE_HOME/pycmlt`, else `~/.cache/pycmlt`.
A built dataset is ONE compressed .npz file (uint8 arrays + its JSON metadata stored as a byte
array) named by a hash of the build options, the source files and the format version, so a
change of any of them builds a new file and an old one is never read by mistake. Files are written
to a temporary name in the same folder and renamed into place (atomic), so a killed build never
leaves a half-written cache behind and concurrent builders do not corrupt each other.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

from pycmlt.atomic_write import atomic_path, atomic_write_json


def cache_dir() -> Path:
    env = os.environ.get("PYCMLT_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "pycmlt"


def cache_key(payload: dict) -> str:
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def file_fingerprint(path: str | Path) -> dict:
    """Identity of a source file for cache keys: path, size and a hash of its content."""
    path = Path(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return {"path": str(path), "size": path.stat().st_size, "sha256": h.hexdigest()[:16]}


def save_npz_atomic(path: str | Path, meta: dict, **arrays: np.ndarray) -> Path:
    """Write arrays plus `meta` (JSON) into one compressed .npz, atomically."""
    meta_bytes = np.frombuffer(json.dumps(meta, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)
    with atomic_path(path) as tmp, open(tmp, "xb") as f:
        np.savez_compressed(f, __meta__=meta_bytes, **arrays)
    return Path(path)


def load_npz(path: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """(meta, arrays) of a file written by save_npz_atomic."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays.pop("__meta__").tobytes().decode("utf-8"))
    return meta, arrays


def write_json_atomic(path: str | Path, obj) -> None:
    atomic_write_json(path, obj, indent=1, ensure_ascii=False)


def rendered_dataset_path(name: str, sources, options: dict, image_size: int, seed: int, format_version: int,
                          root: str | Path | None) -> Path:
    """Cache file of a dataset rendered from installed sources (emoji-lt, hanzi-lt): keyed by the
    format, the build options and the fingerprints of every source file, so any change rebuilds."""
    key = cache_key({"format": format_version, "options": options,
                     "sources": [file_fingerprint(p) for p in sources.files()]})
    return (Path(root) if root else cache_dir()) / name / f"{name}-{image_size}px-seed{seed}-{key}.npz"


def build_log(message: str, verbose: bool) -> None:
    """A dataset build's progress line (stderr), when verbose."""
    if verbose:
        print(message, file=sys.stderr, flush=True)


def load_or_rebuild(name: str, build, verbose: bool) -> tuple[Path, dict, dict[str, np.ndarray]]:
    """(path, meta, arrays) of the cache file `build(False)` returns; a file that cannot be read is
    built again once, with `build(True)`."""
    path = build(False)
    try:
        return (path, *load_npz(path))
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
        build_log(f"{name}: cache file {path} is unreadable ({e}); rebuilding", verbose)
        path = build(True)
        return (path, *load_npz(path))
