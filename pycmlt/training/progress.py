"""Progress that reads well wherever it goes: a tqdm bar when stderr is a terminal; otherwise (CI,
nohup, a log file) no carriage-return redraws but a plain line every `every_s` seconds, so a log
holds a few readable lines per epoch instead of thousands of overwritten bar states."""
from __future__ import annotations

import sys
import time

from tqdm.auto import tqdm

EVERY_S = 60.0  # seconds between progress lines when stderr is not a terminal


def stderr_is_terminal() -> bool:
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


class StepProgress:
    """Iterates `iterable`; set_postfix(**values) updates what the next bar state or line shows."""

    def __init__(self, iterable, desc: str, enabled: bool, every_s: float | None = None):
        self.iterable, self.desc, self.enabled = iterable, desc, enabled
        self.every_s = EVERY_S if every_s is None else every_s
        self.bar = tqdm(iterable, desc=desc, leave=False) if enabled and stderr_is_terminal() else None
        self.postfix: dict = {}

    def set_postfix(self, **values) -> None:
        if self.bar is not None:
            self.bar.set_postfix(**values)
        self.postfix = values

    def __len__(self) -> int:
        return len(self.iterable)

    def __iter__(self):
        if self.bar is not None or not self.enabled:
            yield from (self.bar if self.bar is not None else self.iterable)
            return
        total = len(self.iterable) if hasattr(self.iterable, "__len__") else None
        last = time.perf_counter()
        for step, item in enumerate(self.iterable, 1):
            yield item
            now = time.perf_counter()
            if now - last >= self.every_s and (total is None or step < total):
                last = now
                shown = ", ".join(f"{k} {v}" for k, v in self.postfix.items())
                of = total if total is not None else "?"
                print(f"{self.desc}: step {step}/{of}" + (f", {shown}" if shown else ""), file=sys.stderr, flush=True)
