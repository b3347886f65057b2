"""Traversal animations: the cycle of disentanglement_lib, the decoded codes, the frame grid and the GIF."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence
from torch import nn

from tripod_pl import animation as A


def dlib_cycle_interval(start: float, num_frames: int, lo: float, hi: float) -> np.ndarray:
    """disentanglement_lib's ``visualize_util.cycle_interval``, transcribed in NumPy."""
    s = (start - lo) / (hi - lo)
    grid = np.linspace(s, s + 2.0, num=num_frames, endpoint=False)
    grid -= np.maximum(0, 2 * grid - 2)
    grid += np.maximum(0, -2 * grid)
    return grid * (hi - lo) + lo


class LinearDecoder(nn.Module):
    """A stand-in model whose image is a fixed linear map of the code (so each frame shows its code)."""

    def __init__(self, n_z: int, discrete: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_z, 3 * 4 * 4, generator=torch.Generator().manual_seed(0)))
        self.discrete_latents = discrete

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(z @ self.weight).reshape(-1, 3, 4, 4)


@pytest.mark.parametrize("num_frames", [2, 7, 20])
@pytest.mark.parametrize("start", [0.0, 0.13, 0.5, 0.99, 1.0])
def test_cycle_positions_are_disentanglement_libs_cycle(start, num_frames):
    ours = A.cycle_positions(torch.tensor(start, dtype=torch.float64), num_frames).numpy()
    np.testing.assert_allclose(ours, dlib_cycle_interval(start, num_frames, 0.0, 1.0), atol=1e-12)
    assert ours[0] == pytest.approx(start) and ours.min() >= 0 and ours.max() <= 1


def test_continuous_values_start_at_the_sample_and_sweep_its_latents_range():
    latents = torch.tensor([[-2.0, 0.0], [0.0, 3.0], [2.0, 1.0], [1.0, 2.0]])
    values = A.cycle_values(latents, torch.tensor([1, 3]), [0, 1], 8, discrete=False)
    assert values.shape == (2, 2, 8)
    for s, n in enumerate([1, 3]):
        for d in range(2):
            col = latents[:, d].numpy().astype(np.float64)
            expected = dlib_cycle_interval(col[n], 8, col.min(), col.max())
            np.testing.assert_allclose(values[s, d].numpy(), expected, atol=1e-6)
    # every start, one period: the minimum and the maximum are reached (start 0 at frame 4 of 8, etc.)
    assert torch.equal(values[0, 0].max(), torch.tensor(2.0)) and torch.equal(values[0, 0].min(), torch.tensor(-2.0))


def test_discrete_values_only_take_the_latents_own_values():
    levels = torch.tensor([-1.0, -0.5, 0.25, 0.5, 1.0])
    latents = torch.stack([levels[torch.tensor([0, 1, 2, 3, 1, 4])], torch.full((6,), 0.5)], dim=1)
    values = A.cycle_values(latents, torch.tensor([4]), [0, 1], 12, discrete=True)
    sweep = values[0, 0]
    assert set(sweep.tolist()) == set(levels.tolist())  # every level visited, nothing in between
    assert sweep[0] == latents[4, 0]  # starts at the sample's own value
    position = torch.searchsorted(levels, sweep).numpy()
    expected = np.round(dlib_cycle_interval(1 / 4, 12, 0.0, 1.0) * 4)  # no ties: positions 1 + 2k/3 folded
    np.testing.assert_array_equal(position, expected)  # the continuous cycle, snapped to the level index
    assert torch.equal(values[0, 1], torch.full((12,), 0.5))  # one value: it stays


@pytest.mark.parametrize("discrete", [False, True])
def test_each_frame_decodes_the_sample_with_one_latent_moved(discrete):
    g = torch.Generator().manual_seed(1)
    latents = torch.randint(-2, 3, (30, 5), generator=g).float() / 2 if discrete else torch.randn(30, 5, generator=g)
    model = LinearDecoder(5, discrete)
    picked, dims = torch.tensor([3, 17]), [0, 2, 4]
    decoded = A.traversal_animation(model, latents, dims, picked, num_frames=6, batch_size=7)
    assert decoded.shape == (2, 3, 6, 3, 4, 4)
    values = A.cycle_values(latents, picked, dims, 6, discrete)
    for s, n in enumerate(picked.tolist()):
        for d, j in enumerate(dims):
            codes = latents[n].repeat(6, 1)
            codes[:, j] = values[s, d]
            torch.testing.assert_close(decoded[s, d], model.decode(codes).detach())
        # frame 0 is the sample itself for every latent
        torch.testing.assert_close(decoded[s, :, 0], model.decode(latents[n : n + 1]).detach().expand(3, 3, 4, 4))
    assert (decoded[0, 0, 1:] - decoded[0, 0, :1]).abs().amax() > 0.01  # the sweep changes the picture
    with pytest.raises(ValueError, match="no latents"):
        A.traversal_animation(model, latents, [], picked)


