"""``tripod-train``: the LightningCLI entry point (``fit``, ``validate``, ``test``, ``predict``, ``evaluate``,
``traverse``).

Everything is configured through typed ``__init__`` signatures: ``tripod-train fit --print_config`` shows the
whole system, ``tripod-train fit --config configs/shapes3d/tripod.yaml --trainer.max_steps 1000`` trains.
Plugin legs (entry-point group ``tripod_pl.legs``) are imported before parsing, so a config can name them.
The number of latents and the dataset size are taken from the data file (``data.num_sources`` ->
``model.num_sources``, ``data.dataset_size`` -> ``model.dataset_size``). ``evaluate`` (:mod:`tripod_pl.cli.evaluate`)
and ``traverse`` (:mod:`tripod_pl.cli.traverse`, traversal GIFs) are subcommands of their own: they restore the
model and the data from a checkpoint, so they need no config.

A resumed ``fit`` (``--ckpt_path last``, a path, or SLURM's automatic ``hpc`` checkpoint) continues the run it
resumes (:class:`ResumedRun`): ``last.ckpt`` is overwritten with the newest state (Lightning would write
``last-v1.ckpt`` next to it), the progress bar keeps its total, and a TensorBoard logger writes into the same
``version_N`` folder (its version is recorded in every checkpoint). A CSV logger still starts a new version:
continuing one would delete its ``metrics.csv``.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins.environments import SLURMEnvironment
from omegaconf.errors import OmegaConfBaseException

from tripod_pl.callbacks.checkpoint_files import checkpoint_dir, default_checkpoint_dir
from tripod_pl.callbacks.interrupt import InterruptCheckpoint
from tripod_pl.callbacks.rng import RNGStateCallback
from tripod_pl.callbacks.selection import BestInfoMCheckpoint
from tripod_pl.cli.evaluate import DESCRIPTION as EVALUATE_DESCRIPTION
from tripod_pl.cli.evaluate import CheckpointError, evaluate_parser, run_evaluate
from tripod_pl.cli.traverse import DESCRIPTION as TRAVERSE_DESCRIPTION
from tripod_pl.cli.traverse import TraverseOptionError, run_traverse, traverse_parser
from tripod_pl.data import DatasetError, HDF5DataModule
from tripod_pl.legs.registry import load_plugins
from tripod_pl.module import TripodModule

__all__ = ["ConfigError", "ResumedRun", "TripodCLI", "main", "run"]

#: checkpoint key of the TensorBoard loggers' versions, read back by a resumed ``fit``
LOG_VERSIONS_KEY = "tripod_pl_tensorboard_versions"


class ResumedRun(L.Callback):
    """A resumed ``fit`` continues the same run: ``last.ckpt``, the progress bar, the TensorBoard version.

    Always on in the CLI. Every checkpoint records the TensorBoard loggers' versions (read back by
    :func:`recorded_log_versions` before the resumed ``fit`` creates its loggers). At the start of a resumed
    training, every ``ModelCheckpoint(save_last=True)`` takes its ``last.ckpt`` as its own: Lightning otherwise
    keeps an existing ``last.ckpt`` that it did not write in this run (e.g. one written on Ctrl-C) and saves
    ``last-v1.ckpt``, leaving the stale file where ``--ckpt_path last``, ``evaluate`` and the notebook look. And
    the progress bar gets the epoch's total, which Lightning sets only when an epoch starts, not when it resumes.
    """

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        versions = [logger.version for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]
        if versions:
            checkpoint[LOG_VERSIONS_KEY] = versions

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.ckpt_path is None:
            return
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.save_last and callback.dirpath:
                name = callback.CHECKPOINT_NAME_LAST
                if "{" not in name:  # a plain name: always the same file
                    callback.last_model_path = os.path.join(callback.dirpath, name + callback.FILE_EXTENSION)
        bar = trainer.progress_bar_callback
        if bar is not None and trainer.fit_loop.restarted_mid_epoch:
            bar.on_train_epoch_start(trainer, pl_module)  # total and "Epoch N" (Lightning skips it mid-epoch)
            if isinstance(bar, TQDMProgressBar):  # its total counts from the epoch's start, not the restart
                done = trainer.fit_loop.epoch_loop.batch_progress.current.ready
                total = bar.train_progress_bar.total
                if trainer.max_steps > 0 and total is not None:
                    remaining = trainer.max_steps - trainer.global_step
                    bar.train_progress_bar.total = min(trainer.num_training_batches, done + remaining)
                bar.train_progress_bar.n = done


def resume_path(trainer: L.Trainer, ckpt_path: str | None) -> str | None:
    """The checkpoint ``fit(ckpt_path=...)`` will resume from, as Lightning chooses it (None: a new run)."""
    if ckpt_path is None and not SLURMEnvironment.detect():
        return None
    if ckpt_path in (None, "hpc"):  # a requeued SLURM job resumes from its hpc checkpoint by itself
        return trainer._checkpoint_connector._hpc_resume_path
    if ckpt_path == "last":
        candidates = set()
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint):
                candidates |= callback._find_last_checkpoints(trainer)
        existing = [path for path in candidates if os.path.isfile(path)]
        return max(existing, key=os.path.getmtime) if existing else None
    if ckpt_path == "best" or "://" in str(ckpt_path):
        return None
    return str(ckpt_path)


def recorded_log_versions(ckpt_path: str) -> list[int | str]:
    """The TensorBoard versions recorded by :class:`ResumedRun` in a checkpoint ([] when none or unreadable)."""
    try:
        checkpoint = torch.load(ckpt_path, map_location="cpu", mmap=True, weights_only=True)
    except Exception:  # not ours to report: Lightning's own loading says what is wrong with the file
        return []
    return list(checkpoint.get(LOG_VERSIONS_KEY, []))


class ConfigError(Exception):
    """A configuration the run cannot use; the message is one line naming the option and the problem."""


def check_model_options(model: Any) -> None:
    """The model options that fail only later (or deep inside a network): ``n_z`` and ``image_size``."""
    if model is None:
        return
    n_z = model.get("n_z")
    if n_z is not None and n_z <= 0:
        raise ConfigError(f"model.n_z must be a positive number of latents, got {n_z}")
    size = model.get("image_size")
    stages = max(len(model.get("encoder_widths") or ()), len(model.get("decoder_widths") or ()))
    if size is not None and (size <= 0 or size % 2**stages):
        raise ConfigError(
            f"model.image_size {size} cannot be taken by the networks: it must be a positive multiple of "
            f"{2**stages} (one 2x per stage of model.encoder_widths / model.decoder_widths)"
        )


def check_built(module: TripodModule, data: HDF5DataModule | None) -> None:
    """The legs' weights are non-negative and the data's images have the model's size."""
    legs = [("model.bottleneck", module.model.bottleneck)]
    legs += [(f"model.regularizers[{i}]", leg) for i, leg in enumerate(module.model.regularizers)]
    for option, leg in legs:
        for term, weight in leg.weights.items():
            if weight < 0:
                raise ConfigError(
                    f"{option} ({type(leg).__name__}): the weight of term {term!r} is {weight}; weights must be >= 0"
                )
    if data is not None:
        height, width = data.info.image_shape[:2]
        size = module.hparams.image_size
        if (height, width) != (size, size):
            raise ConfigError(
                f"model.image_size is {size}, but the images of {data.path} are {height} x {width} "
                f"(set --model.image_size {height})"
                if height == width
                else f"the images of {data.path} are {height} x {width}; the networks take square images"
            )


