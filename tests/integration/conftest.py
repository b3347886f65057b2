"""End-to-end tests (CLI, DDP, resume, notebook, plugin, SLURM) run on one intra-op thread."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield
