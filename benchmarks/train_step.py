"""Seconds per training step of each method (forward, backward, AdamW step), measured in one run.

The paper reports (GPU, batch 64, full size): beta-TCVAE 0.040 s, QLAE 0.040 s, Tripod 0.106 s — the NHP
passes are Tripod's whole overhead. Compare ratios within one run; the machines are shared and noisy.

    python benchmarks/train_step.py                       # CPU, small widths (CI-sized)
    python benchmarks/train_step.py --device cuda --full  # the paper's size on a GPU
    python benchmarks/train_step.py --device cuda --full --precision bf16
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from tripod_pl import TripodModule
from tripod_pl.legs import FSQ, KLM, NHP, BetaTC, GaussianBottleneck, IdentityBottleneck, ScalarCodebook

SMALL = {"encoder_widths": [8, 16, 32, 64], "decoder_widths": [64, 32, 16, 8], "cond_dim": 64}
METHODS = {
    "ae": lambda: (IdentityBottleneck(), []),
    "qlae": lambda: (ScalarCodebook(), []),
    "betatcvae": lambda: (GaussianBottleneck(), [BetaTC(beta=3.0)]),
    "qlae+klm": lambda: (ScalarCodebook(), [KLM(1e-4)]),
    "tripod": lambda: (FSQ(12), [KLM(1e-4), NHP(1e-2)]),
}


def time_method(name: str, args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    bottleneck, regs = METHODS[name]()
    widths = {} if args.full else SMALL
    model = TripodModule(bottleneck, regs, n_z=12, dataset_size=480_000, **widths).to(args.device)
    opt = model.configure_optimizers()
    x = torch.rand(args.batch_size, 3, 64, 64, device=args.device) * 2 - 1
    dtype = {"fp32": None, "bf16": torch.bfloat16}[args.precision]

    def step() -> None:
        with torch.autocast(args.device.split(":")[0], dtype=dtype, enabled=dtype is not None):
            loss, _, _ = model.compute_terms(x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    for _ in range(args.warmup):
        step()
    sync()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    return {"method": name, "median_s": statistics.median(times), "min_s": min(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--full", action="store_true", help="the paper's widths (default: small widths)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/train_step_<device>.json)")
    args = parser.parse_args()
    rows = [time_method(name, args) for name in METHODS]
    base = {r["method"]: r["median_s"] for r in rows}["qlae"]
    print(f"{'method':<10} {'s/step':>9} {'vs QLAE':>8}")
    for r in rows:
        r["relative_to_qlae"] = r["median_s"] / base
        print(f"{r['method']:<10} {r['median_s']:9.4f} {r['relative_to_qlae']:8.2f}")
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    result = {
        "benchmark": "train_step",
        "device": args.device,
        "device_name": device_name,
        "cpu_count": os.cpu_count(),
        "size": "full" if args.full else "small",
        "batch_size": args.batch_size,
        "precision": args.precision,
        "torch": torch.__version__,
        "results": rows,
    }
    kind = args.device.split(":")[0]
    out = Path(args.out or Path(__file__).parent / "results" / f"train_step_{kind}_{result['size']}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
