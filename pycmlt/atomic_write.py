"""Atomic file writes: the one helper behind every file pycmlt writes that a reader may find half
done otherwise (checkpoints, models, metrics, comparison and tuning summaries, dataset caches,
word-vector caches, WordIndex folders, decoded-image caches).

The content goes to a unique temporary name in the target's own folder, which is renamed over the
target only once it is complete, so a reader, or a run killed at any moment, sees the old complete
file or the new complete one, never a mixture, and concurrent writers of one path never interleave
their bytes. With durable=True (the default) the data is flushed to disk before the rename and the
folder entry after it, so the rename also survives a power cut; caches that verify what they read
(a checksum per entry) may pass durable=False to skip the two fsyncs. On any failure the temporary
file is removed and the target is left as it was."""
from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, durable: bool = True) -> Iterator[Path]:
    """Yields a temporary path beside `path` for the caller to write (by name: torch.save, faiss,
    open(...)); on a normal exit it replaces `path` with it, on an exception it is deleted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique name (not mkstemp, whose 0600 mode would ignore the umask of the files it replaces).
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        if durable:
            _fsync(tmp, os.O_RDWR)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    if durable:
        with contextlib.suppress(OSError):  # not every file system can open a folder
            _fsync(path.parent, os.O_RDONLY)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, durable: bool = True) -> Path:
    with atomic_path(path, durable=durable) as tmp:
        with open(tmp, "xb") as f:
            f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, *, durable: bool = True) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), durable=durable)


def atomic_write_json(path: str | os.PathLike, obj, *, indent: int = 2, ensure_ascii: bool = True,
                      durable: bool = True) -> Path:
    """`obj` as indented JSON with a final newline."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=ensure_ascii) + "\n", durable=durable)


def _fsync(path: Path, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