class TripodCLI(LightningCLI):
    """LightningCLI for :class:`TripodModule` and :class:`HDF5DataModule`, with ``evaluate`` and ``traverse``
    subcommands (they restore everything from a checkpoint; no Trainer is built for them).

    Checkpoints without an explicit ``dirpath`` go to ``<default_root_dir>/checkpoints`` (not into the
    logger's ``version_N`` folder), so a resumed run (``fit --ckpt_path last``) finds the interrupted one's.

    Config files are read in jsonargparse's ``omegaconf`` mode (unless ``parser_kwargs`` says otherwise): a file
    may refer to its own values, ``cond_dim: ${model.n_z}`` or ``every_n_steps: ${trainer.val_check_interval}``
    (paths from the file's root). Each file is resolved when it is read: an option given after it on the
    command line changes that option only, not the values that referred to it.
    """

    PARSER_MODE = "omegaconf"

    def __init__(self, *args: Any, parser_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, parser_kwargs={"parser_mode": self.PARSER_MODE, **(parser_kwargs or {})}, **kwargs)

    EVALUATE = "evaluate"
    TRAVERSE = "traverse"

    # ``evaluate`` and ``traverse`` are not Trainer methods: each gets its own parser, and the Trainer steps are
    # skipped for them.
    def _add_subcommands(self, parser: LightningArgumentParser, **kwargs: Any) -> None:
        super()._add_subcommands(parser, **kwargs)
        for name, make, text in (
            (self.EVALUATE, evaluate_parser, EVALUATE_DESCRIPTION),
            (self.TRAVERSE, traverse_parser, TRAVERSE_DESCRIPTION),
        ):
            subparser = make(parser_mode=parser.parser_mode)
            parser._subcommands_action.add_subcommand(name, subparser, help=text)
            self._subcommand_parsers[name] = subparser

    def _evaluating(self) -> bool:
        """Whether the subcommand is one of ours (``evaluate``, ``traverse``), which builds no Trainer."""
        return self.config.get("subcommand") in (self.EVALUATE, self.TRAVERSE)

    def _parse_ckpt_path(self) -> None:
        if not self._evaluating():  # evaluate restores the model itself
            super()._parse_ckpt_path()

    def _set_seed(self) -> None:
        if not self._evaluating():  # the metrics seed their own generators
            super()._set_seed()

    def before_instantiate_classes(self) -> None:
        if not self._evaluating():  # a bad option ends here: nothing built, nothing written
            check_model_options(self._get(self.config, "model"))

    def instantiate_classes(self) -> None:
        if self._evaluating():
            self.model = self.datamodule = self.trainer = None
            return
        super().instantiate_classes()

    def after_instantiate_classes(self) -> None:
        if not self._evaluating() and isinstance(self.model, TripodModule):
            check_built(self.model, self.datamodule if isinstance(self.datamodule, HDF5DataModule) else None)

    def _run_subcommand(self, subcommand: str) -> None:
        if subcommand == self.EVALUATE:
            run_evaluate(self.config[self.EVALUATE])
            return
        if subcommand == self.TRAVERSE:
            run_traverse(self.config[self.TRAVERSE])
            return
        if subcommand == "fit":
            self._continue_run(self.config["fit"].get("ckpt_path"))
        super()._run_subcommand(subcommand)

    def before_fit(self) -> None:
        """Says where the run writes, and how to watch it."""
        trainer = self.trainer
        if trainer is None or not trainer.is_global_zero:
            return
        root = os.path.abspath(trainer.default_root_dir)
        print(f"tripod-train fit: run folder {root}", flush=True)
        print(f"  checkpoints: {os.path.abspath(checkpoint_dir(trainer))}", flush=True)
        if trainer.loggers:
            logs = os.path.abspath(trainer.log_dir or root)
            print(f"  logs: {logs}  (watch: tensorboard --logdir {root})", flush=True)

    def _continue_run(self, ckpt_path: str | None) -> None:
        """Before a resumed ``fit``: its TensorBoard loggers write into the version folders they wrote before."""
        path = resume_path(self.trainer, ckpt_path)
        if path is None:
            return
        # the resumed run's checkpoint folder holds the interrupted run's files, as it should
        warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
        loggers = [logger for logger in self.trainer.loggers if isinstance(logger, TensorBoardLogger)]
        versions = recorded_log_versions(path)
        if len(versions) == len(loggers):
            for logger, version in zip(loggers, versions):
                if logger._version is None:  # not chosen by the user; still unresolved before fit
                    logger._version = version

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        for callback in trainer.callbacks:
            if isinstance(callback, (ModelCheckpoint, BestInfoMCheckpoint)) and callback.dirpath is None:
                callback.dirpath = str(default_checkpoint_dir(trainer))
        trainer.callbacks.append(ResumedRun())  # after the progress bar (it resets its bar on train start)
        return trainer

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # always on: every rank's RNG states travel in the checkpoints (exact resume)
        parser.add_lightning_class_args(RNGStateCallback, "rng_state")
        # always on: SIGTERM / Ctrl-C save a resumable last.ckpt (atomically) before the process ends
        parser.add_lightning_class_args(InterruptCheckpoint, "interrupt_checkpoint")
        parser.link_arguments("data.num_sources", "model.num_sources", apply_on="instantiate")
        parser.link_arguments("data.dataset_size", "model.dataset_size", apply_on="instantiate")


