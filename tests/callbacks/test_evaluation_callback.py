"""EvaluationCallback: when it fires, what it logs (scalars, figures, TensorBoard events), and rank behaviour."""

from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import tripod_pl.metrics
import tripod_pl.metrics.classes
from tripod_pl.callbacks import EvaluationCallback
from tripod_pl.data.transforms import to_float_images

from ..helpers import tiny_data, tiny_model, tiny_trainer

SCALAR_TAGS = {f"eval/{k}" for k in ("infom", "infoc", "infoe", "d", "c", "i", "num_active", "psnr")}


def fit(tmp_path, tiny_h5, callback, **trainer_kw):
    trainer = tiny_trainer(tmp_path, [callback], **trainer_kw)
    model, data = tiny_model(), tiny_data(tiny_h5)
    trainer.fit(model, datamodule=data)
    return trainer, model, data


@pytest.mark.parametrize(
    ("max_steps", "every", "at_end", "expected"),
    [(7, 3, True, [3, 6, 7]), (7, 3, False, [3, 6]), (6, 3, True, [3, 6]), (2, 5, True, [2])],
)
def test_fires_at_multiples_of_every_n_steps_and_at_the_end(tmp_path, tiny_h5, max_steps, every, at_end, expected):
    cb = EvaluationCallback(every_n_steps=every, dci=False, figures=False, evaluate_at_end=at_end)
    trainer, _, _ = fit(tmp_path, tiny_h5, cb, max_steps=max_steps)
    assert cb.evaluated_steps == expected
    assert cb.last_step == expected[-1]
    assert int(trainer.callback_metrics["eval/step"]) == expected[-1]


def test_fires_once_per_optimizer_step_under_gradient_accumulation(tmp_path, tiny_h5):
    cb = EvaluationCallback(every_n_steps=2, dci=False, figures=False)
    fit(tmp_path, tiny_h5, cb, max_steps=4, accumulate_grad_batches=3)
    assert cb.evaluated_steps == [2, 4]


def test_does_not_run_under_fast_dev_run(tmp_path, tiny_h5):
    cb = EvaluationCallback(every_n_steps=1, dci=False, figures=False)
    fit(tmp_path, tiny_h5, cb, fast_dev_run=3)
    assert cb.evaluated_steps == []


def test_does_not_run_during_the_sanity_check_or_validation(tmp_path, tiny_h5, monkeypatch):
    seen = []
    cb = EvaluationCallback(every_n_steps=2, dci=False, figures=False)
    original = cb.evaluate

    def spy(trainer, pl_module):
        seen.append((trainer.global_step, trainer.sanity_checking, trainer.validating))
        return original(trainer, pl_module)

    monkeypatch.setattr(cb, "evaluate", spy)
    fit(tmp_path, tiny_h5, cb, max_steps=4, val_check_interval=1, num_sanity_val_steps=2)
    assert seen == [(2, False, False), (4, False, False)]


def test_logged_scalars_equal_the_metrics_of_the_same_latents(tmp_path, tiny_h5):
    cb = EvaluationCallback(every_n_steps=3, dci=True, figures=False)
    trainer, model, data = fit(tmp_path, tiny_h5, cb, max_steps=3)
    images, sources = data.eval_subset()
    model.eval()
    with torch.no_grad():
        latents = model.encode(to_float_images(images))
        recon = model.decode(latents)
    torch.testing.assert_close(cb.last_evaluation.latents, latents)
    info = tripod_pl.metrics.infomec(sources, latents, discrete=True)
    dci = tripod_pl.metrics.dci(sources, latents)
    m = {k: float(v) for k, v in trainer.callback_metrics.items()}
    assert m["eval/infom"] == pytest.approx(info["infom"], abs=1e-6)
    assert m["eval/infoc"] == pytest.approx(info["infoc"], abs=1e-6)
    assert m["eval/infoe"] == pytest.approx(info["infoe"], abs=1e-6)
    assert m["eval/num_active"] == int(torch.as_tensor(info["active"]).sum())
    assert m["eval/d"] == pytest.approx(dci["d"], abs=1e-6)
    assert m["eval/c"] == pytest.approx(dci["c"], abs=1e-6)
    assert m["eval/i"] == pytest.approx(dci["i"], abs=1e-6)
    mse = (((recon + 1) / 2 - (to_float_images(images) + 1) / 2) ** 2).flatten(1).mean(1)
    assert m["eval/psnr"] == pytest.approx(float((10 * torch.log10(1 / mse)).mean()), rel=1e-5)


