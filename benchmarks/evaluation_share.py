"""Evaluation time as a share of training time at each config's evaluation interval, synchronous and
asynchronous, with where an evaluation's time goes.

For each config (default: the quickstart and procedural Tripod) it builds the model, data and
EvaluationCallback the config describes (TripodCLI, nothing run), then measures

- seconds per training step: the median over ``--steps`` optimizer steps after 3 warm-up steps (the config's
  data loading, no evaluation, no checkpoints);
- one evaluation with the callback's options (best of ``--repeats``): its stages (``encode``: encoding and
  reconstructing the evaluation subset; each metric; ``hessian``) and ``figures``
  (made, rendered and logged to a TensorBoard logger in a temporary folder), wall and process CPU seconds;
- what asynchronous evaluation leaves on the training thread: the snapshot (a deep copy of the weights) and,
  with BestInfoMCheckpoint in the config, the checkpoint saved at the snapshot's step.

share = evaluation seconds / (every_n_steps x seconds per step): the synchronous evaluation's, and the
asynchronous one's blocking part. Asynchronous evaluation still needs the device: on a CPU with few cores its
worker competes with training, so the compute it costs is the synchronous figure, spread over the interval.
Weights: the config's initialisation after the timed steps, or ``--ckpt`` (one per config, in order).

    python benchmarks/evaluation_share.py     # CPU -> benchmarks/results/evaluation_share_cpu.json
    python benchmarks/evaluation_share.py --device cuda --configs configs/shapes3d/tripod.yaml

Wall times on a shared machine vary with its load (recorded beside them); the CPU seconds of the process
vary less. The last printed line is the JSON written.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from tripod_pl.callbacks import EvaluationCallback
from tripod_pl.callbacks.evaluation import _model_of, _snapshot
from tripod_pl.callbacks.loggers import FigureWriter
from tripod_pl.cli.lightning_cli import TripodCLI
from tripod_pl.data import HDF5DataModule
from tripod_pl.io import atomic_write_text
from tripod_pl.module import TripodModule, load_model

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_CONFIGS = ("configs/quickstart.yaml", "configs/procedural/tripod.yaml")


class StepTimer(L.Callback):
    """Wall time between consecutive optimizer steps."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()
        self.times.append(time.perf_counter())


def build(config: str, device: str, root: str) -> tuple[TripodCLI, EvaluationCallback]:
    args = ["--config", config, f"--trainer.default_root_dir={root}", f"--trainer.accelerator={device}"]
    cli = TripodCLI(
        TripodModule, HDF5DataModule, seed_everything_default=0, args=args, run=False, auto_configure_optimizers=False
    )
    callbacks = [cb for cb in cli.trainer.callbacks if isinstance(cb, EvaluationCallback)]
    if not callbacks:
        raise ValueError(f"{config}: no EvaluationCallback in trainer.callbacks")
    return cli, callbacks[0]


def step_seconds(cli: TripodCLI, device: str, steps: int, root: str) -> tuple[float, L.Trainer]:
    timer = StepTimer()
    trainer = L.Trainer(
        max_steps=steps + 3,
        accelerator=device,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        gradient_clip_val=cli.trainer.gradient_clip_val,
        gradient_clip_algorithm=cli.trainer.gradient_clip_algorithm,
        callbacks=[timer],
        default_root_dir=root,
    )
    trainer.fit(cli.model, datamodule=cli.datamodule)
    return statistics.median(b - a for a, b in zip(timer.times[2:], timer.times[3:])), trainer


