"""Speed of the metrics' torch backend against the scikit-learn reference, in the same run.

10,000 samples x 12 latents, 6 sources of Shapes3D's sizes (10, 10, 10, 8, 4, 15); latents that mix the
sources with noise (half of them informative), discrete (FSQ-quantized to 12 levels) and continuous.
Times `infomec` and `dci` with `backend="torch"` on the chosen device and with `backend="sklearn"` (which
uses every CPU core: n_jobs=-1), and the scores of both, so that speed and agreement are read together.

    python benchmarks/metrics_speed.py                 # CPU -> benchmarks/results/metrics_speed_cpu.json
    python benchmarks/metrics_speed.py --device cuda   # GPU -> benchmarks/results/metrics_speed_cuda.json

The torch timing is the best of `--repeats` runs after one warm-up run (on CUDA, synchronized); sklearn's is
one run (it takes minutes). Wall time is the figure that counts; the CPU time of the process (all threads)
is recorded beside it because on a shared machine it is far less disturbed by other jobs, as is the load
average. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import sklearn
import torch

from tripod_pl.metrics import dci, infomec

SIZES = (10, 10, 10, 8, 4, 15)
RESULTS = Path(__file__).resolve().parent / "results"


def make_data(n: int, n_latents: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sources (n x 6 ints), continuous latents and their FSQ-quantized version (n x n_latents)."""
    rng = np.random.default_rng(seed)
    sources = np.stack([rng.integers(0, k, n) for k in SIZES], axis=1)
    std = (sources - sources.mean(0)) / sources.std(0)
    k = len(SIZES)
    mix = np.eye(n_latents, k) + 0.2 * rng.standard_normal((n_latents, k))  # mostly one source per latent
    mix[k:] *= 0.1  # the latents beyond the sources carry little
    continuous = std @ mix.T + 0.3 * rng.standard_normal((n, n_latents))
    discrete = np.round((np.tanh(continuous / 2) + 1) * 5.5) / 5.5 - 1  # FSQ, 12 levels
    return sources, continuous, discrete


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_torch(fn, device: torch.device, repeats: int) -> tuple[float, float, dict]:
    """Best wall time and the CPU time of that run (all threads), after one warm-up run."""
    out = fn()  # warm-up (allocator, kernels)
    best, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        _sync(device)
        start, start_cpu = time.perf_counter(), time.process_time()
        out = fn()
        _sync(device)
        wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
        if wall < best:
            best, best_cpu = wall, cpu
    return best, best_cpu, out


def time_once(fn) -> tuple[float, float, dict]:
    start, start_cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - start, time.process_time() - start_cpu, out


def scores(out: dict) -> dict[str, float]:
    return {k: round(float(v), 4) for k, v in out.items() if k in ("infom", "infoc", "infoe", "d", "c", "i")}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="torch device for the torch backend (cpu, cuda)")
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--latents", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=2, help="timed torch runs after the warm-up")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default by device)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)

    sources, continuous, discrete = make_data(args.samples, args.latents)
    load_before = list(os.getloadavg())
    rows = []
    for kind, latents in (("discrete", discrete), ("continuous", continuous)):
        is_discrete = kind == "discrete"
        s_dev = torch.as_tensor(sources, device=device)
        z_dev = torch.as_tensor(latents, dtype=torch.float32, device=device)
        cases = {
            "infomec": (
                lambda s=s_dev, z=z_dev, d=is_discrete: infomec(s, z, d),
                lambda z=latents, d=is_discrete: infomec(sources, z, d, backend="sklearn"),
            ),
            "dci": (
                lambda s=s_dev, z=z_dev: dci(s, z),
                lambda z=latents: dci(sources, z, backend="sklearn"),
            ),
        }
        for metric, (torch_fn, sklearn_fn) in cases.items():
            t_torch, cpu_torch, out_torch = time_torch(torch_fn, device, args.repeats)
            t_sklearn, cpu_sklearn, out_sklearn = time_once(sklearn_fn)
            row = {
                "metric": metric,
                "latents": kind,
                "torch_s": round(t_torch, 3),
                "sklearn_s": round(t_sklearn, 3),
                "speedup": round(t_sklearn / t_torch, 2),
                "torch_cpu_s": round(cpu_torch, 3),
                "sklearn_cpu_s": round(cpu_sklearn, 3),
                "torch_scores": scores(out_torch),
                "sklearn_scores": scores(out_sklearn),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)

    result = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "samples": args.samples,
        "latents": args.latents,
        "sources": list(SIZES),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_before": load_before,
        "load_average_after": list(os.getloadavg()),
        "torch": torch.__version__,
        "sklearn": sklearn.__version__,
        "rows": rows,
    }
    out = args.out or RESULTS / f"metrics_speed_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown_table(result))
    print(f"written to {out}")
    return result


def markdown_table(result: dict) -> str:
    lines = [
        f"{result['samples']} samples x {result['latents']} latents, {len(result['sources'])} sources; "
        f"torch on {result['device']} ({result['device_name']}), sklearn on {result['cpu_count']} CPU cores",
        "",
        "| metric | latents | torch (s) | sklearn (s) | speed-up | CPU time torch / sklearn (s) "
        "| torch scores | sklearn scores |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    for r in result["rows"]:
        fmt = lambda d: " ".join(f"{k}={v:.3f}" for k, v in d.items())  # noqa: E731
        lines.append(
            f"| {r['metric']} | {r['latents']} | {r['torch_s']:.2f} | {r['sklearn_s']:.2f} | "
            f"{r['speedup']:.1f}x | {r['torch_cpu_s']:.1f} / {r['sklearn_cpu_s']:.1f} | "
            f"{fmt(r['torch_scores'])} | {fmt(r['sklearn_scores'])} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
