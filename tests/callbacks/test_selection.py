"""BestInfoMCheckpoint: the paper's model selection (best InfoM among checkpoints above the PSNR threshold)."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn

from tripod_pl import load_model
from tripod_pl.callbacks import BestInfoMCheckpoint, EvaluationCallback

from ..helpers import tiny_data, tiny_model, tiny_trainer


class FakeTrainer(SimpleNamespace):
    """What the selection reads of a trainer; ``save_checkpoint`` writes the step into the file."""

    def __init__(self, tmp_path):
        super().__init__(
            global_step=0,
            callback_metrics={},
            sanity_checking=False,
            fast_dev_run=False,
            is_global_zero=True,
            loggers=[],
            default_root_dir=str(tmp_path),
            state=SimpleNamespace(fn=TrainerFn.FITTING),
            strategy=SimpleNamespace(broadcast=lambda obj, src=0: obj, barrier=lambda name=None: None),
        )
        self.saved = []

    def save_checkpoint(self, path):
        self.saved.append((self.global_step, os.path.basename(path)))
        os.makedirs(os.path.dirname(path), exist_ok=True)  # as Lightning's checkpoint IO does
        with open(path, "w") as f:
            f.write(str(self.global_step))

    def evaluation(self, step, infom, psnr=None, psnr_key="val/psnr_paper"):
        """An evaluation at ``step``, optionally followed by that step's PSNR."""
        self.global_step = step
        self.callback_metrics.update({"eval/infom": torch.tensor(infom), "eval/step": torch.tensor(float(step))})
        if psnr is not None:
            self.callback_metrics[psnr_key] = torch.tensor(psnr)


def selector(tmp_path, **kw):
    cb = BestInfoMCheckpoint(psnr_threshold=38.0, dirpath=str(tmp_path / "ckpt"), **kw)
    trainer = FakeTrainer(tmp_path)
    cb.setup(trainer, None, "fit")
    return cb, trainer


def evaluate_then_validate(cb, trainer, step, infom, psnr):
    trainer.evaluation(step, infom)
    cb.on_train_batch_end(trainer, None, None, None, 0)  # evaluation done, validation of this step not yet
    trainer.callback_metrics["val/psnr_paper"] = torch.tensor(psnr)
    cb.on_validation_end(trainer, None)


def test_keeps_the_best_infom_among_checkpoints_above_the_psnr_threshold(tmp_path):
    cb, trainer = selector(tmp_path)
    for step, infom, psnr in [(1, 0.5, 39.0), (2, 0.9, 37.0), (3, 0.6, 38.0), (4, 0.4, 45.0), (5, 0.8, 38.5)]:
        evaluate_then_validate(cb, trainer, step, infom, psnr)
    # step 2 has the best InfoM but PSNR below 38; step 3 sits exactly on the threshold (must exceed it)
    assert [s for s, _ in trainer.saved] == [1, 5]
    assert (cb.best_infom, cb.best_step, cb.best_psnr) == (pytest.approx(0.8), 5, pytest.approx(38.5))
    path = tmp_path / "ckpt" / "best-infom.ckpt"
    assert cb.best_model_path == str(path) and path.read_text() == "5"
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["best-infom.ckpt"]  # the temporary file was renamed
    assert float(trainer.callback_metrics["eval/best_infom"]) == pytest.approx(0.8)
    assert float(cb.best_model_score) == pytest.approx(0.8)


def test_below_the_threshold_nothing_is_saved(tmp_path):
    cb, trainer = selector(tmp_path)
    evaluate_then_validate(cb, trainer, 1, 0.99, 20.0)
    assert trainer.saved == [] and cb.best_infom is None and "eval/best_infom" not in trainer.callback_metrics