def test_frames_put_samples_in_rows_and_latents_in_columns_below_a_header():
    s, d, f, h, w, pad = 2, 3, 4, 5, 6, 2
    images = torch.zeros(s, d, f, 1, h, w)
    for si in range(s):
        for di in range(d):
            for fi in range(f):
                images[si, di, fi] = (si * 100 + di * 10 + fi) / 255 * 2 - 1  # pixel value = 100 s + 10 d + f
    frames = A.animation_frames(images, ["z0", "z1\n.90 shape", "z2"], pad=pad)
    header = 2 * 12 + pad
    assert frames.shape == (f, header + s * (h + pad) + pad, d * (w + pad) + pad, 3) and frames.dtype == np.uint8
    for si in range(s):
        for di in range(d):
            y, x = header + pad + si * (h + pad), pad + di * (w + pad)
            cell = frames[:, y : y + h, x : x + w].astype(int)
            expected = np.array([100 * si + 10 * di + fi for fi in range(f)])[:, None, None, None]
            assert (cell == expected).all()  # grey images become RGB
    assert (frames[:, header:][:, :pad] == 255).all()  # white padding
    assert (frames[0, :header] < 128).any()  # the labels are drawn
    assert (frames[:, :header] == frames[:1, :header]).all()  # the same header on every frame
    with pytest.raises(ValueError, match="channels"):
        A.animation_frames(torch.zeros(1, 1, 2, 2, 4, 4))
    with pytest.raises(ValueError, match="labels"):
        A.animation_frames(images, ["z0"])


def test_gif_loops_at_the_frame_rate_and_keeps_the_frames(tmp_path):
    colors = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [0, 255, 0], [0, 255, 0]], dtype=np.uint8)
    frames = np.broadcast_to(colors[:, None, None, :], (5, 6, 9, 3)).copy()
    path = tmp_path / "a" / "x.gif"
    A.save_gif(frames, path, fps=5)
    gif = Image.open(path)
    assert gif.size == (9, 6) and gif.info["loop"] == 0
    decoded = [np.asarray(fr.convert("RGB")) for fr in ImageSequence.Iterator(gif)]
    durations = [fr.info["duration"] for fr in ImageSequence.Iterator(Image.open(path))]
    # the two identical last frames are merged into one frame shown twice as long
    assert len(decoded) == 4 and durations == [200, 200, 200, 400]
    for got, want in zip(decoded, colors[[0, 1, 2, 3]]):
        assert (got == want).all()
    assert A.gif_bytes(frames, fps=10)[:6] == b"GIF89a"
    with pytest.raises(ValueError, match="uint8"):
        A.gif_bytes(frames.astype(np.float32))
    with pytest.raises(ValueError, match="fps"):
        A.gif_bytes(frames, fps=0)
    assert Image.open(io.BytesIO(A.gif_bytes(frames[:1]))).n_frames == 1


def test_gif_frames_stay_close_to_the_originals():
    # scene-like frames: a grey background that darkens, an anti-aliased disc that moves and changes hue; with
    # one palette for all of them, each decodes to within 2 levels on average
    y, x = np.mgrid[0:48, 0:64] + 0.5
    frames = []
    for t in range(16):
        cover = np.clip(10.0 - np.hypot(x - 12 - 2.5 * t, y - 24), 0.0, 1.0)[..., None]
        colour = np.array([255.0 - 12 * t, 40.0 + 10 * t, 90.0])
        frames.append(np.rint((200.0 - 6 * t) * (1 - cover) + colour * cover))
    frames = np.stack(frames).astype(np.uint8)
    gif = Image.open(io.BytesIO(A.gif_bytes(frames)))
    decoded = np.stack([np.asarray(fr.convert("RGB"), dtype=np.float64) for fr in ImageSequence.Iterator(gif)])
    assert decoded.shape == frames.shape
    assert np.abs(decoded - frames).mean() < 2.0


def test_header_labels_name_the_best_source_and_its_nmi():
    nmi = np.array([[0.9, 0.1], [0.2, 0.35]])
    assert A.header_labels([0, 1], nmi, ["shape", "background_color"]) == ["z0\n.90 shape", "z1\n.35 background_color"]
    assert A.header_labels([1]) == ["z1"]
