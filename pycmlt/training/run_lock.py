"""One live run per run folder: a run holds an exclusive fcntl.flock on <out_dir>/run.lock for its
whole life, so a second run into the same folder fails at once (naming the holder's pid, host and
start time) instead of overwriting the first one's files. The operating system drops the lock when
its process exits, however it exits (crash, SIGKILL), so a folder whose holder is dead can always be
resumed. The file itself stays behind and says who held it last."""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from pycmlt.errors import RunLockedError

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are not locked there
    fcntl = None

LOCK_FILE = "run.lock"


class RunLock:
    """Context manager: `with RunLock(out_dir): ...` holds the folder for the block."""

    def __init__(self, out_dir: str | Path):
        self.path = Path(out_dir) / LOCK_FILE
        self._file = None

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+")
        if fcntl is not None:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = _describe(f.read())
                f.close()
                raise RunLockedError(f"{self.path.parent} is in use by another run ({holder}); wait for it to "
                                     "finish, stop it, or choose another out_dir") from None
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                            "started": time.strftime("%Y-%m-%d %H:%M:%S %z")}) + "\n")
        f.flush()
        self._file = f
        return self

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the descriptor drops the flock
            self._file = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _describe(text: str) -> str:
    try:
        info = json.loads(text)
        return f"pid {info['pid']} on {info['host']}, started {info['started']}"
    except (ValueError, KeyError, TypeError):
        return "holder unknown"
