"""Old import paths that keep working for one release, with a warning that names the new one."""

from __future__ import annotations

import importlib
import warnings
from typing import Any, Callable

__all__ = ["moved_names"]


def moved_names(old_module: str, moves: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` resolving ``old_module.<name>`` to its new home ``moves[name]``
    (``"package.module"``), with a :class:`FutureWarning` (shown by default, unlike a
    DeprecationWarning) that says where it went. Works for ``class_path`` in YAML too."""

    def __getattr__(name: str) -> Any:
        if name not in moves:
            raise AttributeError(f"module {old_module!r} has no attribute {name!r}")
        new_module = moves[name]
        warnings.warn(
            f"{old_module}.{name} moved to {new_module}.{name}; the old path will be removed in the next release",
            FutureWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(new_module), name)

    return __getattr__
