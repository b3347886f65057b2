"""Helpers shared by the test modules: tiny model widths and datasets, a quiet trainer, CLI configs."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import lightning as L
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def pinned_threads(count: int) -> Iterator[None]:
    """``count`` intra-op threads inside the block, the number before restored after it (also on an error)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


#: network widths small enough for a CPU test to train a few steps in about a second
TINY = {"encoder_widths": [4, 4, 4, 4], "decoder_widths": [8, 4, 4, 4], "cond_dim": 8}
TINY_CLI = ["--model.encoder_widths=[4,4,4,4]", "--model.decoder_widths=[8,4,4,4]", "--model.cond_dim=8"]

#: 432 images, all 7 procedural sources varying
TINY_FACTORS = {
    "background_color": 2,
    "object_color": 3,
    "shape": 2,
    "scale": 2,
    "position_x": 3,
    "position_y": 3,
    "rotation": 2,
}


def load_script(relative: str) -> ModuleType:
    """A script of the repository that is not part of the package (``benchmarks/*.py``, ``scripts/*.py``), imported
    as a module from its path relative to the repository root."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(f"_script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def images(n: int = 8, seed: int = 0) -> torch.Tensor:
    """``n`` random images in [-1, 1], N x 3 x 64 x 64."""
    return torch.rand(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def tiny_model(seed: int = 0):
    """A tiny Tripod without NHP (FSQ + KLM) as a TripodModule."""
    from tripod_pl import TripodModule
    from tripod_pl.legs import FSQ, KLM

    torch.manual_seed(seed)
    return TripodModule(FSQ(), [KLM()], n_z=4, **TINY)


def tiny_data(path: str, eval_size: int = 200):
    from tripod_pl.data import HDF5DataModule

    return HDF5DataModule(path, batch_size=16, num_workers=0, eval_size=eval_size)


class InterruptAt(L.Callback):
    """Raises ``error`` after training step ``step``: Ctrl-C by default; a subclass may set Lightning's
    ``SIGTERMException`` (the graceful stop it raises after a batch when SIGTERM arrives)."""

    error: type[BaseException] = KeyboardInterrupt

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            raise self.error


def tiny_trainer(tmp_path, callbacks, **kw) -> L.Trainer:
    """A quiet trainer; no validation unless ``val_check_interval`` is given."""
    opts = dict(
        max_steps=4,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    if "val_check_interval" in kw:
        opts.update(limit_val_batches=1, check_val_every_n_epoch=None)
    opts.update(kw)
    return L.Trainer(callbacks=callbacks, **opts)


def quickstart_config(tmp_path: Path, data: str, every: int, batch_size: int = 16) -> Path:
    """configs/quickstart.yaml at tiny widths on ``data``, checkpointing every ``every`` steps, CSV-logged,
    without validation or evaluation callbacks; written to ``tmp_path/config.yaml``."""
    cfg = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    cfg["trainer"].update(
        limit_val_batches=0,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger={"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": "."}},
    )
    # the checkpointing only (the config's evaluation callbacks are not what this is about)
    cfg["trainer"]["callbacks"] = [
        c for c in cfg["trainer"]["callbacks"] if c["class_path"].endswith("ModelCheckpoint")
    ]
    cfg["trainer"]["callbacks"][0]["init_args"]["every_n_train_steps"] = every
    cfg["model"].update(TINY)
    cfg["data"].update(path=data, num_workers=0, batch_size=batch_size, generate_if_missing=False, eval_size=120)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def cli_fit(cfg: Path, root: Path, steps: int, *extra: str):
    """``tripod-train fit --config cfg`` in-process for ``steps`` steps, writing under ``root``; the CLI object."""
    from tripod_pl.cli import run

    return run(
        [
            "fit",
            "--config",
            str(cfg),
            f"--trainer.max_steps={steps}",
            f"--trainer.default_root_dir={root}",
            f"--trainer.logger.init_args.save_dir={root}",
            *extra,
        ]
    )
