"""Shared fixtures: tiny model widths and a tiny procedural dataset."""

from __future__ import annotations

import pytest
import torch

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


@pytest.fixture(autouse=True)
def _few_threads():
    """Keep tests predictable on the 2-core CI machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(min(threads, 2))
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_h5(tmp_path_factory) -> str:
    """A tiny procedural dataset in the training layout."""
    from tripod_pl.data import generate_procedural

    path = tmp_path_factory.mktemp("data") / "tiny.h5"
    generate_procedural(str(path), factor_sizes=TINY_FACTORS)
    return str(path)
