"""The `pycmlt` command line. Each sub-command lives in its own module with `add_parser` and `run`."""
from __future__ import annotations

import argparse
import importlib
import sys

# sub-command name -> module (under pycmlt.cli) that defines add_parser(subparsers) and run(args)
COMMANDS = {
    "train": "train",
    "eval": "evaluate",
    "compare": "compare",
    "demo": "demo",
    "data": "data",
    "words": "words",
    "analyze": "analyze",
    "bench": "bench",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pycmlt", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in COMMANDS.items():
        importlib.import_module(f"pycmlt.cli.{module}").add_parser(sub, name)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
