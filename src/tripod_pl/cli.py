"""``tripod-train``: the LightningCLI entry point (``fit``, ``validate``, ``test``, ``predict``).

Everything is configured through typed ``__init__`` signatures: ``tripod-train fit --print_config`` shows the
whole system, ``tripod-train fit --config configs/shapes3d/tripod.yaml --trainer.max_steps 1000`` trains.
Plugin legs (entry-point group ``tripod_pl.legs``) are imported before parsing, so a config can name them.
The number of latents and the dataset size are taken from the data file (``data.num_sources`` ->
``model.num_sources``, ``data.dataset_size`` -> ``model.dataset_size``).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from tripod_pl.callbacks.interrupt import InterruptCheckpoint
from tripod_pl.callbacks.rng import RNGStateCallback
from tripod_pl.callbacks.selection import BestInfoMCheckpoint
from tripod_pl.data import DatasetError, HDF5DataModule
from tripod_pl.legs.registry import load_plugins
from tripod_pl.module import TripodModule

__all__ = ["TripodCLI", "main", "run"]


class TripodCLI(LightningCLI):
    """LightningCLI for :class:`TripodModule` and :class:`HDF5DataModule`.

    Checkpoints without an explicit ``dirpath`` go to ``<default_root_dir>/checkpoints`` (not into the
    logger's ``version_N`` folder), so a resumed run (``fit --ckpt_path last``) finds the interrupted one's.
    """

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        for callback in trainer.callbacks:
            if isinstance(callback, (ModelCheckpoint, BestInfoMCheckpoint)) and callback.dirpath is None:
                callback.dirpath = os.path.join(trainer.default_root_dir, "checkpoints")
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

    User mistakes in data files end with a one-line error and exit status 2.
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
    except DatasetError as err:
        print(f"tripod-train: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def main(args: Sequence[str] | None = None) -> None:
    """Console-script entry point of ``tripod-train``: LightningCLI's ``fit|validate|test|predict``, plus
    ``evaluate --ckpt_path CKPT [--data.path H5]`` (InfoMEC, DCI and PSNR of a checkpoint as JSON + Markdown)."""
    argv = list(sys.argv[1:] if args is None else args)
    if argv[:1] == ["evaluate"]:
        from tripod_pl.evaluation import evaluate_main

        load_plugins()
        try:
            evaluate_main(argv[1:])
        except DatasetError as err:
            print(f"tripod-train evaluate: error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
        return
    run(args)  # None: LightningCLI reads sys.argv itself (passing it too makes it warn)


if __name__ == "__main__":  # pragma: no cover
    main()
