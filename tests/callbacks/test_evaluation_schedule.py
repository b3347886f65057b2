"""EvaluationCallback's schedule: every n steps, a list of steps, dense-then-sparse, and the initial weights."""

from __future__ import annotations

import pytest

from tripod_pl.callbacks import EvaluationCallback

from ..helpers import tiny_data, tiny_model, tiny_trainer


def test_the_reference_schedule_is_the_start_every_2k_until_10k_then_every_10k():
    cb = EvaluationCallback(every_n_steps=10_000, dense_every_n_steps=2_000, dense_until=10_000, at_start=True)
    scheduled = [t for t in range(0, 50_001) if cb.is_scheduled(t)]
    assert scheduled == [0, 2_000, 4_000, 6_000, 8_000, 10_000, 20_000, 30_000, 40_000, 50_000]


def test_every_n_steps_alone_is_the_plain_period_and_steps_add_to_it():
    assert [t for t in range(13) if EvaluationCallback(every_n_steps=4).is_scheduled(t)] == [4, 8, 12]
    cb = EvaluationCallback(every_n_steps=None, steps=[3, 7])
    assert [t for t in range(13) if cb.is_scheduled(t)] == [3, 7]


@pytest.mark.parametrize("kw", [{"every_n_steps": 0}, {"dense_every_n_steps": 0}, {"steps": [0, 5]}])
def test_invalid_schedules_are_refused(kw):
    with pytest.raises(ValueError):
        EvaluationCallback(**kw)


def test_a_run_evaluates_the_initial_weights_the_dense_phase_the_listed_steps_and_the_end(tmp_path, tiny_h5):
    cb = EvaluationCallback(
        every_n_steps=None, dense_every_n_steps=1, dense_until=2, steps=[4], at_start=True, dci=False, figures=False
    )
    trainer = tiny_trainer(tmp_path, [cb], max_steps=6)
    trainer.fit(tiny_model(), datamodule=tiny_data(tiny_h5))
    assert cb.evaluated_steps == [0, 1, 2, 4, 6]
    assert int(trainer.callback_metrics["eval/step"]) == 6
