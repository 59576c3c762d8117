"""The command that produced a result file (`pycmlt tune`, `compare`, `protocol` record it), so a
reader can re-run it: this process's arguments, shell-quoted, after `pycmlt`."""
from __future__ import annotations

import shlex
import sys


def invoking_command() -> str:
    """'pycmlt compare --methods ce ...' from sys.argv ('' when there is none, e.g. an embedded call)."""
    return " ".join(shlex.quote(a) for a in ["pycmlt", *sys.argv[1:]]) if sys.argv else ""
