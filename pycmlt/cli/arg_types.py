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


def add_run_grid_arguments(p: argparse.ArgumentParser, *, seeds: list[int], data_seeds: list[int] | None,
                           data_seeds_help: str) -> None:
    """--seeds, --data-seeds and --bootstrap: which (data split, seed) runs a comparison trains and how
    many bootstrap replicates its paired intervals use (`pycmlt compare` and `pycmlt protocol`)."""
    p.add_argument("--seeds", nargs="+", type=int, default=seeds,
                   help=f"model seeds (default {' '.join(map(str, seeds))})")
    p.add_argument("--data-seeds", nargs="+", type=int, default=data_seeds, metavar="SEED", help=data_seeds_help)
    p.add_argument("--bootstrap", type=int, default=2000, metavar="B", help="bootstrap replicates (default 2000)")
