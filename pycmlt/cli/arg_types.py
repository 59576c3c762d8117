"""argparse value types with range checks, so that `--test-examples -1` is refused as a usage error
naming the flag (argparse prints `error: argument ...` and exits 2)."""
from __future__ import annotations

import argparse


def _integer(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
    return value


def positive_int(text: str) -> int:
    return _integer(text, 1)


def non_negative_int(text: str) -> int:
    return _integer(text, 0)