def test_tensorboard_events_hold_the_scalars_figures_images_and_histograms(tmp_path, tiny_h5):
    logger = TensorBoardLogger(str(tmp_path), name="tb")
    cb = EvaluationCallback(every_n_steps=2, dci=True, figures=True, traversal_steps=3, num_traversal_samples=2)
    trainer, model, _ = fit(tmp_path, tiny_h5, cb, max_steps=5, logger=logger, log_every_n_steps=1)
    events = EventAccumulator(logger.log_dir, size_guidance={"images": 0, "scalars": 0, "histograms": 0})
    events.Reload()
    tags = events.Tags()
    assert SCALAR_TAGS | {"eval/seconds"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("eval/infom")] == [2, 4, 5]  # 5: the end of training
    assert float(trainer.callback_metrics["eval/infom"]) == pytest.approx(events.Scalars("eval/infom")[-1].value)
    images = {"eval/nmi", "eval/reconstructions", "eval/traversals", "eval/latent_histograms"}
    assert images <= set(tags["images"])
    assert [e.step for e in events.Images("eval/nmi")] == [2, 4, 5]
    recon = events.Images("eval/reconstructions")[-1]
    # a figure of the 8 x 2 grid (530 x 134 px at 80 px/inch) with its row labels and title, rendered at 100 dpi
    grid_w, grid_h = 8 * 66 + 2, 2 * 66 + 2
    assert (recon.width, recon.height) == (int((grid_w / 80 + 1.15) * 100), int((grid_h / 80 + 0.4) * 100))
    assert {f"eval/latents/z{j}" for j in range(model.n_z)} <= set(tags["histograms"])


def test_without_tensorboard_it_logs_scalars_and_skips_figures(tmp_path, tiny_h5):
    logger = CSVLogger(str(tmp_path), name="csv")
    cb = EvaluationCallback(every_n_steps=2, dci=False, figures=True)
    trainer, _, _ = fit(tmp_path, tiny_h5, cb, max_steps=2, logger=logger)
    logger.save()
    text = (tmp_path / "csv" / "version_0" / "metrics.csv").read_text()
    assert "eval/infom" in text.splitlines()[0]
    assert "eval/infom" in trainer.callback_metrics


def test_training_mode_and_random_streams_are_left_as_they_were(tiny_h5, monkeypatch):
    real_infomec = tripod_pl.metrics.infomec

    def infomec_drawing_from_the_global_generators(*args, **kwargs):
        torch.rand(4), np.random.rand(4), random.random()
        return real_infomec(*args, **kwargs)

    # the InfoMEC metric class calls the functional form it imported
    monkeypatch.setattr(tripod_pl.metrics.classes, "infomec", infomec_drawing_from_the_global_generators)
    model = tiny_model()
    model.train()
    model.model.decoder.eval()  # a submodule deliberately in eval mode stays so
    data = tiny_data(tiny_h5, eval_size=50)
    cb = EvaluationCallback(every_n_steps=1, dci=False, figures=False)
    trainer = SimpleNamespace(
        global_step=1,
        is_global_zero=True,
        datamodule=data,
        loggers=[],
        callback_metrics={},
        strategy=SimpleNamespace(broadcast=lambda obj, src=0: obj),
    )

    def seed():
        torch.manual_seed(123), np.random.seed(123), random.seed(123)

    seed()
    expected = torch.rand(3), np.random.rand(3), random.random()
    seed()
    cb.evaluate(trainer, model)
    torch.testing.assert_close(torch.rand(3), expected[0])
    np.testing.assert_array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]
    assert model.training and model.model.encoder.training and not model.model.decoder.training
    assert float(trainer.callback_metrics["eval/step"]) == 1


def _rank(is_zero: bool, broadcast):
    return SimpleNamespace(
        global_step=5,
        is_global_zero=is_zero,
        loggers=[],
        callback_metrics={},
        strategy=SimpleNamespace(broadcast=broadcast),
        datamodule=SimpleNamespace(eval_subset=lambda: pytest.fail("only global rank 0 reads the subset")),
    )


