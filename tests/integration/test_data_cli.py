"""``tripod-data`` as a separate process: a bad input is one line on stderr and exit status 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_console_script_exit_status(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tripod_pl.data.prepare.cli", "info", str(tmp_path / "none.h5")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr == f"tripod-data: error: {tmp_path / 'none.h5'}: no such file\n"
