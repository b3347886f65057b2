"""When do NHP's float32 finite differences break, and what do the remedies cost?

At the quickstart model's decoder (widths 64, 32, 16, 8, cond_dim 64, n_z 14, batch 32) NHP is evaluated at
latents ``z = m + c * g`` (``m`` a fixed offset, ``g ~ N(0, I)``, so the batch std ``s`` is about ``c``)
for a range of latent scales ``c``, by three methods on the same draws:

- ``fd32``: central second differences in float32 (``method="finite_difference"``, the default);
- ``fd64``: the same in float64 (``dtype="float64"``, today's stopgap) -- the reference;
- ``jvp32``: exact second directional derivatives by nested forward-mode AD in float32 (``method="jvp"``);
- ``jvp64``: the same in float64, the exact reference.

For each it records the NHP value and the norm of its gradient with respect to the decoder's parameters, and
their relative errors against ``fd64`` and against ``jvp64`` (the gradient error is ``|g - g_ref| / |g_ref|``).
Finite differences and ``jvp`` differ by the truncation at step ``eps * s`` (visible only at large ``s``).
Below ``s ~ 1e-3`` the ``1e-10`` in NHP's denominator dominates and NHP tends to 0. Then it times NHP's
forward + backward for each method at ``c = 0.3`` (median of ``--repeats``; the ratios matter, the machine
is shared). Both for the quickstart's ``activations: [cond]`` and the paper's four
activations::

    python benchmarks/nhp_numerics.py        # writes benchmarks/results/nhp_numerics_cpu.json

``--bf16`` instead measures NHP under CPU bf16 autocast (``bf16-mixed``) against float32 ``jvp``, with the
paper's four activations at ``c`` = 0.3 and 0.03: finite differences (the activations are upcast, but the
passes ran in bf16), ``jvp`` in bf16, and ``jvp`` with ``dtype="float32"`` (autocast off in the passes)::

    python benchmarks/nhp_numerics.py --bf16 # writes benchmarks/results/nhp_numerics_bf16_cpu.json

``--step`` times a whole training step (forward, backward, AdamW) of the quickstart model (batch 32, 64x64,
NHP on ``cond``) with each NHP variant and without NHP (median of ``--repeats``)::

    python benchmarks/nhp_numerics.py --step # writes benchmarks/results/nhp_numerics_step_cpu.json

``--paper`` evaluates NHP once at the paper's model size (default widths, n_z 14, the four activations) at
initialisation, on 32 images of ``data/procedural.h5`` (the latents as the first training step sees them:
FSQ codes, ``s`` from ``z_c``): value, gradient errors and seconds of ``fd32``, ``fd64`` and ``jvp32``::

    python benchmarks/nhp_numerics.py --paper # writes benchmarks/results/nhp_numerics_paper_cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from tripod_pl.io import atomic_write_text
from tripod_pl.legs import functional as LF
from tripod_pl.legs.base import _Activations
from tripod_pl.nets import Decoder

RESULTS = Path(__file__).parent / "results"
SCALES = [1.0, 0.3, 0.1, 0.03, 0.01, 3e-3, 1e-3, 3e-4, 1e-4]
METHODS = {  # name: (dtype of the decoder passes, method)
    "fd32": (None, "finite_difference"),
    "fd64": (torch.float64, "finite_difference"),
    "jvp32": (None, "jvp"),
    "jvp64": (torch.float64, "jvp"),
}


def nhp_and_grad(decoder: Decoder, names: list[str], z: torch.Tensor, method: str, dtype, seed: int):
    """NHP (eps 0.1, k 2) of ``decoder`` at ``z`` (s = batch std of z) and its gradient w.r.t. the parameters."""
    decoder.zero_grad(set_to_none=True)
    s = LF.latent_std(z)
    zz, ss = (z, s) if dtype is None else (z.to(dtype), s.to(dtype))
    generator = torch.Generator().manual_seed(seed)
    value = LF.nhp(_Activations(decoder, names, dtype), zz, ss, eps=0.1, k=2, generator=generator, method=method)
    value.backward()
    grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in decoder.parameters()]
    grad = torch.cat([g.flatten() for g in grads]).double()
    return value.item(), grad


def sweep(decoder: Decoder, names: list[str], n_z: int, batch: int) -> list[dict]:
    rows = []
    g = torch.randn(batch, n_z, generator=torch.Generator().manual_seed(1))
    m = torch.rand(n_z, generator=torch.Generator().manual_seed(2)) * 2 - 1
    for c in SCALES:
        z = m + c * g
        out = {
            name: nhp_and_grad(decoder, names, z, method, dtype, seed=3) for name, (dtype, method) in METHODS.items()
        }
        row = {"scale": c, "s_mean": LF.latent_std(z).mean().item()}
        for name, (value, grad) in out.items():
            row[name] = {"nhp": value, "grad_norm": grad.norm().item()}
            for ref in ("fd64", "jvp64"):
                ref_value, ref_grad = out[ref]
                row[name][f"nhp_rel_err_vs_{ref}"] = abs(value - ref_value) / max(abs(ref_value), 1e-30)
                row[name][f"grad_rel_err_vs_{ref}"] = ((grad - ref_grad).norm() / ref_grad.norm()).item()
        rows.append(row)
        print(
            f"  c={c:7.0e}  "
            + "  ".join(
                f"{k}: nhp {v['nhp']:.4f} |g| {v['grad_norm']:8.2g} "
                f"grad err {v['grad_rel_err_vs_fd64']:.0e}/{v['grad_rel_err_vs_jvp64']:.0e}"
                for k, v in row.items()
                if isinstance(v, dict)
            )
        )
    return rows


def timing(decoder: Decoder, names: list[str], n_z: int, batch: int, repeats: int) -> dict[str, float]:
    z = 0.3 * torch.randn(batch, n_z) + 0.1
    times: dict[str, list[float]] = {name: [] for name in METHODS}
    for _ in range(repeats + 1):  # the first round warms up
        for name, (dtype, method) in METHODS.items():
            start = time.perf_counter()
            nhp_and_grad(decoder, names, z, method, dtype, seed=0)
            times[name].append(time.perf_counter() - start)
    seconds = {name: statistics.median(t[1:]) for name, t in times.items()}
    return {
        "seconds": seconds,
        "ratio_to_fd32": {name: t / seconds["fd32"] for name, t in seconds.items()},
    }


def bf16_autocast(decoder: Decoder, names: list[str], n_z: int, batch: int) -> list[dict]:
    rows = []
    for c in (0.3, 0.03):
        z = 0.1 + c * torch.randn(batch, n_z, generator=torch.Generator().manual_seed(1))
        ref_value, ref_grad = nhp_and_grad(decoder, names, z, "jvp", None, seed=3)
        row: dict = {"scale": c}
        for label, method, dtype in [
            ("fd_bf16", "finite_difference", None),
            ("jvp_bf16", "jvp", None),
            ("jvp_bf16_dtype_float32", "jvp", torch.float32),
        ]:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                value, grad = nhp_and_grad(decoder, names, z, method, dtype, seed=3)
            row[label] = {
                "nhp_rel_err_vs_jvp32": abs(value - ref_value) / abs(ref_value),
                "grad_rel_err_vs_jvp32": ((grad - ref_grad).norm() / ref_grad.norm()).item(),
            }
        print(f"  c={c}: " + "  ".join(f"{k}: {v}" for k, v in row.items() if isinstance(v, dict)))
        rows.append(row)
    return rows


def step_cost(repeats: int) -> dict:
    from tripod_pl.legs import FSQ, KLM, NHP
    from tripod_pl.model import TripodAutoencoder

    variants = {
        "no_nhp": [],
        "fd32": [NHP(activations=["cond"])],
        "fd64": [NHP(activations=["cond"], dtype="float64")],
        "jvp32": [NHP(activations=["cond"], method="jvp")],
    }
    x = torch.rand(32, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    seconds = {}
    for name, nhp in variants.items():
        torch.manual_seed(0)
        model = TripodAutoencoder(
            FSQ(n_q=12),
            [KLM(weight=1e-4), *nhp],
            n_z=14,
            encoder_widths=(8, 16, 32, 64),
            decoder_widths=(64, 32, 16, 8),
            cond_dim=64,
        )
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        times = []
        for _ in range(repeats + 1):
            start = time.perf_counter()
            model(x).loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            times.append(time.perf_counter() - start)
        seconds[name] = statistics.median(times[1:])
        print(f"  {name}: {seconds[name]:.3f} s per step")
    return {"seconds_per_step": seconds, "ratio_to_fd32": {k: v / seconds["fd32"] for k, v in seconds.items()}}


def paper_init(path: str) -> dict:
    import h5py

    from tripod_pl.data import to_float_images
    from tripod_pl.legs import FSQ
    from tripod_pl.model import TripodAutoencoder

    with h5py.File(path) as f:
        x = to_float_images(torch.from_numpy(f["images"][: 32 * 97 : 97]))
    torch.manual_seed(0)
    model = TripodAutoencoder(FSQ(n_q=12), [], n_z=14)
    with torch.no_grad():
        latents = model.bottleneck(model.encoder(x))
    z, s = latents.z, LF.latent_std(latents.z_c)
    names = ["cond", "block0", "block1", "block2"]
    runs = {}
    for name, (dtype, method) in METHODS.items():
        if name == "jvp64":
            continue
        start = time.perf_counter()
        zz, ss = (z, s) if dtype is None else (z.to(dtype), s.to(dtype))
        model.decoder.zero_grad(set_to_none=True)
        gen = torch.Generator().manual_seed(3)
        value = LF.nhp(_Activations(model.decoder, names, dtype), zz, ss, generator=gen, method=method)
        value.backward()
        grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in model.decoder.parameters()]
        runs[name] = (value.item(), torch.cat([g.flatten() for g in grads]).double(), time.perf_counter() - start)
    result: dict = {"s": {"min": s.min().item(), "median": s.median().item(), "max": s.max().item()}}
    for name, (value, grad, seconds) in runs.items():
        result[name] = {"nhp": value, "grad_norm": grad.norm().item(), "seconds": seconds}
        for ref in ("fd64", "jvp32"):
            ref_grad = runs[ref][1]
            result[name][f"grad_rel_err_vs_{ref}"] = ((grad - ref_grad).norm() / ref_grad.norm()).item()
        print(f"  {name}: {result[name]}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--bf16", action="store_true", help="the bf16 autocast comparison only")
    parser.add_argument("--step", action="store_true", help="the quickstart training step's time only")
    parser.add_argument("--paper", action="store_true", help="NHP at the paper's size at initialisation only")
    parser.add_argument("--data", default="data/procedural.h5", help="images for --paper")
    parser.add_argument("--out", default=None, help="JSON file (default under benchmarks/results/)")
    args = parser.parse_args()
    suffix = "_bf16" if args.bf16 else "_step" if args.step else "_paper" if args.paper else ""
    out = args.out or str(RESULTS / f"nhp_numerics{suffix}_cpu.json")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    n_z, batch = 14, 32
    decoder = Decoder(n_z, widths=(64, 32, 16, 8), cond_dim=64, image_size=64)
    result: dict = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": args.threads,
        "model": {"decoder_widths": [64, 32, 16, 8], "cond_dim": 64, "n_z": n_z, "batch": batch, "eps": 0.1, "k": 2},
        "activations": {},
    }
    if args.paper:
        print("paper size, at initialisation, four activations")
        result["model"] = {"size": "paper (default widths)", "n_z": 14, "batch": 32, "eps": 0.1, "k": 2}
        result["paper_init"] = paper_init(args.data)
        del result["activations"]
        atomic_write_text(out, json.dumps(result, indent=1) + "\n")
        return
    if args.step:
        print("training step of the quickstart model, NHP on cond")
        result["training_step"] = step_cost(args.repeats)
        del result["activations"]
        atomic_write_text(out, json.dumps(result, indent=1) + "\n")
        return
    if args.bf16:
        names = ["cond", "block0", "block1", "block2"]
        print("bf16 autocast, four activations: relative errors against float32 jvp")
        result["bf16_autocast"] = bf16_autocast(decoder, names, n_z, batch)
        del result["activations"]
        atomic_write_text(out, json.dumps(result, indent=1) + "\n")
        return
    for names in (["cond"], ["cond", "block0", "block1", "block2"]):
        key = ",".join(names)
        print(f"activations {key}: NHP value, |grad|, rel. error of the gradient vs fd64 / vs jvp64")
        rows = sweep(decoder, names, n_z, batch)
        cost = timing(decoder, names, n_z, batch, args.repeats)
        print(f"  seconds (fwd+bwd of NHP): {cost['seconds']}  ratio to fd32: {cost['ratio_to_fd32']}")
        result["activations"][key] = {"sweep": rows, "cost": cost}
    atomic_write_text(out, json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v["cost"]["ratio_to_fd32"] for k, v in result["activations"].items()}))


if __name__ == "__main__":
    main()
