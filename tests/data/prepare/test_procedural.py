"""The procedural dataset: full factorial, row-major, deterministic, its bytes pinned, every factor visible."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from tripod_pl.data import generate_procedural, read_info
from tripod_pl.data.prepare.procedural import (
    DEFAULT_FACTORS,
    _batches,
    _hues_to_rgb,
    _spread,
    render_masks,
    resolve_factor_sizes,
)

from ..helpers import SMALL_FACTORS, read_all


def test_small_file_is_the_factorial_grid_in_row_major_order(small_h5: str) -> None:
    info = read_info(small_h5)
    assert info.source_names == list(SMALL_FACTORS)
    assert info.source_sizes == list(SMALL_FACTORS.values())
    assert info.image_shape == (64, 64, 3)
    _, sources = read_all(small_h5)
    expected = np.stack(np.unravel_index(np.arange(info.num_images), info.source_sizes), 1)
    np.testing.assert_array_equal(sources, expected)


def test_two_values_per_factor_give_two_to_the_seven_images(tmp_path: Path) -> None:
    info = generate_procedural(tmp_path / "t.h5", {name: 2 for name in DEFAULT_FACTORS})
    assert info.num_images == 2 ** len(DEFAULT_FACTORS)


def test_default_factors_give_tens_of_thousands_of_images() -> None:
    assert len(DEFAULT_FACTORS) >= 5
    assert 20_000 <= int(np.prod(list(DEFAULT_FACTORS.values()))) <= 100_000


def test_deterministic_and_seed_changes_colours_only(tmp_path: Path) -> None:
    sizes = {name: 2 for name in DEFAULT_FACTORS}
    a = read_all(generate_procedural(tmp_path / "a.h5", sizes, seed=3).path)[0]
    b = read_all(generate_procedural(tmp_path / "b.h5", sizes, seed=3).path)[0]
    c = read_all(generate_procedural(tmp_path / "c.h5", sizes, seed=4).path)[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # the seed rotates hues: where the object is, the pixels differ; the background does not
    np.testing.assert_array_equal(a[:, 0, 0], c[:, 0, 0])


def test_pixels_are_the_object_composited_on_the_background(small_h5: str) -> None:
    # reference, in float64: grey + coverage * (hue - grey), rounded to 8 bits
    images, sources = read_all(small_h5)
    sizes = resolve_factor_sizes(SMALL_FACTORS)
    masks = render_masks(sizes).astype(np.float64)
    n_obj = sizes["object_color"]
    offset = np.random.default_rng(0).uniform(0.0, 1.0 / n_obj)
    colours = _hues_to_rgb((np.arange(n_obj) / n_obj + offset) % 1.0)
    greys = _spread(0.05, 0.5, sizes["background_color"])
    per_batch = len(masks)
    for i in range(0, len(images), 97):
        grey, colour = greys[sources[i, 0]], colours[sources[i, 1]]
        expected = np.rint(255 * (grey + masks[i % per_batch, ..., None] * (colour - grey)))
        assert np.abs(images[i].astype(np.float64) - expected).max() <= 1  # float32 rounding at .5 only


def test_default_dataset_bytes_are_pinned() -> None:
    # The quickstart's and the results' measured numbers rest on these exact images (seed 0): a change to the
    # rendering that moves one pixel by one level must be deliberate, and those figures measured again.
    digest = hashlib.sha256()
    for images, _ in _batches(resolve_factor_sizes(None), seed=0):
        digest.update(images.tobytes())
    assert digest.hexdigest() == "1145a5c30cd637143b85e7f2fb6ee63874d30d36ee438fbfa6fdbc80e1616244"


def test_every_value_of_every_factor_changes_the_image(small_h5: str) -> None:
    images, sources = read_all(small_h5)
    sizes = list(SMALL_FACTORS.values())
    grid = images.reshape(*sizes, 64, 64, 3).astype(np.int16)
    for k, name in enumerate(SMALL_FACTORS):
        moved = np.moveaxis(grid, k, 0)
        for v in range(1, sizes[k]):
            diff = np.abs(moved[v] - moved[0]).reshape(-1, 64 * 64 * 3).max(axis=1)
            assert (diff > 60).all(), f"{name} value {v} is not visible in every image"


def test_objects_stay_inside_the_frame() -> None:
    sizes = dict(DEFAULT_FACTORS)
    masks = render_masks(sizes)
    assert masks.shape == (4 * 3 * 6 * 6 * 5, 64, 64)
    border = np.concatenate([masks[:, 0], masks[:, -1], masks[:, :, 0], masks[:, :, -1]], axis=1)
    assert border.max() == 0
    assert (masks.reshape(len(masks), -1).sum(1) > 30).all()


def test_rotations_are_distinct_for_every_shape() -> None:
    masks = render_masks({**DEFAULT_FACTORS, "scale": 1, "position_x": 1, "position_y": 1})
    per_shape = masks.reshape(4, 5, 64 * 64)
    for s in range(4):
        for i in range(5):
            for j in range(i + 1, 5):
                assert np.abs(per_shape[s, i] - per_shape[s, j]).sum() > 10


@pytest.mark.parametrize(
    ("sizes", "message"),
    [({"colour": 2}, "unknown procedural factor 'colour'"), ({"shape": 5}, "at most 4"), ({"scale": 0}, "at least")],
)
def test_bad_factor_sizes(tmp_path: Path, sizes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_procedural(tmp_path / "x.h5", sizes)
    assert not (tmp_path / "x.h5").exists()


@pytest.mark.slow
def test_default_dataset_is_written_whole(tmp_path: Path) -> None:
    info = generate_procedural(tmp_path / "default.h5")
    assert info.num_images == int(np.prod(list(DEFAULT_FACTORS.values())))
    assert read_info(info.path) == info
