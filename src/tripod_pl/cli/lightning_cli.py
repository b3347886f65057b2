"""``tripod-train``: the LightningCLI entry point (``fit``, ``validate``, ``test``, ``predict``, ``evaluate``).

Everything is configured through typed ``__init__`` signatures: ``tripod-train fit --print_config`` shows the
whole system, ``tripod-train fit --config configs/shapes3d/tripod.yaml --trainer.max_steps 1000`` trains.
Plugin legs (entry-point group ``tripod_pl.legs``) are imported before parsing, so a config can name them.
The number of latents and the dataset size are taken from the data file (``data.num_sources`` ->
``model.num_sources``, ``data.dataset_size`` -> ``model.dataset_size``). ``evaluate`` is a subcommand of its
own (:mod:`tripod_pl.cli.evaluate`): it restores the model and the data from a checkpoint, so it needs no config.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from tripod_pl.callbacks.checkpoint_files import default_checkpoint_dir
from tripod_pl.callbacks.interrupt import InterruptCheckpoint
from tripod_pl.callbacks.rng import RNGStateCallback
from tripod_pl.callbacks.selection import BestInfoMCheckpoint
from tripod_pl.cli.evaluate import DESCRIPTION as EVALUATE_DESCRIPTION
from tripod_pl.cli.evaluate import CheckpointError, evaluate_parser, run_evaluate
from tripod_pl.data import DatasetError, HDF5DataModule
from tripod_pl.legs.registry import load_plugins
from tripod_pl.module import TripodModule

__all__ = ["TripodCLI", "main", "run"]


class TripodCLI(LightningCLI):
    """LightningCLI for :class:`TripodModule` and :class:`HDF5DataModule`, with an ``evaluate`` subcommand.

    Checkpoints without an explicit ``dirpath`` go to ``<default_root_dir>/checkpoints`` (not into the
    logger's ``version_N`` folder), so a resumed run (``fit --ckpt_path last``) finds the interrupted one's.
    """

    EVALUATE = "evaluate"

    # ``evaluate`` is not a Trainer method: it gets its own parser, and the Trainer steps are skipped for it.
    def _add_subcommands(self, parser: LightningArgumentParser, **kwargs: Any) -> None:
        super()._add_subcommands(parser, **kwargs)
        subparser = evaluate_parser()
        parser._subcommands_action.add_subcommand(self.EVALUATE, subparser, help=EVALUATE_DESCRIPTION)
        self._subcommand_parsers[self.EVALUATE] = subparser

    def _evaluating(self) -> bool:
        return self.config.get("subcommand") == self.EVALUATE

    def _parse_ckpt_path(self) -> None:
        if not self._evaluating():  # evaluate restores the model itself
            super()._parse_ckpt_path()

    def _set_seed(self) -> None:
        if not self._evaluating():  # the metrics seed their own generators
            super()._set_seed()

    def instantiate_classes(self) -> None:
        if self._evaluating():
            self.model = self.datamodule = self.trainer = None
            return
        super().instantiate_classes()

    def _run_subcommand(self, subcommand: str) -> None:
        if subcommand == self.EVALUATE:
            run_evaluate(self.config[self.EVALUATE])
            return
        super()._run_subcommand(subcommand)

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        for callback in trainer.callbacks:
            if isinstance(callback, (ModelCheckpoint, BestInfoMCheckpoint)) and callback.dirpath is None:
                callback.dirpath = str(default_checkpoint_dir(trainer))
        return trainer

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # always on: every rank's RNG states travel in the checkpoints (exact resume)
        parser.add_lightning_class_args(RNGStateCallback, "rng_state")
        # always on: SIGTERM / Ctrl-C save a resumable last.ckpt (atomically) before the process ends
        parser.add_lightning_class_args(InterruptCheckpoint, "interrupt_checkpoint")
        parser.link_arguments("data.num_sources", "model.num_sources", apply_on="instantiate")
        parser.link_arguments("data.dataset_size", "model.dataset_size", apply_on="instantiate")


def run(args: Sequence[str] | None = None) -> TripodCLI:
    """Run the CLI on ``args`` (default ``sys.argv[1:]``) and return it (tests inspect its trainer and model).

    User mistakes in data and checkpoint files end with a one-line error and exit status 2.
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
        )
    except (DatasetError, CheckpointError) as err:
        print(f"tripod-train: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def main(args: Sequence[str] | None = None) -> None:
    """Console-script entry point of ``tripod-train``."""
    run(args)  # None: LightningCLI reads sys.argv itself (passing it too makes it warn)


if __name__ == "__main__":  # pragma: no cover
    main()