def timed(fn, device: torch.device):  # noqa: ANN001, ANN201
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def measure(config: str, device: str, steps: int, repeats: int, ckpt: str | None) -> dict:
    with tempfile.TemporaryDirectory() as root:
        cli, cb = build(config, device, root)
        seconds_per_step, trainer = step_seconds(cli, device, steps, root)
        # with BestInfoMCheckpoint, asynchronous evaluation also saves a checkpoint at the snapshot's step
        selects = any(type(cb).__name__ == "BestInfoMCheckpoint" for cb in cli.trainer.callbacks)
        _, checkpoint_wall, _ = timed(
            lambda: trainer.save_checkpoint(os.path.join(root, "c.ckpt")), torch.device("cpu")
        )
        model = _model_of(cli.model)
        if ckpt:
            model.load_state_dict(load_model(ckpt).model.state_dict())
        dev = torch.device("cuda" if device == "cuda" else "cpu")
        model.to(dev)
        images, sources = cli.datamodule.eval_subset()
        images, sources = torch.as_tensor(images), torch.as_tensor(sources)
        names = [str(n) for n in getattr(cli.datamodule, "source_names", None) or []] or None
        best: dict | None = None
        for _ in range(repeats):
            result, wall, cpu = timed(lambda: cb._evaluate(model, images, sources), dev)
            run = {"evaluate_wall": wall, "evaluate_cpu": cpu, "stages_wall": dict(result.timings)}
            if cb.figures:
                names = names or [f"s{i}" for i in range(result.nmi.shape[0])]
                writer = FigureWriter([TensorBoardLogger(root, name="figures")])
                figures = functools.partial(cb._log_figures, writer, model, result, images, names, 0)
                _, run["figures_wall"], run["figures_cpu"] = timed(figures, dev)
            run["total_wall"] = run["evaluate_wall"] + run.get("figures_wall", 0.0)
            run["total_cpu"] = run["evaluate_cpu"] + run.get("figures_cpu", 0.0)
            _, run["snapshot_wall"], _ = timed(lambda: _snapshot(model), dev)
            if best is None or run["total_wall"] < best["total_wall"]:
                best = run
        assert best is not None
        interval = cb.every_n_steps
        dense = cb.dense_every_n_steps
        train_seconds = interval * seconds_per_step
        blocking = best["snapshot_wall"] + (checkpoint_wall if selects else 0.0)
        return {
            "config": config,
            "device": device,
            "checkpoint": ckpt,
            "eval_images": int(images.shape[0]),
            "metrics": list(cb.metrics) if cb.dci else [m for m in cb.metrics if m != "dci"],
            "hessian_samples": cb.hessian_samples,
            "figures": cb.figures,
            "seconds_per_step": seconds_per_step,
            "every_n_steps": interval,
            "dense_every_n_steps": dense,
            "evaluation": best,
            "checkpoint_wall": checkpoint_wall,
            "async_saves_checkpoint": selects,
            "async_blocking_wall": blocking,
            "share_sync": best["total_wall"] / train_seconds,
            "share_async_blocking": blocking / train_seconds,
            "share_sync_dense": best["total_wall"] / (dense * seconds_per_step) if dense else None,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS))
    parser.add_argument("--ckpt", nargs="*", default=[], help="weights to evaluate, one per config (optional)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per config")
    parser.add_argument("--repeats", type=int, default=2, help="evaluations per config (the best is kept)")
    parser.add_argument("--out", default=None, help="JSON file (default: results/evaluation_share_<device>.json)")
    args = parser.parse_args()
    ckpts = list(args.ckpt) + [None] * (len(args.configs) - len(args.ckpt))
    runs = []
    for config, ckpt in zip(args.configs, ckpts):
        run = measure(config, args.device, args.steps, args.repeats, ckpt)
        runs.append(run)
        e = run["evaluation"]
        print(
            f"{config}: {run['seconds_per_step']:.3f} s/step, evaluation {e['total_wall']:.2f} s wall "
            f"({e['total_cpu']:.2f} s CPU; stages {', '.join(f'{k} {v:.2f}' for k, v in e['stages_wall'].items())}"
            f", figures {e.get('figures_wall', 0):.2f}), every {run['every_n_steps']} steps: share "
            f"{100 * run['share_sync']:.1f}% synchronous, {100 * run['share_async_blocking']:.2f}% blocking "
            "asynchronous",
            flush=True,
        )
    record = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
        "runs": runs,
    }
    out = Path(args.out) if args.out else RESULTS / f"evaluation_share_{args.device}.json"
    atomic_write_text(out, json.dumps(record, indent=1) + "\n")
    print(json.dumps(record))


if __name__ == "__main__":
    main()
