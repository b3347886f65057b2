"""notebooks/explore_checkpoint.ipynb runs top to bottom (nbclient) on a tiny checkpoint trained here."""

from __future__ import annotations

import json
import sys

import nbformat
import pytest
from nbclient import NotebookClient

from ..helpers import ROOT, cli_fit, quickstart_config

NOTEBOOK = ROOT / "notebooks" / "explore_checkpoint.ipynb"

# in the default suite: the issue requires this to run in CI


@pytest.fixture
def venv_kernel(tmp_path, monkeypatch) -> str:
    """A kernelspec that runs this interpreter (the venv with tripod_pl), found first on JUPYTER_PATH."""
    spec = tmp_path / "jupyter" / "kernels" / "tripod-test"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "tripod test", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return "tripod-test"


def test_notebook_runs_on_a_tiny_checkpoint(tmp_path, tiny_h5, venv_kernel, monkeypatch):
    cfg = quickstart_config(tmp_path, tiny_h5, every=2)
    root = tmp_path / "run"
    cli_fit(cfg, root, 2)
    ckpts = root / "checkpoints"
    monkeypatch.setenv("TRIPOD_CKPT", str(ckpts / "last.ckpt"))
    monkeypatch.setenv("TRIPOD_CKPT_B", str(ckpts / "epoch=0-step=2.ckpt"))
    monkeypatch.setenv("TRIPOD_EVAL_SIZE", "120")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")

    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, kernel_name=venv_kernel, timeout=240, resources={"metadata": {"path": str(tmp_path)}}).execute()

    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 3  # reconstructions, NMI heatmap, traversals
    tables = [o["data"]["text/markdown"] for o in outputs if "| run |" in o.get("data", {}).get("text/markdown", "")]
    assert len(tables) == 1 and tables[0].count("\n") == 3, tables  # header, rule, two runs
    assert "step 2" in "".join(o.get("text", "") for o in outputs)
