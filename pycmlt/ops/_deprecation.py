"""Renamed public names keep working for one release, with a DeprecationWarning that names the new
one. The only place that implements renames: of keywords (renamed_keywords), of functions
(deprecated_alias) and of packages with their modules (moved_package)."""
from __future__ import annotations

import functools
import importlib
import importlib.abc
import importlib.util
import sys
import warnings


def _deprecated(old: str, new: str) -> str:
    # One wording for every rename: pyproject's test filter turns it into an error inside the project.
    return f"{old} is deprecated and will be removed in the next release; use {new} instead"


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
                        warnings.warn(f"{qualname}(): the keyword {_deprecated(f'{old}=', f'{new}=')}",
                                      DeprecationWarning, stacklevel=2)
                        kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        return wrapper

    return decorate


def deprecated_alias(new_fn, old_name: str):
    """`new_fn` under its old name: each call warns, then returns what `new_fn` returns."""
    message = _deprecated(f"{old_name}()", f"{new_fn.__name__}()")

    @functools.wraps(new_fn)
    def alias(*args, **kwargs):
        warnings.warn(message, DeprecationWarning, stacklevel=2)
        return new_fn(*args, **kwargs)

    alias.__name__ = alias.__qualname__ = old_name
    alias.__doc__ = f"Deprecated name of {new_fn.__name__} (removed in the next release)."
    return alias


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports `old.<module>` as `new.<module>` (`renamed` maps the modules whose name changed too):
    the same module object, registered under the old name, after a DeprecationWarning. It answers
    only for names under `old`, and only where the new module exists."""

    def __init__(self, old: str, new: str, renamed: dict[str, str]):
        self.old, self.new, self.renamed = old, new, renamed

    def target(self, fullname: str) -> str | None:
        if not fullname.startswith(self.old + "."):
            return None
        head, dot, rest = fullname[len(self.old) + 1:].partition(".")
        return f"{self.new}.{self.renamed.get(head, head)}{dot}{rest}"

    def find_spec(self, fullname, path=None, target=None):
        new = self.target(fullname)
        if new is None or importlib.util.find_spec(new) is None:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        return None  # a placeholder that exec_module replaces in sys.modules

    def exec_module(self, module):
        new = self.target(module.__name__)
        warnings.warn(_deprecated(module.__name__, new), DeprecationWarning, stacklevel=2)
        sys.modules[module.__name__] = importlib.import_module(new)


def moved_package(old: str, new: str, renamed_submodules: dict[str, str] | None = None):
    """Called from the body of the package `old` left behind as an alias of `new`: warns once (the body
    runs once), makes `import old.<module>` give `new`'s module (renamed_submodules: old -> new module
    names) and returns the module `__getattr__` through which `old.<name>` is `new.<name>`."""
    warnings.warn(_deprecated(old, new), DeprecationWarning, stacklevel=3)
    finder = _MovedModules(old, new, dict(renamed_submodules or {}))
    if not any(isinstance(f, _MovedModules) and f.old == old for f in sys.meta_path):
        sys.meta_path.insert(0, finder)  # first: an editable install's file map may still list old.<module>
    package = importlib.import_module(new)

    def __getattr__(name):
        if name in finder.renamed:
            return importlib.import_module(f"{old}.{name}")
        return getattr(package, name)

    return __getattr__
