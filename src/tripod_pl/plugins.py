"""What the leg and metric registries share: a class by its dotted import path, and plugins by entry point.

Third-party packages advertise classes in an entry-point group (``tripod_pl.legs``, ``tripod_pl.metrics``); a
registry imports them on demand and registers each under its entry-point name.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from importlib.metadata import EntryPoint
from typing import Any

__all__ = ["import_object", "register_entry_points"]


def import_object(path: str) -> Any:
    """The object named by ``"package.module.Name"`` (or ``"package.module:Name"``)."""
    module, _, name = path.partition(":") if ":" in path else path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def register_entry_points(
    eps: Iterable[EntryPoint],
    base: type,
    registered: Mapping[str, type],
    register: Callable[[str], Callable[[type], type]],
) -> list[str]:
    """Loads every entry point of ``eps``; each subclass of ``base`` not yet registered under its name goes through
    ``register(name)(cls)``. Returns the names loaded."""
    loaded = []
    for ep in eps:
        obj = ep.load()
        if isinstance(obj, type) and issubclass(obj, base) and registered.get(ep.name) is not obj:
            register(ep.name)(obj)
        loaded.append(ep.name)
    return loaded
