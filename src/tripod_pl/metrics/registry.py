"""Registry of evaluation metrics by short name, extended by third-party packages through entry points.

A metric is a ``torchmetrics.Metric`` with ``update(latents, sources)`` (B x n_z latents, B x K integer
sources) and ``compute()`` returning a dict of floats or tensors. Built-in names resolve lazily to
``"module:Class"`` strings (:data:`BUILTIN_METRICS`), so a module is imported only when its metric is used. A
plugin package declares, in its ``pyproject.toml``::

    [project.entry-points."tripod_pl.metrics"]
    my_metric = "my_package.metrics:MyMetric"

and ``metrics: [infomec, dci, my_metric]`` in the evaluation callback's config then uses it
(:func:`get_metric` loads the plugins on a miss). :func:`build_metric` also takes a dotted import path or a
``{"class_path": ..., "init_args": {...}}`` spec, as legs do.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, TypeVar

from torchmetrics import Metric

from tripod_pl.plugins import import_object, register_entry_points

__all__ = [
    "BUILTIN_METRICS",
    "ENTRY_POINT_GROUP",
    "build_metric",
    "get_metric",
    "list_metrics",
    "load_plugins",
    "metric_name",
    "register_metric",
]

ENTRY_POINT_GROUP = "tripod_pl.metrics"

#: the built-in metrics, imported on first use
BUILTIN_METRICS: dict[str, str] = {
    "infomec": "tripod_pl.metrics.classes:InfoMEC",
    "dci": "tripod_pl.metrics.classes:DCI",
    "mig": "tripod_pl.metrics.mig:MIG",
    "sap": "tripod_pl.metrics.sap:SAP",
    "modularity": "tripod_pl.metrics.modularity:Modularity",
}
_METRICS: dict[str, type[Metric]] = {}
M = TypeVar("M", bound=type[Metric])


def register_metric(name: str) -> Callable[[M], M]:
    """Class decorator registering a ``torchmetrics.Metric`` subclass under ``name``."""

    def decorator(cls: M) -> M:
        if not (isinstance(cls, type) and issubclass(cls, Metric)):
            raise TypeError(f"only torchmetrics.Metric subclasses can be registered, got {cls!r}")
        previous = _METRICS.get(name) or (_import_builtin(name) if name in BUILTIN_METRICS else None)
        if previous is not None and previous is not cls:
            raise ValueError(f"metric name {name!r} is already taken by {previous.__module__}.{previous.__qualname__}")
        _METRICS[name] = cls
        return cls

    return decorator


def _import_builtin(name: str) -> type[Metric]:
    module, _, qualname = BUILTIN_METRICS[name].partition(":")
    try:
        cls = import_object(BUILTIN_METRICS[name])
    except (ImportError, AttributeError) as err:
        raise ImportError(f"metric {name!r} needs {module}.{qualname}, which cannot be imported: {err}") from err
    if not (isinstance(cls, type) and issubclass(cls, Metric)):
        raise TypeError(f"metric {name!r}: {module}.{qualname} is not a torchmetrics.Metric subclass")
    return cls


def get_metric(name: str) -> type[Metric]:
    """The metric class registered as ``name``: a registered or built-in name (imported now), else a plugin
    (plugins are loaded on a miss)."""
    if name in _METRICS:
        return _METRICS[name]
    if name in BUILTIN_METRICS:
        return _import_builtin(name)
    load_plugins()
    try:
        return _METRICS[name]
    except KeyError:
        known = sorted({*BUILTIN_METRICS, *_METRICS})
        raise KeyError(f"no metric named {name!r}; known metrics: {known}") from None


def list_metrics() -> list[str]:
    """The names of every metric, built-in and plugins (without importing the built-in ones)."""
    load_plugins()
    return sorted({*BUILTIN_METRICS, *_METRICS})


def load_plugins() -> list[str]:
    """Import every metric advertised in the ``tripod_pl.metrics`` entry-point group; returns their names."""
    return register_entry_points(entry_points(group=ENTRY_POINT_GROUP), Metric, _METRICS, register_metric)


def metric_name(spec: str | dict[str, Any]) -> str:
    """A short name for a metric spec: the name, or the class path's last part in lower case."""
    path = spec if isinstance(spec, str) else spec.get("class_path", "") if isinstance(spec, dict) else ""
    return path.rpartition(".")[2].lower() if "." in path else path


def _resolve(path: str) -> type[Metric]:
    if "." in path:
        cls = import_object(path)
        if not (isinstance(cls, type) and issubclass(cls, Metric)):
            raise TypeError(f"{path} is not a torchmetrics.Metric subclass")
        return cls
    return get_metric(path)


def build_metric(spec: Metric | str | dict[str, Any], **context: Any) -> Metric:
    """A metric from an instance (returned as is), a name or dotted path, or a spec ``{"class_path": ...,
    "init_args": {...}}``. ``context`` (e.g. ``discrete``, ``backend``, ``infoe_protocol``) fills the
    constructor's arguments of those names that the spec does not set; others are ignored."""
    if isinstance(spec, Metric):
        return spec
    if isinstance(spec, str):
        spec = {"class_path": spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("class_path"), str):
        raise TypeError(f"a metric spec must be a name, a Metric or a dict with 'class_path', got {spec!r}")
    cls = _resolve(spec["class_path"])
    init_args = dict(spec.get("init_args") or {})
    named = {
        p.name
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    for key, value in context.items():
        if key in named and key not in init_args:
            init_args[key] = value
    return cls(**init_args)
