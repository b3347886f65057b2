"""One rule for where checkpoints go, used by the CLI, BestInfoMCheckpoint and InterruptCheckpoint."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from lightning.pytorch.callbacks import ModelCheckpoint

from tripod_pl.callbacks import BestInfoMCheckpoint
from tripod_pl.callbacks.checkpoint_files import checkpoint_dir, save_checkpoint_atomically


def _trainer(tmp_path, callbacks, is_global_zero=True):
    saved, barriers = [], []

    def save_checkpoint(path):
        saved.append(Path(path))
        if is_global_zero:
            Path(path).write_text("weights")

    trainer = SimpleNamespace(
        default_root_dir=str(tmp_path),
        checkpoint_callbacks=callbacks,
        is_global_zero=is_global_zero,
        save_checkpoint=save_checkpoint,
        strategy=SimpleNamespace(barrier=lambda name=None: barriers.append(name)),
    )
    return trainer, saved, barriers


def test_the_first_model_checkpoints_folder_else_default_root_checkpoints(tmp_path):
    best = BestInfoMCheckpoint(psnr_threshold=0.0)
    trainer, _, _ = _trainer(tmp_path, [best, ModelCheckpoint(dirpath=str(tmp_path / "mc"))])
    assert checkpoint_dir(trainer) == tmp_path / "mc"
    trainer, _, _ = _trainer(tmp_path, [best, ModelCheckpoint()])  # no folder resolved yet
    assert checkpoint_dir(trainer) == tmp_path / "checkpoints"


def test_rank_zero_writes_a_temporary_file_then_renames_it(tmp_path):
    target = tmp_path / "checkpoints" / "last.ckpt"
    trainer, saved, barriers = _trainer(tmp_path, [])
    save_checkpoint_atomically(trainer, target)
    assert saved[0].parent == target.parent and saved[0].name.startswith(".last.ckpt.")
    assert target.read_text() == "weights" and sorted(p.name for p in target.parent.iterdir()) == ["last.ckpt"]
    assert len(barriers) == 1  # every rank leaves together

    other = tmp_path / "other" / "last.ckpt"
    trainer, saved, barriers = _trainer(tmp_path, [], is_global_zero=False)
    save_checkpoint_atomically(trainer, other)  # takes part in the save, writes and renames nothing
    assert len(saved) == 1 and not other.exists() and len(barriers) == 1
