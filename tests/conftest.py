"""Shared fixtures: a thread limit for every test and a tiny procedural dataset (constants in helpers.py)."""

from __future__ import annotations

import pytest
import torch

from .helpers import TINY_FACTORS


@pytest.fixture(autouse=True)
def _few_threads():
    """Keep tests predictable on the 2-core CI machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(min(threads, 2))
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def one_thread():
    """One intra-op thread: on a shared 2-core machine two threads per process oversubscribe it and a tiny
    training step takes seconds instead of a tenth of one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_h5(tmp_path_factory) -> str:
    """A tiny procedural dataset in the training layout."""
    from tripod_pl.data import generate_procedural

    path = tmp_path_factory.mktemp("data") / "tiny.h5"
    generate_procedural(str(path), factor_sizes=TINY_FACTORS)
    return str(path)