def test_waits_for_the_validation_psnr_of_the_same_weights(tmp_path):
    cb, trainer = selector(tmp_path)
    trainer.callback_metrics["val/psnr_paper"] = torch.tensor(40.0)  # from an earlier validation
    trainer.evaluation(3, 0.7)
    cb.on_train_batch_end(trainer, None, None, None, 0)
    assert trainer.saved == []  # the PSNR on record is not of these weights
    trainer.callback_metrics["val/psnr_paper"] = torch.tensor(41.0)
    cb.on_validation_end(trainer, None)
    assert [s for s, _ in trainer.saved] == [3] and trainer.saved[0][1].startswith(".best-infom.ckpt.")
    assert cb.best_psnr == pytest.approx(41.0)
    cb.on_validation_end(trainer, None)  # the same step again: already decided
    cb.on_train_end(trainer, None)
    assert len(trainer.saved) == 1


def test_warns_about_evaluations_without_a_validation_at_their_step(tmp_path):
    cb, trainer = selector(tmp_path)
    trainer.evaluation(2, 0.7, psnr=40.0)
    cb.on_validation_end(trainer, None)  # validation at step 2
    trainer.evaluation(3, 0.9)  # evaluated, never validated
    cb.on_train_batch_end(trainer, None, None, None, 0)
    with pytest.warns(UserWarning, match=r"steps \[3\]"):
        cb.on_train_end(trainer, None)
    assert [s for s, _ in trainer.saved] == [2]


def test_with_eval_psnr_the_evaluation_decides_at_once(tmp_path):
    cb, trainer = selector(tmp_path, psnr_stage="eval")
    trainer.evaluation(2, 0.6, psnr=39.0, psnr_key="eval/psnr_paper")
    cb.on_train_batch_end(trainer, None, None, None, 0)
    assert [s for s, _ in trainer.saved] == [2]


@pytest.mark.parametrize("metric", ["psnr_paper", "psnr"])
def test_selects_on_the_chosen_psnr_the_papers_by_default(tmp_path, metric):
    cb, trainer = selector(tmp_path) if metric == "psnr_paper" else selector(tmp_path, psnr_metric=metric)
    assert cb.psnr_key == f"val/{metric}"
    # the two scales disagree: the uint8 PSNR is above the threshold (38) where the correct one is below
    for step, infom, paper, correct in [(1, 0.5, 39.0, 37.0), (2, 0.4, 37.5, 38.5)]:
        trainer.evaluation(step, infom)
        trainer.callback_metrics.update({"val/psnr_paper": torch.tensor(paper), "val/psnr": torch.tensor(correct)})
        cb.on_validation_end(trainer, None)
    assert [s for s, _ in trainer.saved] == ([1] if metric == "psnr_paper" else [2])


def test_only_evaluations_at_multiples_of_every_n_steps_are_candidates(tmp_path, recwarn):
    cb, trainer = selector(tmp_path, every_n_steps=10)
    for step, infom in [(2, 0.9), (4, 0.95), (10, 0.5), (20, 0.6), (24, 0.99)]:
        trainer.evaluation(step, infom)
        cb.on_train_batch_end(trainer, None, None, None, 0)
        if step % 10 == 0:  # validation runs at the candidate steps only
            trainer.callback_metrics["val/psnr_paper"] = torch.tensor(40.0)
            cb.on_validation_end(trainer, None)
    cb.on_train_end(trainer, None)
    assert [s for s, _ in trainer.saved] == [10, 20] and cb.best_step == 20
    assert not [w for w in recwarn if "BestInfoMCheckpoint" in str(w.message)]  # 2, 4, 24: passed over quietly
    with pytest.raises(ValueError, match="every_n_steps"):
        BestInfoMCheckpoint(38.0, every_n_steps=0)


def test_rejects_unknown_psnr_metrics_and_stages():
    with pytest.raises(ValueError, match="psnr_metric"):
        BestInfoMCheckpoint(38.0, psnr_metric="ssim")
    with pytest.raises(ValueError, match="psnr_stage"):
        BestInfoMCheckpoint(38.0, psnr_stage="train")


