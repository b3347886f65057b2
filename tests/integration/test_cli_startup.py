"""``tripod-train --help``, a mistyped subcommand and ``tripod-data --help`` answer without importing Lightning
(the time they take is measured in benchmarks/cli_startup.py), and the quick help matches the LightningCLI's."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tripod_pl.cli.entry import SUBCOMMANDS

_HEAVY = "print(sorted(m for m in ('lightning', 'torch', 'jsonargparse') if m in sys.modules))"


def _modules_after(code: str) -> str:
    script = f"import sys\ntry:\n    {code}\nexcept SystemExit:\n    pass\n{_HEAVY}"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "code",
    [
        "from tripod_pl.cli import main; main(['--help'])",
        "from tripod_pl.cli import main; main(['fitt'])",
        "from tripod_pl.cli import main; main([])",
        "import runpy; sys.argv = ['tripod_pl', '--help']; runpy.run_module('tripod_pl', run_name='__main__')",
        "from tripod_pl.data.prepare.cli import main; main(['--help'])",
        "from tripod_pl.data.prepare.cli import main; main(['generate'])",
    ],
)
def test_help_and_argument_errors_import_no_heavy_module(code):
    assert _modules_after(code) == "[]"


def test_quick_answers(capsys):
    from tripod_pl.cli.entry import quick_answer

    assert quick_answer(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: tripod-train") and all(f"  {name} " in out for name in SUBCOMMANDS)
    assert quick_answer(["fitt"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "tripod-train: error: invalid subcommand 'fitt' (choose from fit, validate, test, predict, evaluate, traverse)"
    )
    assert quick_answer(["fit", "--help"]) is None and quick_answer(["-c", "x.yaml"]) is None


def test_quick_help_lists_the_lightning_cli_subcommands(capsys):
    from tripod_pl.cli.evaluate import DESCRIPTION
    from tripod_pl.cli.lightning_cli import run

    with pytest.raises(SystemExit):
        run(["--help"])
    out = capsys.readouterr().out
    assert "{" + ",".join(SUBCOMMANDS) + "}" in out
    assert SUBCOMMANDS["evaluate"] == DESCRIPTION
