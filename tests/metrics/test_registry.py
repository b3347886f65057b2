"""The metric registry: built-in names resolve lazily, plugins through the entry-point group, clear errors."""

from __future__ import annotations

import sys
from importlib.metadata import EntryPoint

import pytest
import torch
from torchmetrics import Metric

from tripod_pl.metrics import registry
from tripod_pl.metrics.classes import DCI, InfoMEC
from tripod_pl.metrics.mig import MIG


class _Count(Metric):
    """Counts samples (a stand-in plugin metric)."""

    def __init__(self, scale: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.scale = scale
        self.add_state("n", default=torch.zeros(()), dist_reduce_fx="sum")

    def update(self, latents, sources) -> None:
        self.n += latents.shape[0]

    def compute(self) -> dict:
        return {"count": float(self.n) * self.scale}


@pytest.fixture
def clean_registry(monkeypatch):
    monkeypatch.setattr(registry, "_METRICS", {})
    monkeypatch.setattr(registry, "BUILTIN_METRICS", dict(registry.BUILTIN_METRICS))
    return registry


def test_builtin_names_resolve_to_their_classes():
    assert registry.get_metric("infomec") is InfoMEC
    assert registry.get_metric("dci") is DCI
    assert registry.get_metric("mig") is MIG
    assert {"infomec", "dci", "mig", "sap", "modularity"} <= set(registry.list_metrics())


def test_a_builtin_whose_module_is_missing_fails_only_when_used(clean_registry, monkeypatch):
    clean_registry.BUILTIN_METRICS["ghost"] = "tripod_pl.metrics.no_such_module:Ghost"
    monkeypatch.delitem(sys.modules, "tripod_pl.metrics.no_such_module", raising=False)
    assert "ghost" in clean_registry.list_metrics()  # listing imports nothing
    assert clean_registry.get_metric("infomec") is InfoMEC
    with pytest.raises(ImportError, match="metric 'ghost' needs tripod_pl.metrics.no_such_module.Ghost"):
        clean_registry.get_metric("ghost")


def test_plugins_come_from_the_entry_point_group(clean_registry, monkeypatch):
    point = EntryPoint("counter", f"{__name__}:_Count", registry.ENTRY_POINT_GROUP)

    def entry_points(group):
        return [point] if group == registry.ENTRY_POINT_GROUP else []

    monkeypatch.setattr(registry, "entry_points", entry_points)
    assert clean_registry.get_metric("counter") is _Count
    assert "counter" in clean_registry.list_metrics()
    with pytest.raises(KeyError, match="no metric named 'nope'; known metrics: .*counter"):
        clean_registry.get_metric("nope")


def test_names_cannot_be_taken_twice_and_only_metrics_register(clean_registry):
    clean_registry.register_metric("counter")(_Count)
    clean_registry.register_metric("counter")(_Count)  # the same class again is fine
    with pytest.raises(ValueError, match="already taken"):
        clean_registry.register_metric("counter")(MIG)
    with pytest.raises(ValueError, match="already taken by tripod_pl.metrics.classes.InfoMEC"):
        clean_registry.register_metric("infomec")(_Count)
    with pytest.raises(TypeError, match="torchmetrics.Metric"):
        clean_registry.register_metric("x")(dict)


def test_build_metric_fills_the_context_its_constructor_takes():
    info = registry.build_metric("infomec", discrete=False, backend="torch", infoe_protocol="converged")
    assert (info.discrete, info.infoe_protocol) == (False, "converged")
    dci = registry.build_metric({"class_path": "dci", "init_args": {"n_estimators": 7}}, discrete=True)
    assert dci.n_estimators == 7  # discrete is not DCI's argument: ignored
    spec = {"class_path": f"{__name__}._Count", "init_args": {"scale": 2.0}}
    count = registry.build_metric(spec, discrete=True)  # **kwargs does not take the context
    count.update(torch.zeros(3, 2), torch.zeros(3, 1))
    assert count.compute() == {"count": 6.0}
    assert registry.build_metric(count) is count
    assert registry.metric_name(spec) == "_count" and registry.metric_name("mig") == "mig"
    with pytest.raises(TypeError, match="class_path"):
        registry.build_metric({"init_args": {}})
