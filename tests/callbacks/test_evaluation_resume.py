"""EvaluationCallback across a restart: an evaluation cut short by an interrupt, or still running in the
background when a checkpoint was saved, is done again by the resumed run, on the same weights."""

from __future__ import annotations

import threading

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

import tripod_pl.callbacks.evaluation as evaluation_module
from tripod_pl.callbacks import BestInfoMCheckpoint, EvaluationCallback
from tripod_pl.callbacks.interrupt import InterruptCheckpoint

from ..helpers import InterruptAt, tiny_data, tiny_model, tiny_trainer


def _evaluation(**kw) -> EvaluationCallback:
    return EvaluationCallback(every_n_steps=2, dci=False, figures=False, evaluate_at_end=False, **kw)


def _selection(root) -> BestInfoMCheckpoint:
    return BestInfoMCheckpoint(psnr_threshold=0.0, psnr_metric="psnr", psnr_stage="eval", dirpath=str(root))


def _fit(root, tiny_h5, callbacks, ckpt_path=None, **kw) -> L.Trainer:
    kw.setdefault("max_steps", 3)
    kw.setdefault("enable_checkpointing", True)
    trainer = tiny_trainer(root, callbacks, **kw)
    torch.manual_seed(0)
    trainer.fit(tiny_model(), datamodule=tiny_data(tiny_h5), ckpt_path=ckpt_path)
    return trainer


def _uninterrupted(tmp_path, tiny_h5) -> tuple[float, BestInfoMCheckpoint]:
    selection = _selection(tmp_path / "full")
    trainer = _fit(tmp_path / "full", tiny_h5, [_evaluation(), selection])
    return float(trainer.callback_metrics["eval/infom"]), selection


class _TermAt(InterruptAt):
    """SIGTERM's graceful stop (Lightning raises it after a batch) after training step ``step``."""

    error = SIGTERMException


def test_an_evaluation_cut_short_by_an_interrupt_is_done_again_on_resume(tmp_path, tiny_h5, monkeypatch):
    infom, full = _uninterrupted(tmp_path, tiny_h5)
    real = evaluation_module.evaluate_model

    def interrupted(*args, **kwargs):  # the signal arrives while step 2 is being evaluated
        monkeypatch.setattr(evaluation_module, "evaluate_model", real)
        raise SIGTERMException

    monkeypatch.setattr(evaluation_module, "evaluate_model", interrupted)
    part = tmp_path / "part"
    with pytest.raises(SIGTERMException):
        _fit(part, tiny_h5, [_evaluation(), InterruptCheckpoint()])
    last = part / "checkpoints" / "last.ckpt"
    state = torch.load(last, map_location="cpu", weights_only=False)
    assert state["global_step"] == 2

    evaluation, selection = _evaluation(), _selection(part)
    trainer = _fit(part, tiny_h5, [evaluation, selection], ckpt_path=str(last))
    assert evaluation.evaluated_steps == [2]  # at the start of the resumed run, on the weights of step 2
    assert float(trainer.callback_metrics["eval/infom"]) == infom
    assert (selection.best_step, selection.best_infom) == (full.best_step, full.best_infom) == (2, infom)


def test_an_evaluation_running_when_a_checkpoint_was_saved_is_done_again_on_resume(tmp_path, tiny_h5, monkeypatch):
    infom, _ = _uninterrupted(tmp_path, tiny_h5)
    real, release = evaluation_module.evaluate_model, threading.Event()

    def held(*args, **kwargs):  # the background evaluation of step 2 outlasts the run
        release.wait(timeout=60)
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluation_module, "evaluate_model", held)
    part = tmp_path / "part"
    every_two = ModelCheckpoint(dirpath=str(part / "checkpoints"), every_n_train_steps=2, save_top_k=-1)
    try:
        with pytest.raises(SIGTERMException):
            _fit(part, tiny_h5, [_evaluation(asynchronous=True), every_two, InterruptCheckpoint(), _TermAt(3)])
    finally:
        release.set()
    monkeypatch.setattr(evaluation_module, "evaluate_model", real)
    step2 = next((part / "checkpoints").glob("*step=2.ckpt"))
    saved = torch.load(step2, map_location="cpu", weights_only=False)["callbacks"]
    (evaluation_state,) = (v for k, v in saved.items() if k.startswith("EvaluationCallback"))
    assert evaluation_state == {"last_step": None, "in_flight_step": 2}

    evaluation = _evaluation(asynchronous=True)
    trainer = _fit(part / "resumed", tiny_h5, [evaluation], ckpt_path=str(step2))
    assert evaluation.evaluated_steps == [2]
    assert float(trainer.callback_metrics["eval/infom"]) == infom

    # from the checkpoint of step 3 (saved on SIGTERM) the weights of step 2 are gone: said, not repeated
    evaluation = _evaluation(asynchronous=True)
    with pytest.warns(UserWarning, match="evaluation of step 2 was still running when the checkpoint of step 3"):
        _fit(part / "late", tiny_h5, [evaluation], ckpt_path=str(part / "checkpoints" / "last.ckpt"), max_steps=4)
    assert evaluation.evaluated_steps == [4]


def test_a_finished_evaluation_is_not_repeated_on_resume(tmp_path, tiny_h5):
    root = tmp_path / "run"
    every_two = ModelCheckpoint(dirpath=str(root / "checkpoints"), every_n_train_steps=2, save_top_k=-1)
    _fit(root, tiny_h5, [_evaluation(), every_two])
    evaluation = _evaluation()
    _fit(root, tiny_h5, [evaluation], ckpt_path=str(next((root / "checkpoints").glob("*step=2.ckpt"))), max_steps=4)
    assert evaluation.evaluated_steps == [4]
