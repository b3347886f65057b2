"""Periodic evaluation during training: InfoMEC, DCI and PSNR of the fixed evaluation subset, with figures.

Every ``every_n_steps`` optimizer steps (or on a schedule: a list of steps, every ``dense_every_n_steps`` until
``dense_until``, and at the start; :meth:`EvaluationCallback.is_scheduled`), and once more at the end of
training, :class:`EvaluationCallback` runs :func:`tripod_pl.evaluation.evaluate_model` on the datamodule's
``eval_subset()`` (docs/evaluation.md) on the model's device, with the training run's random-number streams
set aside (Lightning's ``isolate_rng``), and logs

- scalars ``eval/infom, eval/infoc, eval/infoe, eval/d, eval/c, eval/i, eval/num_active, eval/psnr,
  eval/psnr_paper, eval/weight_norm/{encoder,decoder}, eval/seconds`` and, with ``hessian_samples > 0``, the exact
  decoder Hessians' ``eval/hessian/<activation>/<raw|rescaled>/<statistic>`` to every logger (step =
  ``trainer.global_step``) and into ``trainer.callback_metrics``, where checkpoint callbacks
  (:class:`~tripod_pl.callbacks.BestInfoMCheckpoint`, ``ModelCheckpoint(monitor="eval/infom")``) read them;
  ``callback_metrics["eval/step"]`` says which step they belong to;
- with a logger that shows images (TensorBoard, W&B, MLflow; a CSV logger gets PNG files, see
  :mod:`tripod_pl.callbacks.loggers`): figures ``eval/nmi`` (heatmap, inactive latents hatched),
  ``eval/reconstructions`` (labelled originals above their reconstructions, PSNR in the title),
  ``eval/traversals`` (each sample's input, then every active latent swept, its values above the cells, rows
  naming the source it explains best and that NMI), ``eval/latent_histograms``, a histogram
  ``eval/latents/z<j>`` per latent, ``eval/hessian`` (with ``hessian_samples``), ``eval/pairwise_latents``
  (with ``pairwise_histograms``) and the GIF ``eval/traversal_animation`` (with ``animation_frames``). The
  figures show the same seeded random images at every evaluation (:func:`figure_samples`);
- on the console: the scalars, and which sources are captured (:func:`source_summary`: each source's best
  active latent and its NMI, captured at NMI >= 0.5).

Distributed runs: the subset is the same on every rank, so only global rank 0 encodes it (no sharded sampler,
hence no padded duplicates) and computes the metrics; the other ranks wait in one broadcast that carries the
scalars -- or rank 0's error, so that a failed evaluation stops every rank instead of leaving them waiting.
Every rank decides to evaluate from ``global_step`` alone, so all of them reach the broadcast; an evaluation
must finish within the process group's timeout (Lightning's default: 30 minutes). Sharded strategies (FSDP,
DeepSpeed) are refused: rank 0 cannot run the model alone there.

Example::

    trainer = L.Trainer(callbacks=[EvaluationCallback(every_n_steps=10_000)], val_check_interval=10_000)
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.seed import isolate_rng
from torch import Tensor

from tripod_pl.animation import animation_frames, header_labels, traversal_animation
from tripod_pl.callbacks import figures
from tripod_pl.callbacks.checkpoint_files import checkpoint_dir, save_checkpoint_atomically
from tripod_pl.callbacks.loggers import FigureWriter
from tripod_pl.data.transforms import to_float_images
from tripod_pl.evaluation import (
    CAPTURED_NMI,
    DEFAULT_METRICS,
    Evaluation,
    best_active_latents,
    build_metrics,
    decode_latents,
    encode_and_reconstruct,
    evaluate_model,
)
from tripod_pl.metrics.infomec import INFOE_PROTOCOLS
from tripod_pl.model import TripodAutoencoder

__all__ = ["CAPTURED_NMI", "EVAL_STEP_KEY", "EvaluationCallback", "figure_samples", "source_summary"]

#: ``trainer.callback_metrics`` key holding the global step of the latest evaluation's metrics
EVAL_STEP_KEY = "eval/step"

_SHARDED_STRATEGIES = {"FSDPStrategy", "DeepSpeedStrategy", "ModelParallelStrategy", "XLAFSDPStrategy"}


def _model_of(pl_module: L.LightningModule) -> TripodAutoencoder:
    """The plain model a LightningModule trains (``pl_module.model``), or the module itself when it has the
    model's interface (``encode``, ``decode``, ``discrete_latents``)."""
    model = getattr(pl_module, "model", None)
    return model if isinstance(model, TripodAutoencoder) else pl_module  # type: ignore[return-value]