def test_other_ranks_take_the_scalars_from_rank_zero_without_computing():
    from_rank_zero = {"scalars": {"infom": 0.75, "psnr": 30.0}}
    trainer = _rank(False, lambda obj, src=0: from_rank_zero)
    cb = EvaluationCallback(every_n_steps=5)
    assert cb.evaluate(trainer, tiny_model()) == {"infom": 0.75, "psnr": 30.0}
    assert float(trainer.callback_metrics["eval/infom"]) == 0.75 and int(trainer.callback_metrics["eval/step"]) == 5


def test_a_failure_on_rank_zero_stops_every_rank_instead_of_hanging_them():
    failed = {"error": "ValueError: bad subset"}
    with pytest.raises(RuntimeError, match="failed on global rank 0: ValueError: bad subset"):
        EvaluationCallback().evaluate(_rank(False, lambda obj, src=0: failed), tiny_model())

    sent = []
    trainer = _rank(True, lambda obj, src=0: sent.append(obj) or obj)
    trainer.datamodule = SimpleNamespace(eval_subset=lambda: (_ for _ in ()).throw(ValueError("bad subset")))
    with pytest.raises(ValueError, match="bad subset"):
        EvaluationCallback().evaluate(trainer, tiny_model())
    assert sent == [failed]  # the error went out to the other ranks before rank 0 raised


def test_state_round_trip_prevents_repeating_an_evaluated_step():
    cb = EvaluationCallback(every_n_steps=2)
    cb.last_step = 4
    other = EvaluationCallback(every_n_steps=2)
    other.load_state_dict(cb.state_dict())
    assert other.last_step == 4


def test_rejects_data_without_an_evaluation_subset(tmp_path):
    cb = EvaluationCallback()
    trainer = SimpleNamespace(strategy=object(), datamodule=None)
    with pytest.raises(TypeError, match="eval_subset"):
        cb.setup(trainer, tiny_model(), "fit")
    with pytest.raises(ValueError, match="every_n_steps"):
        EvaluationCallback(every_n_steps=0)


