"""Fixtures of the data tests: a small procedural file (helpers in ``helpers.py``)."""

from __future__ import annotations

import pytest

from .helpers import write_small


@pytest.fixture(scope="session")
def small_h5(tmp_path_factory: pytest.TempPathFactory) -> str:
    """288 procedural images; row ``i`` has the sources ``np.unravel_index(i, sizes)``."""
    return write_small(tmp_path_factory.mktemp("data") / "small.h5")
