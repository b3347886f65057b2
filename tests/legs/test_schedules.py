"""Weight schedules: values at given steps (worked by hand), specs, errors, and how the model and the module
apply and record them."""

from __future__ import annotations

import math

import pytest
import torch

from tripod_pl import TripodModule
from tripod_pl.legs import KL, Constant, CosineAnnealing, Cyclic, GaussianBottleneck, LinearWarmup, build_schedule
from tripod_pl.model import TripodAutoencoder

from ..helpers import TINY


def test_constant():
    assert [Constant()(t) for t in (0, 10**6)] == [1.0, 1.0]
    assert Constant(0.25)(7) == 0.25


def test_linear_warmup_values():
    s = LinearWarmup(steps=4)
    assert [s(t) for t in range(6)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    delayed = LinearWarmup(steps=10, start=2.0, end=-1.0, delay=5)
    assert [delayed(t) for t in (0, 5, 10, 15, 100)] == [2.0, 2.0, 0.5, -1.0, -1.0]


def test_cosine_annealing_values():
    up = CosineAnnealing(steps=100)
    assert [up(t) for t in (0, 50, 100, 1000)] == pytest.approx([0.0, 0.5, 1.0, 1.0], abs=1e-15)
    assert up(25) == pytest.approx((1 - math.cos(math.pi / 4)) / 2)  # 0.1464...
    down = CosineAnnealing(steps=100, start=1.0, end=0.0, delay=10)
    assert [down(t) for t in (0, 10, 35, 60, 110)] == pytest.approx(
        [1.0, 1.0, (1 + math.cos(math.pi / 4)) / 2, 0.5, 0.0]
    )


def test_cyclic_values_as_in_fu_et_al():
    # period 10, ramp over the first half (R = 0.5), then hold: 0, .2, .4, .6, .8, 1, 1, 1, 1, 1, 0, .2, ...
    s = Cyclic(period=10, ratio=0.5)
    assert [s(t) for t in range(12)] == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1, 1, 1, 1, 1, 0, 0.2])
    limited = Cyclic(period=10, ratio=0.5, start=0.1, end=0.6, cycles=2)
    assert [limited(t) for t in (0, 5, 12, 19, 20, 21, 25)] == pytest.approx([0.1, 0.6, 0.3, 0.6, 0.6, 0.6, 0.6])
    assert Cyclic(period=4, ratio=1.0)(3) == 0.75


@pytest.mark.parametrize(
    "schedule", [Constant(0.5), LinearWarmup(10, 0.1, 0.9, 3), CosineAnnealing(7, 1.0, 0.0), Cyclic(8, 0.25, cycles=3)]
)
def test_spec_rebuilds_an_equal_schedule(schedule):
    spec = schedule.spec()
    again = build_schedule(spec)
    assert type(again) is type(schedule) and again.spec() == spec
    assert [again(t) for t in range(40)] == [schedule(t) for t in range(40)]
    short = build_schedule({"class_path": type(schedule).__name__, "init_args": spec["init_args"]})
    assert short.spec() == spec


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: LinearWarmup(steps=0), "LinearWarmup steps must be >= 1"),
        (lambda: LinearWarmup(steps=5, delay=-1), "LinearWarmup delay must be >= 0"),
        (lambda: CosineAnnealing(steps=0), "CosineAnnealing steps must be >= 1"),
        (lambda: Cyclic(period=0), "Cyclic period must be >= 1"),
        (lambda: Cyclic(period=5, ratio=0.0), r"Cyclic ratio must be in \(0, 1\]"),
        (lambda: Cyclic(period=5, cycles=0), "Cyclic cycles must be >= 1"),
        (lambda: build_schedule({"class_path": "Exponential"}), "unknown weight schedule 'Exponential'"),
    ],
)
def test_bad_schedules_are_one_line_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_the_model_multiplies_the_legs_weight_by_the_schedule_at_the_step():
    torch.manual_seed(0)
    schedules = {
        "kl": LinearWarmup(steps=10),
        "reconstruction": {"class_path": "Constant", "init_args": {"value": 2.0}},
    }
    model = TripodAutoencoder(
        GaussianBottleneck(sample_in_eval=False), [KL(beta=4.0)], n_z=3, weight_schedules=schedules, **TINY
    )
    model.eval()
    x = torch.rand(4, 3, 64, 64) * 2 - 1
    for step, kl_weight in [(0, 0.0), (3, 1.2), (10, 4.0), (50, 4.0)]:
        loss, terms, _ = model(x, step=step)
        torch.testing.assert_close(loss, 2.0 * terms["reconstruction"] + kl_weight * terms["kl"])
        assert model.scheduled_weights(step) == pytest.approx({"kl": kl_weight, "reconstruction": 2.0})
    loss, terms, _ = model(x)  # without a step: the configured weights
    torch.testing.assert_close(loss, terms["reconstruction"] + 4.0 * terms["kl"])


def test_a_schedule_for_a_term_no_leg_returns_is_a_clear_error():
    model = TripodAutoencoder(GaussianBottleneck(), [KL()], n_z=3, weight_schedules={"kll": LinearWarmup(5)}, **TINY)
    with pytest.raises(ValueError, match=r"weight_schedules: no leg returns the term\(s\) \['kll'\]"):
        model(torch.rand(2, 3, 64, 64) * 2 - 1, step=0)


def test_the_module_records_the_schedules_as_plain_data_and_rebuilds_them():
    module = TripodModule(
        GaussianBottleneck(), [KL(beta=2.0)], n_z=3, weight_schedules={"kl": Cyclic(period=6)}, **TINY
    )
    spec = module.hparams["weight_schedules"]
    args = {"period": 6, "ratio": 0.5, "start": 0.0, "end": 1.0, "cycles": None}
    assert spec == {"kl": {"class_path": "tripod_pl.legs.schedules.Cyclic", "init_args": args}}
    again = TripodModule(**module.hparams)  # what load_from_checkpoint does
    assert again.model.scheduled_weights(2) == module.model.scheduled_weights(2) == pytest.approx({"kl": 2 / 3 * 2.0})
    assert "weight_schedules" not in TripodModule(GaussianBottleneck(), [KL()], n_z=3, **TINY).hparams