def test_hessian_statistics_pairwise_histograms_and_the_infoe_protocol_are_options(tmp_path, tiny_h5, monkeypatch):
    import tripod_pl.callbacks.evaluation as evaluation_module
    from tripod_pl.evaluation import decoder_hessian_stats

    calls = []
    original = evaluation_module.evaluate_model

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(evaluation_module, "evaluate_model", spy)
    logger = TensorBoardLogger(str(tmp_path), name="tb")
    cb = EvaluationCallback(
        every_n_steps=2,
        dci=False,
        num_traversal_samples=1,
        traversal_steps=2,
        infoe_protocol="converged",
        hessian_samples=2,
        pairwise_histograms=True,
    )
    trainer, model, _ = fit(tmp_path, tiny_h5, cb, max_steps=2, logger=logger)
    assert [(c["infoe_protocol"], c["hessian_samples"]) for c in calls] == [("converged", 2)]
    expected = decoder_hessian_stats(model.model, cb.last_evaluation.latents, 2)
    assert {f"hessian/{name}/rescaled/diagonal_share" for name in model.model.decoder.names} <= set(expected)
    for key, value in expected.items():
        assert float(trainer.callback_metrics[f"eval/{key}"]) == pytest.approx(value, rel=1e-5, abs=1e-12)
    events = EventAccumulator(logger.log_dir, size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    assert {f"eval/{key}" for key in expected} <= set(events.Tags()["scalars"])
    assert {"eval/hessian", "eval/pairwise_latents"} <= set(events.Tags()["images"])
    with pytest.raises(ValueError, match="infoe_protocol"):
        EvaluationCallback(infoe_protocol="sklearn")
    with pytest.raises(ValueError, match="hessian_samples"):
        EvaluationCallback(hessian_samples=-1)


def test_the_new_diagnostics_are_off_by_default(tmp_path, tiny_h5):
    cb = EvaluationCallback()
    assert (cb.infoe_protocol, cb.hessian_samples, cb.pairwise_histograms) == ("paper", 0, False)


# ---- metrics option ------------------------------------------------------------------------------------
def test_listed_metrics_are_logged_with_the_values_of_their_functional_forms(tmp_path, tiny_h5):
    cb = EvaluationCallback(every_n_steps=2, dci=False, figures=False, metrics=["infomec", "mig", "dci"])
    trainer, model, data = fit(tmp_path, tiny_h5, cb, max_steps=2)
    _, sources = data.eval_subset()
    latents = cb.last_evaluation.latents
    m = {k: float(v) for k, v in trainer.callback_metrics.items()}
    assert m["eval/mig"] == pytest.approx(float(tripod_pl.metrics.mig(sources, latents)["mig"]), abs=1e-6)
    assert m["eval/infom"] == pytest.approx(tripod_pl.metrics.infomec(sources, latents, True)["infom"], abs=1e-6)
    assert "eval/d" not in m  # dci=False drops it from the list


@pytest.mark.parametrize(
    ("metrics", "message"),
    [(["infomec", "nope"], "no metric named 'nope'"), (["dci"], "must include 'infomec'"), (["infomec"] * 2, "twice")],
)
def test_a_bad_metrics_list_fails_at_construction(metrics, message):
    with pytest.raises(ValueError, match=message):
        EvaluationCallback(metrics=metrics)


# ---- asynchronous evaluation ---------------------------------------------------------------------------
class _Recording(CSVLogger):
    """A CSV logger that also keeps every ``log_metrics`` call."""

    def __init__(self, root):
        super().__init__(str(root), name="rec")
        self.calls = []

    def log_metrics(self, metrics, step=None):
        self.calls.append((step, dict(metrics)))
        super().log_metrics(metrics, step)


def _eval_calls(logger):
    return {step: m for step, m in logger.calls if "eval/infom" in m}


def test_asynchronous_evaluation_logs_the_same_scores_at_the_same_steps_and_leaves_training_alone(tmp_path, tiny_h5):
    runs = {}
    for asynchronous in (False, True):
        logger = _Recording(tmp_path / str(asynchronous))
        cb = EvaluationCallback(every_n_steps=2, dci=True, figures=True, animation_frames=0, asynchronous=asynchronous)
        trainer, model, _ = fit(tmp_path / str(asynchronous), tiny_h5, cb, max_steps=5, logger=logger)
        runs[asynchronous] = (cb, logger, model)
    runs_dirs = ("False", "True")
    (sync_cb, sync_log, sync_model), (async_cb, async_log, async_model) = runs[False], runs[True]
    assert async_cb.evaluated_steps == sync_cb.evaluated_steps == [2, 4, 5]
    sync_evals, async_evals = _eval_calls(sync_log), _eval_calls(async_log)
    assert sorted(async_evals) == [2, 4, 5]
    for step in (2, 4, 5):  # the snapshot of step t scores as the weights at step t did
        for key in ("eval/infom", "eval/infoc", "eval/infoe", "eval/d", "eval/psnr", "eval/num_active"):
            assert async_evals[step][key] == sync_evals[step][key], (step, key)
    for a, b in zip(sync_model.parameters(), async_model.parameters()):  # training is not perturbed
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # figures rendered in the worker reach the logger at their steps (a CSV logger gets PNG files)
    files = {run: sorted(p.relative_to(tmp_path / run) for p in (tmp_path / run).rglob("*.png")) for run in runs_dirs}
    assert files["True"] == files["False"] and any("nmi/step_0000002" in str(p) for p in files["True"])
    assert async_cb._executor is None  # shut down at teardown


def test_asynchronous_evaluation_waits_for_a_pending_one_before_the_next(tmp_path, tiny_h5, monkeypatch):
    import tripod_pl.callbacks.evaluation as evaluation_module

    real, running = evaluation_module.evaluate_model, []

    def slow(*args, **kwargs):
        running.append(1)
        assert len(running) == 1, "two evaluations in flight"
        try:
            return real(*args, **kwargs)
        finally:
            running.pop()

    monkeypatch.setattr(evaluation_module, "evaluate_model", slow)
    logger = _Recording(tmp_path)
    cb = EvaluationCallback(every_n_steps=1, dci=False, figures=False, asynchronous=True)
    fit(tmp_path, tiny_h5, cb, max_steps=4, logger=logger)
    assert sorted(_eval_calls(logger)) == [1, 2, 3, 4]


def test_a_failure_in_the_worker_stops_training(tmp_path, tiny_h5, monkeypatch):
    import tripod_pl.callbacks.evaluation as evaluation_module

    def broken(*args, **kwargs):
        raise FloatingPointError("broken metric")

    monkeypatch.setattr(evaluation_module, "evaluate_model", broken)
    cb = EvaluationCallback(every_n_steps=1, dci=False, figures=False, asynchronous=True)
    with pytest.raises(FloatingPointError, match="broken metric"):
        fit(tmp_path, tiny_h5, cb, max_steps=3)


@pytest.mark.parametrize("kind", ["psnr_stage_val", "monitor"])
def test_asynchronous_evaluation_refuses_checkpoints_it_cannot_pair_with_their_weights(tmp_path, tiny_h5, kind):
    from lightning.pytorch.callbacks import ModelCheckpoint

    from tripod_pl.callbacks import BestInfoMCheckpoint

    selection = BestInfoMCheckpoint(psnr_threshold=0.0, psnr_stage="val")
    if kind == "monitor":
        selection = ModelCheckpoint(dirpath=str(tmp_path), monitor="eval/infom", mode="max")
    cb = EvaluationCallback(every_n_steps=1, dci=False, figures=False, asynchronous=True)
    trainer = tiny_trainer(tmp_path, [cb, selection], enable_checkpointing=True)
    with pytest.raises(ValueError, match=r"asynchronous=True\) cannot be combined"):
        trainer.fit(tiny_model(), datamodule=tiny_data(tiny_h5))


def test_asynchronous_selection_keeps_the_weights_of_the_step_it_chose(tmp_path, tiny_h5):
    from tripod_pl.callbacks import BestInfoMCheckpoint

    chosen = {}
    for asynchronous in (False, True):
        root = tmp_path / str(asynchronous)
        selection = BestInfoMCheckpoint(psnr_threshold=0.0, psnr_metric="psnr", psnr_stage="eval", dirpath=str(root))
        cb = EvaluationCallback(every_n_steps=2, dci=False, figures=False, asynchronous=asynchronous)
        trainer = tiny_trainer(root, [cb, selection], enable_checkpointing=True, max_steps=7)
        trainer.fit(tiny_model(), datamodule=tiny_data(tiny_h5))
        ckpt = torch.load(root / "best-infom.ckpt", map_location="cpu", weights_only=False)
        chosen[asynchronous] = (selection.best_step, selection.best_infom, ckpt)
        assert ckpt["global_step"] == selection.best_step
        assert not list(root.rglob(".evaluated-step*"))  # every candidate kept or deleted
    (sync_step, sync_infom, sync_ckpt), (async_step, async_infom, async_ckpt) = chosen[False], chosen[True]
    chosen_ckpts = (sync_ckpt, async_ckpt)
    assert async_step == sync_step and async_infom == sync_infom
    assert sync_step in (2, 4, 6)  # an asynchronous evaluation chose: not the final, synchronous one
    for key, value in sync_ckpt["state_dict"].items():
        torch.testing.assert_close(async_ckpt["state_dict"][key], value, rtol=0, atol=0)
    # the file's own selection state names itself, as the synchronous save does (not the best before it)
    states = [next(v for k, v in c["callbacks"].items() if k.startswith("BestInfoMCheckpoint")) for c in chosen_ckpts]
    for state, run in zip(states, ("False", "True")):
        assert state.pop("best_model_path") == str(tmp_path / run / "best-infom.ckpt")
    assert states[0] == states[1] and states[1]["best_step"] == sync_step and states[1]["best_infom"] == sync_infom


def test_hessians_of_chosen_activations_only(tmp_path, tiny_h5):
    cb = EvaluationCallback(
        every_n_steps=2, dci=False, figures=False, hessian_samples=2, hessian_activations=["cond", "block0"]
    )
    trainer, model, _ = fit(tmp_path, tiny_h5, cb, max_steps=2)
    logged = {k.split("/")[2] for k in trainer.callback_metrics if k.startswith("eval/hessian/")}
    assert logged == {"cond", "block0"}  # not x_logits, nor the other blocks
    bad = EvaluationCallback(hessian_samples=2, hessian_activations=["cond", "logits"])
    trainer = SimpleNamespace(strategy=object(), datamodule=SimpleNamespace(eval_subset=lambda: None))
    with pytest.raises(ValueError, match=r"unknown decoder activation\(s\) \['logits'\]; available: \['cond'"):
        bad.setup(trainer, model, "fit")
