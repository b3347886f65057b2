"""How far the paper's evaluation protocol is from the package's own on a trained model (docs/evaluation.md).

Trains the quickstart (``configs/quickstart.yaml``, unchanged) unless ``--ckpt`` names a checkpoint, then on the
checkpoint's evaluation subset reports, per image and on average:

- ``psnr`` (floating point) against ``psnr_paper`` (the authors' uint8 computation, differences wrapping
  modulo 256), and how many images the two would place on different sides of each paper threshold;
- InfoE with ``infoe_protocol="paper"`` (sklearn's default 100 iterations, unweighted log-loss) against
  ``"converged"`` (balanced, fitted to convergence), in the torch and the sklearn backends.

::

    python benchmarks/paper_protocol_gap.py                       # trains into runs/paper_protocol_gap
    python benchmarks/paper_protocol_gap.py --ckpt runs/quickstart/checkpoints/last.ckpt

Writes ``benchmarks/results/paper_protocol_gap.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
THRESHOLDS = (34.0, 38.0, 40.0, 42.0)  # the paper's, Falcor3D / Shapes3D / Isaac3D / MPI3D


def train(run_dir: Path) -> Path:
    from tripod_pl.cli import run

    run_dir.mkdir(parents=True, exist_ok=True)
    data = run_dir / "procedural.h5"
    run(["fit", "--config", str(ROOT / "configs" / "quickstart.yaml"), f"--trainer.default_root_dir={run_dir}",
         f"--data.path={data}", "--trainer.enable_progress_bar=false"])  # fmt: skip
    return run_dir / "checkpoints" / "last.ckpt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", default=None, help="a checkpoint (default: train the quickstart)")
    parser.add_argument("--run_dir", default=str(ROOT / "runs" / "paper_protocol_gap"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "paper_protocol_gap.json"))
    args = parser.parse_args()

    from tripod_pl.cli.evaluate import restore_datamodule
    from tripod_pl.evaluation import _encode_and_reconstruct
    from tripod_pl.metrics import infomec
    from tripod_pl.module import load_model

    t0 = time.perf_counter()
    ckpt = Path(args.ckpt) if args.ckpt else train(Path(args.run_dir))
    train_seconds = time.perf_counter() - t0
    module = load_model(str(ckpt))
    data = restore_datamodule(str(ckpt))
    images, sources = data.eval_subset()
    latents, psnr, psnr_paper, _ = _encode_and_reconstruct(module.model, torch.as_tensor(images))
    psnr, psnr_paper = psnr.double().numpy(), psnr_paper.double().numpy()
    diff = psnr_paper - psnr
    result = {
        "checkpoint": str(ckpt),
        "global_step": int(torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"]),
        "num_images": int(len(psnr)),
        "train_seconds": round(train_seconds, 1),
        "commit": subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),  # fmt: skip
        "machine": platform.platform(),
        "psnr": {
            "mean_psnr": float(psnr.mean()),
            "mean_psnr_paper": float(np.mean(psnr_paper[np.isfinite(psnr_paper)])),
            "infinite_psnr_paper": int((~np.isfinite(psnr_paper)).sum()),
            "per_image_difference": {
                q: float(np.quantile(diff[np.isfinite(diff)], p))
                for q, p in [("min", 0), ("median", 0.5), ("p90", 0.9), ("max", 1)]
            },
            "thresholds_disagreeing": {str(t): int(((psnr > t) != (psnr_paper > t)).sum()) for t in THRESHOLDS},
        },
        "infoe": {},
    }
    z = latents.double().numpy()
    discrete = bool(module.discrete_latents)
    for backend in ("torch", "sklearn"):
        for protocol in ("paper", "converged"):
            t = time.perf_counter()
            infoe = infomec(np.asarray(sources), z, discrete, backend=backend, infoe_protocol=protocol)["infoe"]
            result["infoe"][f"{backend}/{protocol}"] = {"infoe": infoe, "seconds": round(time.perf_counter() - t, 1)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