def run(args: Sequence[str] | None = None, *, build_only: bool = False) -> TripodCLI:
    """Run the CLI on ``args`` (default ``sys.argv[1:]``) and return it (tests inspect its trainer and model).

    ``build_only``: parse ``args`` (options and ``--config`` files, no subcommand) and build the model, the data
    module and the Trainer, with the same checks, but run nothing (a notebook's or a test's way to get them).
    User mistakes in options, data and checkpoint files end with a one-line error and exit status 2, before
    anything is written.
    """
    load_plugins()
    # our training streams know their length per rank and worker; Lightning's generic warning does not apply
    warnings.filterwarnings("ignore", message=r".*IterableDataset.* has `__len__` defined")
    try:
        return TripodCLI(
            TripodModule,
            HDF5DataModule,
            seed_everything_default=0,
            save_config_kwargs={"overwrite": True},
            args=list(args) if args is not None else None,
            auto_configure_optimizers=False,
            run=not build_only,
        )
    except (ConfigError, DatasetError, CheckpointError, TraverseOptionError) as err:
        print(f"tripod-train: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except OmegaConfBaseException as err:  # a config file's ${...} that does not resolve
        key = getattr(err, "full_key", None)
        where = f" (in {key})" if key else ""
        print(f"tripod-train: error: a config file's interpolation: {str(err).splitlines()[0]}{where}", file=sys.stderr)
        raise SystemExit(2) from None


def main(args: Sequence[str] | None = None) -> None:
    """Console-script entry point of ``tripod-train``."""
    run(args)  # None: LightningCLI reads sys.argv itself (passing it too makes it warn)


if __name__ == "__main__":  # pragma: no cover
    main()
