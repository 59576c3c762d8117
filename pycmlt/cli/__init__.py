"""The `pycmlt` command line. Each sub-command lives in its own module with `add_parser` and `run`.

Errors a user can act on (bad options or files, a locked run folder, a diverged run) are printed as
one `error: ...` line, without a traceback, here and only here; PYCMLT_DEBUG=1 shows the traceback."""
from __future__ import annotations

import argparse
import importlib
import os
import sys

# sub-command name -> module (under pycmlt.cli) that defines add_parser(subparsers) and run(args)
COMMANDS = {
    "train": "train",
    "eval": "evaluate",
    "compare": "compare",
    "tune": "tune",
    "protocol": "protocol",
    "demo": "demo",
    "data": "data",
    "words": "words",
    "analyze": "analyze",
    "bench": "bench",
}
USAGE_EXIT = 2     # the run could not start: bad option, missing file, locked folder, ...
FAILED_EXIT = 1    # the run started and failed (diverged)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pycmlt", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in COMMANDS.items():
        importlib.import_module(f"pycmlt.cli.{module}").add_parser(sub, name)
    return parser


def main(argv: list[str] | None = None) -> int:
    from pycmlt.errors import TrainingDivergedError, TrainingError

    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (ValueError, TypeError, OSError, ImportError, TrainingError) as exc:  # ImportError: a missing extra
        if os.environ.get("PYCMLT_DEBUG") == "1":
            raise
        print(f"error: {exc}", file=sys.stderr)
        return FAILED_EXIT if isinstance(exc, TrainingDivergedError) else USAGE_EXIT


if __name__ == "__main__":
    sys.exit(main())