def test_ignores_sanity_checks_and_stale_evaluations(tmp_path):
    cb, trainer = selector(tmp_path)
    trainer.evaluation(2, 0.6, psnr=39.0)
    trainer.global_step = 3  # the evaluation on record is of step 2's weights
    cb.on_validation_end(trainer, None)
    trainer.global_step, trainer.sanity_checking = 2, True
    cb.on_validation_end(trainer, None)
    assert trainer.saved == []


def test_resumed_state_keeps_comparing_against_the_best_so_far(tmp_path):
    cb, trainer = selector(tmp_path)
    evaluate_then_validate(cb, trainer, 1, 0.7, 40.0)
    state = cb.state_dict()

    resumed, trainer2 = selector(tmp_path)
    resumed.load_state_dict(state)
    evaluate_then_validate(resumed, trainer2, 2, 0.6, 40.0)
    assert trainer2.saved == [] and resumed.best_infom == pytest.approx(0.7) and resumed.best_step == 1
    evaluate_then_validate(resumed, trainer2, 3, 0.75, 40.0)
    assert [s for s, _ in trainer2.saved] == [3]

    for other in (BestInfoMCheckpoint(psnr_threshold=30.0), BestInfoMCheckpoint(38.0, psnr_metric="psnr")):
        with pytest.warns(UserWarning, match="forgotten"):
            other.load_state_dict(state)
        assert other.best_infom is None


def test_rejects_folders_in_the_filename():
    with pytest.raises(ValueError, match="dirpath"):
        BestInfoMCheckpoint(38.0, filename="sub/best.ckpt")


def test_saves_a_loadable_checkpoint_during_training(tmp_path, tiny_h5):
    select = BestInfoMCheckpoint(psnr_threshold=0.0)
    never = BestInfoMCheckpoint(psnr_threshold=1000.0, filename="never.ckpt")
    evaluation = EvaluationCallback(every_n_steps=2, dci=False, figures=False)
    trainer = tiny_trainer(
        tmp_path, [select, evaluation, never], max_steps=4, val_check_interval=2, enable_checkpointing=True
    )
    model = tiny_model()
    trainer.fit(model, datamodule=tiny_data(tiny_h5))
    # Lightning runs checkpoint callbacks last, so the evaluation of a step is there when they decide
    assert trainer.callbacks.index(select) > trainer.callbacks.index(evaluation)
    assert select.best_step in (2, 4) and never.best_model_path == ""
    path = select.best_model_path
    assert os.path.basename(path) == "best-infom.ckpt" and os.path.dirname(path).endswith("checkpoints")
    assert not os.path.exists(os.path.join(os.path.dirname(path), "never.ckpt"))
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == select.best_step
    state = ckpt["callbacks"][select.state_key]
    assert state["best_step"] == select.best_step and state["best_infom"] == pytest.approx(select.best_infom)
    load_model(path)


class RecordingEvaluation(EvaluationCallback):
    def evaluate(self, trainer, pl_module):
        scalars = super().evaluate(trainer, pl_module)
        self.infom = {**getattr(self, "infom", {}), trainer.global_step: scalars["infom"]}
        return scalars


def test_a_plain_model_checkpoint_can_monitor_the_evaluation(tmp_path, tiny_h5):
    evaluation = RecordingEvaluation(every_n_steps=2, dci=False, figures=False)
    checkpoint = ModelCheckpoint(
        dirpath=str(tmp_path / "mc"), monitor="eval/infom", mode="max", every_n_train_steps=2, save_top_k=1
    )
    trainer = tiny_trainer(tmp_path, [checkpoint, evaluation], max_steps=4, enable_checkpointing=True)
    trainer.fit(tiny_model(), datamodule=tiny_data(tiny_h5))
    best_step = max(evaluation.infom, key=evaluation.infom.get)
    assert sorted(evaluation.infom) == [2, 4]
    assert float(checkpoint.best_model_score) == pytest.approx(evaluation.infom[best_step])
    assert torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=False)["global_step"] == best_step