def figure_samples(num_images: int, count: int, seed: int = 0) -> Tensor:
    """``count`` distinct indices into the evaluation subset, drawn once with their own seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(num_images, generator=generator)[: min(count, num_images)]


def source_summary(nmi: np.ndarray, active: np.ndarray, source_names: list[str] | None = None) -> str:
    """One line: for every source its best active latent's NMI, split into captured (NMI >= 0.5) and missed,
    e.g. ``"sources captured 2/3 (NMI >= 0.5): shape 0.91 (z2), scale 0.62 (z0); missed: hue 0.08 (z1)"``; with no
    active latent the line says so (the model has collapsed)."""
    latents, values = best_active_latents(nmi, active)
    names = list(source_names) if source_names else [f"s{i}" for i in range(len(latents))]
    captured, missed = [], []
    for name, j, value in zip(names, latents, values):
        if j < 0:
            missed.append(f"{name} –")
            continue
        (captured if value >= CAPTURED_NMI else missed).append(f"{name} {value:.2f} (z{j})")
    line = f"sources captured {len(captured)}/{len(names)} (NMI >= {CAPTURED_NMI}): " + (", ".join(captured) or "none")
    line += ("; missed: " + ", ".join(missed)) if missed else ""
    if not np.asarray(active).any():  # e.g. every encoder output saturated at one quantization level
        line += " -- no latent is active: the codes do not vary over the evaluation images (a collapsed encoder)"
    return line


def snapshot_device(model: torch.nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _snapshot(model: TripodAutoencoder) -> TripodAutoencoder:
    """A deep copy of ``model`` on its device, without gradients, for evaluating while training goes on."""
    if isinstance(model, L.LightningModule):
        raise TypeError(
            "EvaluationCallback(asynchronous=True) snapshots pl_module.model (a TripodAutoencoder); "
            f"{type(model).__name__} has none"
        )
    with torch.no_grad():
        snapshot = copy.deepcopy(model)
    for param in snapshot.parameters():
        param.grad = None
        param.requires_grad_(False)
    return snapshot


def _selections(trainer: L.Trainer) -> list[Any]:
    """The run's :class:`~tripod_pl.callbacks.BestInfoMCheckpoint` callbacks."""
    from tripod_pl.callbacks.selection import BestInfoMCheckpoint  # selection imports this module

    return [callback for callback in trainer.callbacks if isinstance(callback, BestInfoMCheckpoint)]


def _refuse_selection_on_later_weights(trainer: L.Trainer) -> None:
    """Checkpoint callbacks that would save the trainer's *current* weights when an asynchronous evaluation's
    score arrives (by then later weights than those evaluated) are refused: ``ModelCheckpoint`` monitoring an
    ``eval/`` key, and ``BestInfoMCheckpoint`` comparing a validation PSNR (``psnr_stage="val"``). A
    ``BestInfoMCheckpoint(psnr_stage="eval")`` works: the weights are saved with the snapshot."""
    for callback in trainer.callbacks:
        monitor = getattr(callback, "monitor", None) if isinstance(callback, ModelCheckpoint) else None
        if (monitor or "").startswith("eval/"):
            raise ValueError(
                f"EvaluationCallback(asynchronous=True) cannot be combined with ModelCheckpoint(monitor={monitor!r}):"
                " the score of an asynchronous evaluation arrives steps after its snapshot, when the checkpoint "
                "would hold later weights; use BestInfoMCheckpoint(psnr_stage='eval') or asynchronous=False"
            )
    for callback in _selections(trainer):
        if callback.psnr_stage != "eval":
            raise ValueError(
                "EvaluationCallback(asynchronous=True) cannot be combined with BestInfoMCheckpoint(psnr_stage="
                f"{callback.psnr_stage!r}): the validation PSNR of the snapshot's weights is not kept until its "
                "score arrives; use psnr_stage='eval' or asynchronous=False"
            )


