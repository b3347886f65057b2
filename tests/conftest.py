"""Shared fixtures: a thread limit for every test and a tiny procedural dataset (constants in helpers.py)."""

from __future__ import annotations

import pytest
import torch

from .helpers import TINY_FACTORS, pinned_threads


@pytest.fixture(autouse=True)
def _few_threads():
    """Keep tests predictable on the 2-core CI machine."""
    with pinned_threads(min(torch.get_num_threads(), 2)):
        yield


@pytest.fixture
def one_thread():
    """One intra-op thread: on a shared 2-core machine two threads per process oversubscribe it and a tiny
    training step takes seconds instead of a tenth of one."""
    with pinned_threads(1):
        yield


@pytest.fixture
def two_threads():
    """Exactly two intra-op threads, whatever the machine: the thread count changes float32 rounding, and with it
    the path of a long training run (tests/integration/test_learning.py)."""
    with pinned_threads(2):
        yield


@pytest.fixture(scope="session")
def tiny_h5(tmp_path_factory) -> str:
    """A tiny procedural dataset in the training layout."""
    from tripod_pl.data import generate_procedural

    path = tmp_path_factory.mktemp("data") / "tiny.h5"
    generate_procedural(str(path), factor_sizes=TINY_FACTORS)
    return str(path)
