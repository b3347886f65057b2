"""``tripod-train traverse`` on a trained checkpoint: the GIFs of its active latents, their frames and timing."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

from tripod_pl import TripodModule
from tripod_pl.animation import cycle_values
from tripod_pl.callbacks.evaluation import figure_samples
from tripod_pl.cli import main
from tripod_pl.cli.traverse import default_out_dir, traverse_checkpoint
from tripod_pl.data import HDF5DataModule
from tripod_pl.evaluation import evaluate_model
from tripod_pl.legs import FSQ, KLM

from ..helpers import TINY

EVAL_SIZE = 120


@pytest.fixture(scope="module")
def tiny_ckpt(tiny_h5, tmp_path_factory) -> str:
    """A tiny Tripod after a few training steps, saved by a trainer fitted with the data module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("run")
    model = TripodModule(FSQ(), [KLM()], n_z=4, **TINY)
    trainer = L.Trainer(
        max_steps=4, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, default_root_dir=str(root),
    )  # fmt: skip
    trainer.fit(model, datamodule=HDF5DataModule(tiny_h5, batch_size=16, num_workers=0, eval_size=EVAL_SIZE))
    path = root / "checkpoints" / "tiny.ckpt"
    trainer.save_checkpoint(path)
    torch.set_num_threads(threads)
    return str(path)


def read_gif(path) -> tuple[list[np.ndarray], list[int]]:
    frames, durations = [], []
    for frame in ImageSequence.Iterator(Image.open(path)):
        frames.append(np.asarray(frame.convert("RGB")))
        durations.append(frame.info["duration"])
    return frames, durations


def test_traverse_command_writes_a_grid_and_one_gif_per_active_latent(tiny_ckpt, tiny_h5, tmp_path, capsys):
    out = tmp_path / "gifs"
    main(["traverse", "--ckpt_path", tiny_ckpt, "--out", str(out), "--num_frames", "8", "--fps", "5",
          "--num_samples", "3", "--device", "cpu"])  # fmt: skip
    module = TripodModule.load_from_checkpoint(tiny_ckpt, map_location="cpu", weights_only=True)
    images, sources = HDF5DataModule(tiny_h5, eval_size=EVAL_SIZE).eval_subset()
    result = evaluate_model(module.model, images, sources, dci=False)
    active = [int(j) for j in np.flatnonzero(result.active)]
    assert active, "the tiny model has no active latent: the test needs one"
    assert sorted(p.name for p in out.iterdir()) == sorted(["traversals.gif", *(f"z{j}.gif" for j in active)])
    assert f"wrote {1 + len(active)} GIFs into {out}" in capsys.readouterr().out

    grid, durations = read_gif(out / "traversals.gif")
    header, cell = 26, 66  # two header lines of 12 px and padding; 64 px images, 2 px apart
    assert grid[0].shape == (header + 3 * cell + 2, len(active) * cell + 2, 3)
    assert sum(durations) == 8 * 200  # 8 frames at 5 fps (identical neighbours merged into longer frames)
    assert len(grid) > 1 and any(not np.array_equal(grid[0], f) for f in grid[1:])

    # each latent's own GIF: its column of the grid, frame by frame
    picked = figure_samples(EVAL_SIZE, 3)
    for j in active:
        frames, durations = read_gif(out / f"z{j}.gif")
        assert frames[0].shape == (header + 3 * cell + 2, cell + 2, 3) and sum(durations) == 1600
        sweep = cycle_values(result.latents, picked, [j], 8, discrete=True)[:, 0]
        moves = bool((sweep != sweep[:, :1]).any())  # the latent takes more than one value in the cycle
        if moves:
            assert len(frames) > 1  # and so does the picture
        # frame 0 shows the samples' own codes decoded: their reconstructions
        recon = ((module.model.decode(result.latents[picked]) + 1) * 127.5).round().clamp(0, 255).byte()
        first = frames[0][header + 2 : header + 2 + 64, 2 : 2 + 64].astype(int)
        assert np.abs(first - recon[0].permute(1, 2, 0).numpy().astype(int)).mean() < 8  # GIF palette error


def test_traverse_writes_next_to_the_checkpoint_by_default(tiny_ckpt):
    paths = traverse_checkpoint(tiny_ckpt, num_frames=3, num_samples=1, device="cpu", all_latents=True)
    assert paths[0] == default_out_dir(tiny_ckpt) / "traversals.gif"
    assert default_out_dir(tiny_ckpt).name == "tiny.traversals"
    assert [p.name for p in paths[1:]] == ["z0.gif", "z1.gif", "z2.gif", "z3.gif"]  # all latents, active or not
    assert all(p.is_file() for p in paths)


@pytest.mark.parametrize(
    ("option", "message"),
    [("--num_frames=1", "--num_frames must be at least 2, got 1"), ("--fps=0", "--fps must be positive, got 0.0")],
)
def test_bad_options_and_missing_checkpoints_are_one_line(tiny_ckpt, tmp_path, capsys, option, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["traverse", "--ckpt_path", tiny_ckpt, "--out", str(tmp_path), option])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == f"tripod-train: error: {message}"
    assert not any(tmp_path.iterdir())  # nothing written
    with pytest.raises(SystemExit):
        main(["traverse", "--ckpt_path", str(tmp_path / "missing.ckpt")])
    assert (
        capsys.readouterr().err.strip() == f"tripod-train: error: {tmp_path / 'missing.ckpt'}: no such checkpoint file"
    )
