"""Readers for the plain-text files of the official dataset layouts (lists, 0/1 matrices)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


class LayoutError(FileNotFoundError):
    """A file of a dataset's official layout is missing or malformed."""


def find_file(root: Path, *candidates: str, what: str) -> Path:
    """The first of `candidates` (relative to root) that exists; LayoutError listing them otherwise."""
    for c in candidates:
        p = root / c
        if p.is_file():
            return p
    raise LayoutError(f"{what}: none of {', '.join(str(root / c) for c in candidates)} exists")


def read_lines(path: Path) -> list[str]:
    """Non-empty lines, stripped (handles CRLF and a UTF-8 byte-order mark)."""
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        return [ln.strip() for ln in f if ln.strip()]


def read_binary_matrix(path: Path, ncols: int | None = None, *, nrows: int | None = None) -> np.ndarray:
    """uint8 matrix of a text file of 0/1 values separated by white space, one row per line (e.g.
    NUS-WIDE's AllTags1k.txt, 269648 x 1000, or a Labels_<concept>_Train.txt column), parsed in a few
    vectorised passes. Values other than 0/1 fall back to numpy's general parser (any value > 0 -> 1)."""
    data = np.fromfile(path, dtype=np.uint8)
    is_digit = (data >= 48) & (data <= 57)
    if np.any(is_digit & (data > 49)) or np.any((data == ord("-")) | (data == ord("."))):
        m = np.loadtxt(path, ndmin=2)
        out = (m > 0).astype(np.uint8)
    else:
        digits = data[is_digit] - 48
        if ncols is None:
            first_nl = np.nonzero(data == 10)[0]
            first_line = data[: first_nl[0]] if len(first_nl) else data
            ncols = int(((first_line >= 48) & (first_line <= 57)).sum())
        if ncols == 0 or len(digits) % ncols:
            raise LayoutError(f"{path}: {len(digits)} values do not form rows of {ncols}")
        out = digits.reshape(-1, ncols)
    if ncols is not None and out.shape[1] != ncols:
        raise LayoutError(f"{path}: expected {ncols} columns, found {out.shape[1]}")
    if nrows is not None and out.shape[0] != nrows:
        raise LayoutError(f"{path}: expected {nrows} rows (one per image), found {out.shape[0]}")
    return out