class EvaluationCallback(Callback):
    """Evaluates disentanglement (InfoMEC, DCI) and reconstruction every ``every_n_steps`` training steps.

    Args:
        every_n_steps: evaluate after every multiple of this many optimizer steps (``None``: only on the
            schedule below).
        dci: also compute D, C, I (random forests; the slowest part).
        figures: log figures, images and histograms (to every logger that takes them: TensorBoard, W&B, MLflow,
            CSV as files; :mod:`tripod_pl.callbacks.loggers`).
        batch_size: images per encoder/decoder call (default: 128 on a CPU, where larger batches fall out of
            the caches, 1,024 on an accelerator).
        num_traversal_samples: samples whose latents are traversed in ``eval/traversals``.
        traversal_steps: values per traversed latent, evenly spaced from its minimum to its maximum over the
            evaluation subset.
        backend: metrics backend passed to ``infomec``/``dci``.
        evaluate_at_end: also evaluate the final weights when training stops between two multiples.
        num_reconstructions: originals shown with their reconstructions in ``eval/reconstructions``.
        steps: also evaluate after exactly these numbers of optimizer steps.
        dense_every_n_steps: also evaluate after every multiple of this many steps up to ``dense_until``
            (dense early, sparse later).
        dense_until: last step of the dense phase (inclusive).
        at_start: also evaluate the initial weights, before the first optimizer step of a new run.
        infoe_protocol: InfoE's protocol, ``"paper"`` (the authors' fit and score) or ``"converged"``
            (:func:`tripod_pl.metrics.infomec`).
        hessian_samples: exact decoder Hessians with respect to the latents at this many evaluation samples
            (:func:`tripod_pl.evaluation.decoder_hessian_stats`; 0: off), logged as scalars and, with figures,
            as ``eval/hessian``. The authors' evaluation uses 100.
        hessian_activations: the decoder activations whose Hessians are computed (default: all, ``x_logits``
            included, whose H x W x 3 units cost most of the time).
        pairwise_histograms: log ``eval/pairwise_latents``, the 2-D histograms of every pair of active latents
            (:func:`~tripod_pl.callbacks.figures.pairwise_latent_histograms`), with figures.
        animation_frames: frames of ``eval/traversal_animation``, a looping GIF of the traversal samples with
            every active latent cycled across its range (:mod:`tripod_pl.animation`; 0: off), with figures.
        metrics: the metrics computed (names from :mod:`tripod_pl.metrics.registry`: ``infomec``, ``dci``,
            ``mig``, ``sap``, ``modularity`` or a plugin's; dotted class paths; ``{"class_path", "init_args"}``
            dicts). ``infomec`` is required; ``dci=False`` drops ``dci``. Each metric's float outputs are
            logged as ``eval/<key>``.
        asynchronous: evaluate a snapshot of the weights (a deep copy on the device) in a background thread
            while training continues (:meth:`submit`); the results are logged at the snapshot's step when
            they are ready (:meth:`collect`), the last one waited for at the end of training, where the final
            evaluation runs synchronously. With :class:`~tripod_pl.callbacks.BestInfoMCheckpoint`
            (``psnr_stage="eval"``) the snapshot's step also saves a checkpoint, which the selection keeps as
            its best or which is deleted once the score arrives; checkpoint callbacks that would save the
            current weights on an evaluation's score (``ModelCheckpoint(monitor="eval/...")``,
            ``BestInfoMCheckpoint(psnr_stage="val")``) are refused with it.

    The reference's schedule (kylehkhsu/tripod ``scripts/train_*.py``: at the start, every 2,000 steps until
    10,000, then every 10,000) is ``every_n_steps=10_000, dense_every_n_steps=2_000, dense_until=10_000,
    at_start=True``; the dataset configs use it.
    """

    def __init__(
        self,
        every_n_steps: int = 10_000,
        dci: bool = True,
        figures: bool = True,
        batch_size: int | None = None,
        num_traversal_samples: int = 4,
        traversal_steps: int = 9,
        backend: str = "torch",
        evaluate_at_end: bool = True,
        num_reconstructions: int = 8,
        steps: Sequence[int] = (),
        dense_every_n_steps: int | None = None,
        dense_until: int = 0,
        at_start: bool = False,
        infoe_protocol: str = "paper",
        hessian_samples: int = 0,
        hessian_activations: Sequence[str] | None = None,
        pairwise_histograms: bool = False,
        animation_frames: int = 20,
        metrics: Sequence[str | dict[str, Any]] = DEFAULT_METRICS,
        asynchronous: bool = False,
    ) -> None:
        super().__init__()
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(f"every_n_steps must be positive, got {every_n_steps}")
        if dense_every_n_steps is not None and dense_every_n_steps < 1:
            raise ValueError(f"dense_every_n_steps must be positive, got {dense_every_n_steps}")
        if any(int(t) < 1 for t in steps):
            raise ValueError(f"steps must be positive step counts (use at_start for step 0), got {list(steps)}")
        if hessian_samples < 0:
            raise ValueError(f"hessian_samples must be >= 0, got {hessian_samples}")
        if infoe_protocol not in INFOE_PROTOCOLS:
            raise ValueError(f"infoe_protocol must be one of {INFOE_PROTOCOLS}, got {infoe_protocol!r}")
        if animation_frames < 0 or animation_frames == 1:
            raise ValueError(f"animation_frames must be 0 (off) or at least 2, got {animation_frames}")
        if traversal_steps < 2:
            raise ValueError(f"traversal_steps must be at least 2, got {traversal_steps}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        try:  # resolves the names now (plugins included), so a typo fails before training starts
            build_metrics(metrics, discrete=True, backend=backend, infoe_protocol=infoe_protocol)
        except (KeyError, ImportError, TypeError, ValueError) as err:
            raise ValueError(f"EvaluationCallback metrics: {err}") from err
        self.metrics = list(metrics)
        self.asynchronous = bool(asynchronous)
        self.every_n_steps = every_n_steps
        self.steps = frozenset(int(t) for t in steps)
        self.dense_every_n_steps, self.dense_until, self.at_start = dense_every_n_steps, int(dense_until), at_start
        self.dci = dci
        self.figures = figures
        self.batch_size = batch_size
        self.num_traversal_samples = num_traversal_samples
        self.traversal_steps = traversal_steps
        self.backend = backend
        self.evaluate_at_end = evaluate_at_end
        self.num_reconstructions = num_reconstructions
        self.infoe_protocol, self.hessian_samples = infoe_protocol, int(hessian_samples)
        self.hessian_activations = None if hessian_activations is None else tuple(hessian_activations)
        self.pairwise_histograms = pairwise_histograms
        self.animation_frames = int(animation_frames)
        #: global step of the latest *finished* evaluation (saved in checkpoints: a resumed run does not repeat
        #: it, and evaluates its first step again when that step's evaluation was cut short or still running)
        self.last_step: int | None = None
        #: global steps evaluated by this instance in this process (for inspection and tests)
        self.evaluated_steps: list[int] = []
        #: the latest full result (global rank 0 only)
        self.last_evaluation: Evaluation | None = None
        self._subset: tuple[Tensor, Tensor] | None = None
        # asynchronous mode: one worker thread, at most one evaluation in flight (its step and future)
        self._executor: ThreadPoolExecutor | None = None
        self._pending: Future | None = None
        self._pending_step: int | None = None
        self._candidate: str | None = None
        self._stream: Any = None
        self._resumed_in_flight: int | None = None  # from a checkpoint saved while an evaluation ran
        self._abandoned_step: int | None = None  # the one running when training stopped on an exception

    # ---- Lightning hooks -----------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        strategy = type(trainer.strategy).__name__
        if strategy in _SHARDED_STRATEGIES:
            raise ValueError(f"EvaluationCallback needs the whole model on global rank 0; {strategy} shards it")
        datamodule = getattr(trainer, "datamodule", None)
        if not callable(getattr(datamodule, "eval_subset", None)):
            raise TypeError(
                "EvaluationCallback needs a datamodule with eval_subset() -> (uint8 images, sources), "
                f"got {type(datamodule).__name__}"
            )
        if self.asynchronous:
            _refuse_selection_on_later_weights(trainer)
        check_names = getattr(getattr(_model_of(pl_module), "decoder", None), "check_names", None)
        if self.hessian_activations and check_names is not None:
            try:
                check_names(self.hessian_activations)
            except KeyError as err:
                raise ValueError(f"EvaluationCallback hessian_activations: {err.args[0]}") from None

    def is_scheduled(self, step: int) -> bool:
        """Whether the schedule evaluates after ``step`` optimizer steps (step 0: the initial weights)."""
        if step == 0:
            return self.at_start
        dense = self.dense_every_n_steps
        return bool(
            (self.every_n_steps is not None and step % self.every_n_steps == 0)
            or (dense is not None and step <= self.dense_until and step % dense == 0)
            or step in self.steps
        )

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        step = trainer.global_step
        lost, self._resumed_in_flight = self._resumed_in_flight, None
        if lost is not None and lost != step:
            rank_zero_warn(
                f"EvaluationCallback: the evaluation of step {lost} was still running when the checkpoint of step "
                f"{step} was saved; its weights are not in the checkpoint, so it is not repeated"
            )
        # step 0: the initial weights (at_start); a resumed run: its checkpoint's step, when that step's
        # evaluation is due and did not finish before the checkpoint was saved (an interrupt, or asynchronous)
        due = self.at_start if step == 0 else self.is_scheduled(step)
        if due and not self._taken(step) and not self._skip(trainer):
            self._start(trainer, pl_module)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if self._pending_step is not None:
            self.collect(trainer, wait=False)
        if step > 0 and self.is_scheduled(step) and not self._taken(step) and not self._skip(trainer):
            self._start(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.collect(trainer, wait=True)
        step = trainer.global_step
        if self.evaluate_at_end and step > 0 and not self._taken(step) and not self._skip(trainer):
            self.evaluate(trainer, pl_module)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._shutdown(wait=False)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._shutdown(wait=True)

    def state_dict(self) -> dict[str, Any]:
        in_flight = self._pending_step if self._pending_step is not None else self._abandoned_step
        return {"last_step": self.last_step, "in_flight_step": in_flight}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last_step = state_dict.get("last_step")
        self._resumed_in_flight = state_dict.get("in_flight_step")

    def _taken(self, step: int) -> bool:
        """Whether ``step`` was evaluated or is being evaluated (gradient accumulation repeats a step's hooks)."""
        return step in (self.last_step, self._pending_step)

    @staticmethod
    def _skip(trainer: L.Trainer) -> bool:
        return bool(trainer.sanity_checking or trainer.fast_dev_run)

    # ---- evaluation ----------------------------------------------------------------------------------
    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        """Evaluates now on rank 0, shares the scalars with every rank and logs them; returns the scalars.

        Every rank must call this at the same point (it holds a broadcast).
        """
        step = trainer.global_step
        self.evaluated_steps.append(step)
        scalars = self._share(trainer, step, lambda: self._evaluate_on_rank_zero(trainer, pl_module, step))
        self.last_step = step
        return scalars

    def submit(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Starts an evaluation of a snapshot of the current weights in the background (asynchronous mode).

        Rank 0 deep-copies the model on its device and evaluates the copy in a worker thread (on a GPU, on a
        CUDA stream of its own) while training continues; :meth:`collect` logs the result at the snapshot's
        step. At most one evaluation is in flight: a pending one is waited for first. Every rank calls this at
        the same point.
        """
        self.collect(trainer, wait=True)
        step = trainer.global_step
        self.evaluated_steps.append(step)
        self._pending_step = step
        selections = _selections(trainer)
        if any(s.every_n_steps is None or step % s.every_n_steps == 0 for s in selections):
            # the weights a selection may keep, saved now (every rank takes part), kept or deleted in collect
            self._candidate = str(checkpoint_dir(trainer) / f".evaluated-step{step}.ckpt")
            save_checkpoint_atomically(trainer, self._candidate)
        if trainer.is_global_zero:
            snapshot = _snapshot(_model_of(pl_module))
            names = self._source_names(trainer, None)
            writer = FigureWriter(trainer.loggers) if self.figures else None
            writer = writer if writer is not None and writer.takes_figures else None
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tripod-evaluation")
            stream = None
            if snapshot_device(snapshot).type == "cuda":
                self._stream = self._stream or torch.cuda.Stream(snapshot_device(snapshot))
                stream = self._stream
                stream.wait_stream(torch.cuda.current_stream(snapshot_device(snapshot)))  # the copy is done first
            images, sources = self.eval_subset(trainer)
            self._pending = self._executor.submit(
                self._evaluate_snapshot, snapshot, images, sources, names, step, writer, stream
            )

    def collect(self, trainer: L.Trainer, wait: bool) -> dict[str, float] | None:
        """Logs the pending asynchronous evaluation at its own step, if there is one and it is done (or
        ``wait``: after waiting for it); returns its scalars, else ``None``. A failure in the worker is
        raised here. Single process: polled after every batch; several ranks: collected at the next
        evaluation and at the end of training only (every rank reaches the broadcast there)."""
        step = self._pending_step
        if step is None:
            return None
        if not wait and (trainer.world_size > 1 or self._pending is None or not self._pending.done()):
            return None
        future, self._pending, self._pending_step = self._pending, None, None
        candidate, self._candidate = self._candidate, None

        def finish() -> dict[str, float]:
            assert future is not None
            scalars, result = future.result()
            self.last_evaluation = result
            return scalars

        try:
            scalars = self._share(trainer, step, finish)
            self.last_step = step
            if candidate is not None:
                for selection in _selections(trainer):
                    selection.consider(trainer, step, candidate)
        finally:
            if candidate is not None and trainer.is_global_zero and os.path.exists(candidate):
                os.remove(candidate)
        return scalars

    def _start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.asynchronous:
            self.submit(trainer, pl_module)
        else:
            self.evaluate(trainer, pl_module)

    def _shutdown(self, wait: bool) -> None:
        if self._pending_step is not None and not wait:  # cut short: a checkpoint saved now records it
            self._abandoned_step = self._pending_step
        if self._executor is not None:
            self._executor.shutdown(wait=wait, cancel_futures=not wait)
            self._executor = None
        self._pending = self._pending_step = None
        if self._candidate is not None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self._candidate)
            self._candidate = None

    def _share(self, trainer: L.Trainer, step: int, compute: Callable[[], dict[str, float]]) -> dict[str, float]:
        """Runs ``compute`` on rank 0, broadcasts its scalars (or its error) and logs them at ``step``."""
        payload: dict[str, Any] = {}
        error: BaseException | None = None
        if trainer.is_global_zero:
            try:
                payload["scalars"] = compute()
            except Exception as err:  # shared with the other ranks below, then re-raised
                error = err
                payload["error"] = f"{type(err).__name__}: {err}"
        payload = trainer.strategy.broadcast(payload, src=0)
        if "error" in payload:
            if error is not None:
                raise error
            raise RuntimeError(f"evaluation at step {step} failed on global rank 0: {payload['error']}")
        scalars: dict[str, float] = payload["scalars"]
        logged = {f"eval/{name}": value for name, value in scalars.items()}
        trainer.callback_metrics.update({k: torch.tensor(float(v)) for k, v in logged.items()})
        trainer.callback_metrics[EVAL_STEP_KEY] = torch.tensor(float(step))
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(logged, step=step)
            summary = ", ".join(f"{k} {scalars[k]:.3f}" for k in ("infom", "infoc", "infoe", "psnr") if k in scalars)
            rank_zero_info(f"evaluation at step {step}: {summary}")
            if self.last_evaluation is not None:
                names = getattr(trainer.datamodule, "source_names", None)
                rank_zero_info(source_summary(self.last_evaluation.nmi, self.last_evaluation.active, names))
        return scalars

    def eval_subset(self, trainer: L.Trainer) -> tuple[Tensor, Tensor]:
        """The datamodule's fixed evaluation subset, read once and kept (on the host)."""
        if self._subset is None:
            images, sources = trainer.datamodule.eval_subset()
            self._subset = (torch.as_tensor(images), torch.as_tensor(sources))
        return self._subset

    def _evaluate_on_rank_zero(self, trainer: L.Trainer, pl_module: L.LightningModule, step: int) -> dict[str, float]:
        images, sources = self.eval_subset(trainer)
        model = _model_of(pl_module)
        with isolate_rng():
            result = self._evaluate(model, images, sources)
        self.last_evaluation = result
        writer = FigureWriter(trainer.loggers)  # TensorBoard, W&B, MLflow, CSV (tripod_pl.callbacks.loggers)
        if self.figures and writer.takes_figures:
            self._log_figures(writer, model, result, images, self._source_names(trainer, result), step)
        return {**result.scalars, "seconds": result.seconds}

    def _evaluate(self, model: TripodAutoencoder, images: Tensor, sources: Tensor) -> Evaluation:
        return evaluate_model(
            model,
            images,
            sources,
            dci=self.dci,
            backend=self.backend,
            batch_size=self.batch_size,
            infoe_protocol=self.infoe_protocol,
            hessian_samples=self.hessian_samples,
            hessian_activations=self.hessian_activations,
            metrics=self.metrics,
        )

    def _evaluate_snapshot(
        self,
        snapshot: TripodAutoencoder,
        images: Tensor,
        sources: Tensor,
        names: list[str] | None,
        step: int,
        writer: FigureWriter | None,
        stream: Any,
    ) -> tuple[dict[str, float], Evaluation]:
        """The worker thread's part: the evaluation of ``snapshot`` and its figures, made, rendered and logged
        here (the loggers' image calls are thread-safe; the scalars are logged by the main thread). Draws from
        no global random stream (training's are left as they are without ``isolate_rng``, which is not
        thread-safe)."""
        with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
            result = self._evaluate(snapshot, images, sources)
            if writer is not None:
                names = names or [f"s{i}" for i in range(result.nmi.shape[0])]
                self._log_figures(writer, snapshot, result, images, names, step)
            if stream is not None:
                stream.synchronize()  # nothing of the snapshot's is still being computed when it is freed
        return {**result.scalars, "seconds": result.seconds}, result

    @staticmethod
    def _source_names(trainer: L.Trainer, result: Evaluation | None) -> list[str] | None:
        names = getattr(trainer.datamodule, "source_names", None)
        if names:
            return [str(n) for n in names]
        return None if result is None else [f"s{i}" for i in range(result.nmi.shape[0])]

    def _log_figures(
        self, writer: Any, model: TripodAutoencoder, result: Evaluation, images: Tensor, names: list[str], step: int
    ) -> None:
        writer.add_figure("eval/nmi", figures.nmi_heatmap(result.nmi, result.active, names), step)

        # the same seeded random images at every evaluation (the subset itself is in file order: similar scenes)
        shown = figure_samples(images.shape[0], max(self.num_reconstructions, self.num_traversal_samples))
        n = min(self.num_reconstructions, len(shown))
        if n > 0:
            originals = images[shown[:n]]
            _, psnr, recons = encode_and_reconstruct(model, originals, self.batch_size, keep=n)
            fig = figures.reconstruction_figure(to_float_images(originals), recons.cpu(), psnr.cpu())
            writer.add_figure("eval/reconstructions", fig, step)

        latents = result.latents
        dims = [int(j) for j in np.flatnonzero(result.active)] or list(range(latents.shape[1]))
        s = min(self.num_traversal_samples, len(shown))
        if s > 0:
            lo, hi = latents[:, dims].min(0).values, latents[:, dims].max(0).values
            steps = torch.linspace(0, 1, self.traversal_steps, device=latents.device)
            values = lo[:, None] + (hi - lo)[:, None] * steps[None, :]
            picked = shown[:s].to(latents.device)
            z = figures.traversal_latents(latents[picked], values, dims)
            decoded = decode_latents(model, z.reshape(-1, z.shape[-1]), self.batch_size)
            decoded = decoded.reshape(*z.shape[:3], *decoded.shape[1:])
            labels = figures.latent_labels(result.nmi, result.active, names)
            grid = figures.traversal_grid(
                decoded, [labels[j] for j in dims], values=values.cpu(), originals=to_float_images(images[shown[:s]])
            )
            writer.add_figure("eval/traversals", grid, step)
            if self.animation_frames > 0:
                cycled = traversal_animation(model, latents, dims, picked, self.animation_frames, None, self.batch_size)
                frames = animation_frames(cycled, header_labels(dims, result.nmi, names))
                writer.add_video("eval/traversal_animation", frames, step, fps=10)

        writer.add_figure("eval/latent_histograms", figures.latent_histograms(latents, result.active), step)
        host = latents.cpu()
        for j in range(host.shape[1]):
            writer.add_histogram(f"eval/latents/z{j}", host[:, j], step)
        if self.pairwise_histograms:
            writer.add_figure("eval/pairwise_latents", figures.pairwise_latent_histograms(host, result.active), step)
        if any(key.startswith("hessian/") for key in result.scalars):
            writer.add_figure("eval/hessian", figures.hessian_figure(result.scalars), step)
