"""Regression test of what the framework is for: Tripod, trained exactly as shipped (configs/procedural/tripod.yaml:
3,000 steps, seed 0), captures clearly more sources of the procedural dataset than the plain autoencoder trained
the same way (configs/procedural/ae.yaml) — same data, seed, steps and networks; only where they write changes.

A source is captured when some active latent has NMI >= 0.5 with it (tripod_pl.evaluation.CAPTURED_NMI), on the
configs' evaluation subset, for the last checkpoint of each run. This is what the results sweep measures per seed
(results/procedural.md). About 25 minutes on an idle 2-core CPU: run by ``make test-slow``.

Not a smaller dataset: on a 576-scene variant (two values per source, 3 x 3 positions) at 1,200 steps the AE
captured 4 sources and Tripod 2 (results/procedural_tuning.md) — at that budget the warm-up has only just ended.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from tripod_pl.cli import run
from tripod_pl.cli.evaluate import evaluate_checkpoint
from tripod_pl.data.prepare.procedural import generate_procedural
from tripod_pl.evaluation import CAPTURED_NMI, best_active_latents

ROOT = Path(__file__).resolve().parents[2]
#: Tripod must capture at least this many sources more than the AE
MARGIN = 2


def _config(method: str, tmp_path: Path, data: Path) -> Path:
    """The shipped procedural config of ``method``, writing under ``tmp_path`` (no progress bar)."""
    cfg = yaml.safe_load((ROOT / "configs" / "procedural" / f"{method}.yaml").read_text())
    cfg["trainer"].update(default_root_dir=str(tmp_path / method), enable_progress_bar=False)
    cfg["data"].update(path=str(data))
    path = tmp_path / f"{method}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _captured(method: str, tmp_path: Path, data: Path) -> tuple[int, dict[str, float]]:
    run(["fit", "--config", str(_config(method, tmp_path, data))])
    result = evaluate_checkpoint(str(tmp_path / method / "checkpoints" / "last.ckpt"), dci=False)
    _, best = best_active_latents(np.asarray(result["nmi"]), np.asarray(result["active"]))
    return int((best >= CAPTURED_NMI).sum()), dict(zip(result["source_names"], best.round(2).tolist(), strict=True))


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,  # passing means the target is reached: remove this marker then
    reason="not reached yet: the results sweep's seed 0 ends with Tripod 3 sources, the AE 2 "
    "(results/procedural_tuning.md)",
)
def test_tripod_captures_clearly_more_sources_than_the_autoencoder(tmp_path):
    data = tmp_path / "procedural.h5"
    generate_procedural(str(data))
    tripod, tripod_nmi = _captured("tripod", tmp_path, data)
    ae, ae_nmi = _captured("ae", tmp_path, data)
    assert tripod >= ae + MARGIN, f"Tripod captured {tripod} sources {tripod_nmi}, the AE {ae} {ae_nmi}"
