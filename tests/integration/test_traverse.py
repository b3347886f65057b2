"""``tripod-train traverse`` on the quickstart's checkpoint, run as the README writes it: the GIFs of its active
latents, their frames and timing; and the animation the quickstart logs to TensorBoard while it trains."""

from __future__ import annotations

import io
import shlex
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image, ImageSequence
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tripod_pl import TripodModule
from tripod_pl.animation import cycle_values
from tripod_pl.callbacks.evaluation import figure_samples
from tripod_pl.cli import main
from tripod_pl.cli.traverse import default_out_dir, traverse_checkpoint
from tripod_pl.data import HDF5DataModule
from tripod_pl.evaluation import evaluate_model

from ..helpers import ROOT, pinned_threads
from .test_readme import quickstart_in

EVAL_SIZE = 60  # quickstart_in's
CKPT = "runs/quickstart/checkpoints/last.ckpt"


def readme_traverse_command() -> list[str]:
    """The README's ``tripod-train traverse ...`` line, as arguments."""
    lines = (ROOT / "README.md").read_text().splitlines()
    line = next(ln for ln in lines if ln.startswith("tripod-train traverse "))
    return shlex.split(line, comments=True)[1:]


@pytest.fixture(scope="module")
def quickstart(tiny_h5, tmp_path_factory) -> Path:
    """A folder where configs/quickstart.yaml (tiny and 2 steps long, quickstart_in) has run: its ``runs/``."""
    with pinned_threads(1):
        folder = tmp_path_factory.mktemp("quickstart")
        path = quickstart_in(folder, tiny_h5)
        config = yaml.safe_load(open(path))
        for callback in config["trainer"]["callbacks"]:  # the evaluation's costly parts off (tested elsewhere)
            if callback["class_path"].endswith("EvaluationCallback"):
                off = {"dci": False, "hessian_samples": 0, "pairwise_histograms": False}
                callback["init_args"].update(off, animation_frames=6)
        Path(path).write_text(yaml.safe_dump(config))
        main(["fit", "--config", path, f"--trainer.default_root_dir={folder / 'runs/quickstart'}"])
    return folder


@pytest.fixture
def tiny_ckpt(quickstart) -> str:
    return str(quickstart / CKPT)


def read_gif(path) -> tuple[list[np.ndarray], list[int]]:
    frames, durations = [], []
    for frame in ImageSequence.Iterator(Image.open(path)):
        frames.append(np.asarray(frame.convert("RGB")))
        durations.append(frame.info["duration"])
    return frames, durations


def test_the_readmes_traverse_command_writes_a_grid_and_one_gif_per_active_latent(
    quickstart, tiny_ckpt, tiny_h5, capsys, monkeypatch
):
    monkeypatch.chdir(quickstart)
    args = readme_traverse_command()
    assert args[args.index("--ckpt_path") + 1] == CKPT
    main([*args, "--num_frames", "8", "--fps", "5", "--num_samples", "3", "--device", "cpu"])
    out = quickstart / "runs/quickstart/checkpoints/last.traversals"  # next to the checkpoint
    module = TripodModule.load_from_checkpoint(tiny_ckpt, map_location="cpu", weights_only=True)
    images, sources = HDF5DataModule(tiny_h5, eval_size=EVAL_SIZE).eval_subset()
    result = evaluate_model(module.model, images, sources, dci=False)
    active = [int(j) for j in np.flatnonzero(result.active)]
    assert active, "the tiny model has no active latent: the test needs one"
    assert sorted(p.name for p in out.iterdir()) == sorted(["traversals.gif", *(f"z{j}.gif" for j in active)])
    assert f"wrote {1 + len(active)} GIFs into {out.relative_to(quickstart)}:" in capsys.readouterr().out

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


def test_traverse_can_animate_every_latent_into_any_folder(tiny_ckpt, tmp_path):
    paths = traverse_checkpoint(tiny_ckpt, out=tmp_path / "gifs", num_frames=3, num_samples=1, all_latents=True)
    assert paths[0] == tmp_path / "gifs" / "traversals.gif"
    assert default_out_dir(tiny_ckpt).name == "last.traversals"
    assert [p.name for p in paths[1:]] == [f"z{j}.gif" for j in range(14)]  # all latents, active or not
    assert all(p.is_file() for p in paths)


def test_the_quickstart_logs_the_animation_to_tensorboard(quickstart):
    events = EventAccumulator(str(quickstart / "runs/quickstart/lightning_logs/version_0"), size_guidance={"images": 0})
    events.Reload()
    (video,) = events.Images("eval/traversal_animation")
    assert video.step == 2 and video.encoded_image_string[:6] == b"GIF89a"
    gif = Image.open(io.BytesIO(video.encoded_image_string))
    assert (gif.height, gif.width) == (video.height, video.width) and gif.n_frames > 1


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
