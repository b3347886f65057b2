"""Registry of legs by short name, extended by third-party packages through entry points.

A plugin package declares, in its ``pyproject.toml``::

    [project.entry-points."tripod_pl.legs"]
    my_leg = "my_package.legs:MyLeg"

and :func:`load_plugins` (run by ``tripod-train`` before it parses its arguments) imports and registers it,
so ``class_path: my_package.legs.MyLeg`` (or the short ``class_path: MyLeg``) works in a YAML config.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, TypeVar

from tripod_pl.legs.base import Leg
from tripod_pl.plugins import import_object, register_entry_points

__all__ = ["ENTRY_POINT_GROUP", "build_leg", "get_leg", "list_legs", "load_plugins", "register_leg"]

ENTRY_POINT_GROUP = "tripod_pl.legs"
_LEGS: dict[str, type[Leg]] = {}
L = TypeVar("L", bound=type[Leg])


def register_leg(name: str) -> Callable[[L], L]:
    """Class decorator registering a :class:`Leg` subclass under ``name``."""

    def decorator(cls: L) -> L:
        if not (isinstance(cls, type) and issubclass(cls, Leg)):
            raise TypeError(f"only Leg subclasses can be registered, got {cls!r}")
        previous = _LEGS.get(name)
        if previous is not None and previous is not cls:
            raise ValueError(f"leg name {name!r} is already taken by {previous.__module__}.{previous.__qualname__}")
        _LEGS[name] = cls
        cls.leg_name = name
        return cls

    return decorator


def get_leg(name: str) -> type[Leg]:
    """The leg class registered as ``name`` (plugins are loaded on a miss)."""
    if name not in _LEGS:
        load_plugins()
    try:
        return _LEGS[name]
    except KeyError:
        raise KeyError(f"no leg named {name!r}; known legs: {sorted(_LEGS)}") from None


def list_legs() -> dict[str, type[Leg]]:
    """All registered legs, built-in and plugins, by short name."""
    load_plugins()
    return dict(sorted(_LEGS.items()))


def load_plugins() -> list[str]:
    """Import every leg advertised in the ``tripod_pl.legs`` entry-point group; returns their names."""
    return register_entry_points(entry_points(group=ENTRY_POINT_GROUP), Leg, _LEGS, register_leg)


def build_leg(spec: Leg | dict[str, Any]) -> Leg:
    """A leg from an instance (returned as is) or a spec ``{"class_path": ..., "init_args": {...}}``, where
    ``class_path`` is a registered short name or a dotted import path."""
    if isinstance(spec, Leg):
        return spec
    if not isinstance(spec, dict) or "class_path" not in spec:
        raise TypeError(f"a leg spec must be a Leg or a dict with 'class_path', got {spec!r}")
    path = spec["class_path"]
    cls = import_object(path) if "." in path else get_leg(path)
    return cls(**spec.get("init_args", {}))
