"""Weight schedules for loss terms (docs/legs.md, "Weight schedules"): a term's weight as a function of the
training step.

A schedule maps the global step ``t`` (optimizer steps done, 0 at the first batch) to a factor ``f(t)``; the
model multiplies the term's weight (the leg's, e.g. beta of :class:`~tripod_pl.legs.KL`) by it. The schedule
is a pure function of ``t``, so a resumed run (whose global step is restored) continues with exactly the
same weights. Configured per term in the model's ``weight_schedules``::

    model:
      weight_schedules:
        kl: {class_path: tripod_pl.legs.schedules.LinearWarmup, init_args: {steps: 10000}}

Example:
    >>> LinearWarmup(steps=100)(50)
    0.5
"""

from __future__ import annotations

import inspect
import math
from typing import Any

from tripod_pl.plugins import import_object

__all__ = ["Constant", "CosineAnnealing", "Cyclic", "LinearWarmup", "Schedule", "build_schedule"]


class Schedule:
    """Base class: ``schedule(step) -> factor``. Subclasses keep each ``__init__`` argument as an attribute of
    the same name, so :meth:`spec` can return them as plain data (checkpoints rebuild schedules from it)."""

    def __call__(self, step: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def spec(self) -> dict[str, Any]:
        """The schedule as plain data: ``{"class_path": "pkg.module.Class", "init_args": {...}}``."""
        cls = type(self)
        names = [n for n in inspect.signature(cls.__init__).parameters if n != "self"]
        return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": {n: getattr(self, n) for n in names}}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.spec()["init_args"].items())
        return f"{type(self).__name__}({args})"


def _check(name: str, value: float, low: float, what: str) -> None:
    if not value >= low:
        raise ValueError(f"{name} must be {what}, got {value}")


class Constant(Schedule):
    """``f(t) = value``."""

    def __init__(self, value: float = 1.0) -> None:
        self.value = float(value)

    def __call__(self, step: int) -> float:
        return self.value


class LinearWarmup(Schedule):
    """Linear ramp from ``start`` to ``end`` over ``steps`` steps after ``delay`` steps at ``start``:
    ``f(t) = start + (end - start) * clip((t - delay) / steps, 0, 1)``."""

    def __init__(self, steps: int, start: float = 0.0, end: float = 1.0, delay: int = 0) -> None:
        _check("LinearWarmup steps", steps, 1, ">= 1")
        _check("LinearWarmup delay", delay, 0, ">= 0")
        self.steps, self.start, self.end, self.delay = int(steps), float(start), float(end), int(delay)

    def __call__(self, step: int) -> float:
        p = min(max((step - self.delay) / self.steps, 0.0), 1.0)
        return self.start + (self.end - self.start) * p


class CosineAnnealing(Schedule):
    """Half-cosine from ``start`` to ``end`` over ``steps`` steps after ``delay`` steps at ``start``:
    ``f(t) = end + (start - end) * (1 + cos(pi * p)) / 2`` with ``p = clip((t - delay) / steps, 0, 1)``.
    The defaults anneal a weight in (0 -> 1); ``start: 1, end: 0`` anneals it out."""

    def __init__(self, steps: int, start: float = 0.0, end: float = 1.0, delay: int = 0) -> None:
        _check("CosineAnnealing steps", steps, 1, ">= 1")
        _check("CosineAnnealing delay", delay, 0, ">= 0")
        self.steps, self.start, self.end, self.delay = int(steps), float(start), float(end), int(delay)

    def __call__(self, step: int) -> float:
        p = min(max((step - self.delay) / self.steps, 0.0), 1.0)
        return self.end + (self.start - self.end) * (1.0 + math.cos(math.pi * p)) / 2.0


class Cyclic(Schedule):
    """Cyclical annealing (Fu et al. 2019, "Cyclical Annealing Schedule: A Simple Approach to Mitigating KL
    Vanishing", NAACL): cycles of ``period`` steps, each ramping linearly from ``start`` to ``end`` over its first
    ``ratio`` fraction and holding ``end`` for the rest; ``f(t) = start + (end - start) * min(1, tau / ratio)``
    with ``tau = (t mod period) / period``. After ``cycles`` cycles (if set) it stays at ``end``. The paper's
    setting is ``cycles = 4`` (M) and ``ratio = 0.5`` (R) over the whole run."""

    def __init__(
        self, period: int, ratio: float = 0.5, start: float = 0.0, end: float = 1.0, cycles: int | None = None
    ) -> None:
        _check("Cyclic period", period, 1, ">= 1")
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f"Cyclic ratio must be in (0, 1], got {ratio}")
        if cycles is not None:
            _check("Cyclic cycles", cycles, 1, ">= 1 or null")
        self.period, self.ratio, self.start, self.end = int(period), float(ratio), float(start), float(end)
        self.cycles = None if cycles is None else int(cycles)

    def __call__(self, step: int) -> float:
        if self.cycles is not None and step >= self.cycles * self.period:
            return self.end
        tau = (step % self.period) / self.period
        return self.start + (self.end - self.start) * min(1.0, tau / self.ratio)


_SHORT = {cls.__name__: cls for cls in (Constant, LinearWarmup, CosineAnnealing, Cyclic)}


def build_schedule(spec: Schedule | dict[str, Any]) -> Schedule:
    """A schedule from an instance (returned as is) or ``{"class_path": ..., "init_args": {...}}`` where
    ``class_path`` is a dotted import path or the short name of a built-in schedule (``LinearWarmup``, ...)."""
    if isinstance(spec, Schedule):
        return spec
    if not isinstance(spec, dict) or "class_path" not in spec:
        raise TypeError(f"a weight schedule must be a Schedule or a dict with 'class_path', got {spec!r}")
    path = spec["class_path"]
    if "." in path:
        cls = import_object(path)
    elif path in _SHORT:
        cls = _SHORT[path]
    else:
        raise ValueError(f"unknown weight schedule {path!r}; built-in: {sorted(_SHORT)}")
    if not (isinstance(cls, type) and issubclass(cls, Schedule)):
        raise TypeError(f"{path} is not a Schedule")
    return cls(**spec.get("init_args", {}))
