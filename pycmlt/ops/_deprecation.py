"""renamed_keywords: keep a public function's (or method's) old keyword names working for one release,
with a DeprecationWarning that names the new one. The only place that implements keyword renames."""
from __future__ import annotations

import functools
import warnings


def renamed_keywords(**renames: str):
    """Decorator: `old=value` is passed on as `new=value` (renames maps old -> new) with a
    DeprecationWarning; passing both names is a TypeError. Calls without an old name pay a
    membership test per rename."""

    def decorate(fn):
        qualname = fn.__qualname__.replace(".__init__", "")

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if kwargs:  # a plain loop over the (one or two) renames: torch.compile traces it
                for old, new in renames.items():
                    if old in kwargs:
                        if new in kwargs:
                            raise TypeError(f"{qualname}() got both {old}= and {new}=; pass {new}= only "
                                            f"({old}= is its deprecated name)")
                        warnings.warn(f"{qualname}(): the keyword {old}= is deprecated and will be removed in the "
                                      f"next release; use {new}= instead", DeprecationWarning, stacklevel=2)
                        kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        return wrapper

    return decorate
