"""When do NHP's float32 finite differences break, and what do the remedies cost?

At the quickstart model's decoder (widths 64, 32, 16, 8, cond_dim 64, n_z 14, batch 32) NHP is evaluated at
latents ``z = m + c * g`` (``m`` a fixed offset, ``g ~ N(0, I)``, so the batch std ``s`` is about ``c``)
for a range of latent scales ``c``, by three methods on the same draws:

- ``fd32``: central second differences in float32 (``method="finite_difference"``, the default);
- ``fd64``: the same in float64 (``dtype="float64"``, today's stopgap) -- the reference;
- ``jvp32``: exact second directional derivatives by nested forward-mode AD in float32 (``method="jvp"``);
- ``jvp64``: the same in float64, the exact reference.

With ``cond`` alone, ``jvp`` takes the decoder's Taylor propagation through its conditioning MLP (the same exact
derivatives); the timing adds ``jvp32_nested``, the nested ``torch.func.jvp`` it replaces.

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

``--train-log`` trains Tripod as ``configs/shapes3d/tripod.yaml`` does (FSQ n_q 12, KLM 1e-4, NHP 1e-2 on
``cond``, ``block0``, ``block1``, ``block2`` by float32 differences; AdamW lr 2e-4, gradient values clipped at 1;
batch 64; n_z twice the file's sources) on images of ``--data`` (default ``data/procedural.h5``, generated when
missing; batches drawn from a pool of up to 64 batches' worth of its images) for ``--steps`` steps at ``--size``
(the widths of ``benchmarks/train_step.py``: ``paper``, ``small``, ``tiny``) on ``--device``. Every step it
records the batch stds ``s`` of the continuous latents (min / median / max; NHP rescales its perturbations by
them), the NHP value and the norm of the weighted NHP term's gradient w.r.t. the decoder's parameters (the step's
backward runs in two passes, NHP's term then the rest, so the extra cost is a second backward through the encoder
only), beside the whole loss's decoder gradient norm and the share of its elements the clipping cuts. Every
``--check-every`` steps it also evaluates NHP and its gradient at that step's latents by ``fd32``, ``fd64`` and
``jvp32`` on the same draws, and records the relative gradient errors of ``fd32`` against ``fd64`` (rounding) and
against ``jvp32`` (rounding and truncation), and of ``jvp32`` against ``fd64`` (truncation). One line per step::

    python benchmarks/nhp_numerics.py --train-log --size small --steps 100   # nhp_train_log_cpu_small.json
    python benchmarks/nhp_numerics.py --train-log --device cuda              # paper size, 300 steps
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import torch

from tripod_pl.io import atomic_write_text
from tripod_pl.legs import functional as LF
from tripod_pl.legs.base import _Activations
from tripod_pl.nets import Decoder

RESULTS = Path(__file__).parent / "results"
DEFAULT_DATA = "data/procedural.h5"
SCALES = [1.0, 0.3, 0.1, 0.03, 0.01, 3e-3, 1e-3, 3e-4, 1e-4]
METHODS = {  # name: (dtype of the decoder passes, method)
    "fd32": (None, "finite_difference"),
    "fd64": (torch.float64, "finite_difference"),
    "jvp32": (None, "jvp"),
    "jvp64": (torch.float64, "jvp"),
}


def nhp_and_grad(
    decoder: Decoder,
    names: list[str],
    z: torch.Tensor,
    method: str,
    dtype,
    seed: int,
    s: torch.Tensor | None = None,
    taylor: bool = True,
):
    """NHP (eps 0.1, k 2) of ``decoder`` at ``z`` (``s`` the batch std of z unless given) and its gradient w.r.t.
    the parameters. The draws come from a generator on z's device seeded with ``seed``: the same in any dtype.
    ``taylor=False`` hides the decoder's Taylor propagation (NHP on ``cond``), so ``jvp`` nests ``torch.func``."""
    decoder.zero_grad(set_to_none=True)
    s = LF.latent_std(z) if s is None else s
    zz, ss = (z, s) if dtype is None else (z.to(dtype), s.to(dtype))
    generator = torch.Generator(device=z.device).manual_seed(seed)
    f = _Activations(decoder, names, dtype)
    value = LF.nhp(f if taylor else (lambda y: f(y)), zz, ss, eps=0.1, k=2, generator=generator, method=method)
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
    # jvp32_nested: jvp32 by nested torch.func.jvp even where the decoder has Taylor propagation (cond alone)
    variants = {**{name: (*spec, True) for name, spec in METHODS.items()}, "jvp32_nested": (None, "jvp", False)}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats + 1):  # the first round warms up
        for name, (dtype, method, taylor) in variants.items():
            start = time.perf_counter()
            nhp_and_grad(decoder, names, z, method, dtype, seed=0, taylor=taylor)
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
    from tripod_pl.data import to_float_images
    from tripod_pl.data.layout import open_hdf5
    from tripod_pl.legs import FSQ
    from tripod_pl.model import TripodAutoencoder

    with open_hdf5(path) as f:
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


def _train_step_module():
    """benchmarks/train_step.py, whose network sizes, learning rate and clipping the training log reuses."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_step_benchmark", Path(__file__).with_name("train_step.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _image_pool(path: str, size: int, seed: int) -> tuple[torch.Tensor, int]:
    """Up to ``size`` images of the HDF5 file ``path`` (uint8, N x 64 x 64 x 3), drawn without replacement, and the
    number of sources in the file (n_z is twice that, as the configs default it). The layout is checked by the
    data package's ``read_info``."""
    import numpy as np

    from tripod_pl.data.layout import DatasetError, open_hdf5, read_info

    if not Path(path).is_file():
        raise ValueError(f"--data {path}: no such file")
    try:
        info = read_info(path, check_sources=False)
        rows = np.sort(np.random.default_rng(seed).choice(info.num_images, min(info.num_images, size), replace=False))
        with open_hdf5(path) as f:  # as the data module reads: without HDF5 file locks
            pool = torch.from_numpy(f["images"][rows])
    except (OSError, KeyError, DatasetError) as err:
        raise ValueError(f"--data {path}: not a dataset file with 'images' and sources ({err})") from None
    return pool, info.num_sources


def _stats(t: torch.Tensor) -> dict[str, float]:
    return {"min": t.min().item(), "median": t.median().item(), "max": t.max().item()}


def _rel(g: torch.Tensor, ref: torch.Tensor) -> float:
    return ((g - ref).norm() / ref.norm().clamp_min(1e-300)).item()


def fd_check(decoder: Decoder, names: list[str], z: torch.Tensor, s: torch.Tensor, seed: int) -> dict:
    """NHP and its gradient at the training step's latents by fd32, fd64 and jvp32 on the same draws, and the
    relative gradient errors of fd32 against fd64 (rounding) and against jvp32 (rounding + truncation)."""
    runs = {}
    for name in ("fd32", "fd64", "jvp32"):
        dtype, method = METHODS[name]
        start = time.perf_counter()
        runs[name] = (*nhp_and_grad(decoder, names, z, method, dtype, seed, s=s), time.perf_counter() - start)
    decoder.zero_grad(set_to_none=True)
    out: dict = {name: {"nhp": v, "grad_norm": g.norm().item(), "seconds": sec} for name, (v, g, sec) in runs.items()}
    grads = {name: g for name, (_, g, _) in runs.items()}
    out["grad_rel_err"] = {
        "fd32_vs_fd64": _rel(grads["fd32"], grads["fd64"]),
        "fd32_vs_jvp32": _rel(grads["fd32"], grads["jvp32"]),
        "jvp32_vs_fd64": _rel(grads["jvp32"], grads["fd64"]),
    }
    out["nhp_rel_err_fd32_vs_fd64"] = abs(runs["fd32"][0] - runs["fd64"][0]) / max(abs(runs["fd64"][0]), 1e-30)
    return out


def _norm(grads: list[torch.Tensor]) -> torch.Tensor:
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


def backward_with_part(loss: torch.Tensor, part: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    """``loss.backward()`` in two passes, ``part`` then ``loss - part`` (the gradients accumulate to the same
    sum), returning the norm of ``part``'s own gradient w.r.t. ``params`` (a 0-dim tensor, no host sync). The
    extra cost is a second backward through what both share (here the encoder), not a second NHP backward."""
    part.backward(retain_graph=True)
    norm = _norm([torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in params])
    (loss - part).backward()
    return norm


def train_log(args: argparse.Namespace) -> dict:
    """Trains Tripod as configs/shapes3d/tripod.yaml does (FSQ n_q 12, KLM 1e-4, NHP 1e-2 on four activations;
    AdamW lr 2e-4, gradient values clipped at 1), NHP by ``--method`` (float32 differences, the reference's, or
    exact ``jvp``), and logs NHP's numerics every step."""
    from tripod_pl.data import to_float_images
    from tripod_pl.legs import FSQ, KLM, NHP
    from tripod_pl.model import TripodAutoencoder

    ts = _train_step_module()
    device = torch.device(args.device)
    pool, num_sources = _image_pool(args.data, 64 * args.batch_size, args.seed)
    print(
        f"Tripod, size {args.size}, batch {args.batch_size}, {args.steps} steps on {args.device}, NHP by "
        f"{args.method}: NHP's numerics"
    )
    torch.manual_seed(args.seed)
    names = ["cond", "block0", "block1", "block2"]
    nhp = NHP(weight=1e-2, activations=names, method=args.method)
    model = TripodAutoencoder(FSQ(n_q=12), [KLM(weight=1e-4), nhp], n_z=2 * num_sources, **ts.SIZES[args.size])
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=ts.LR)
    captured: dict = {}
    model.bottleneck.register_forward_hook(lambda module, inputs, output: captured.update(latents=output))
    decoder_params = list(model.decoder.parameters())
    picks = torch.Generator().manual_seed(args.seed + 1)

    rows = []
    start = time.perf_counter()

    def _logged_step(step: int) -> dict:
        idx = torch.randint(0, pool.shape[0], (args.batch_size,), generator=picks)
        x = to_float_images(pool[idx]).to(device)
        out = model(x)
        latents = captured["latents"]
        s = LF.latent_std(latents.z_c.detach())
        row: dict = {"step": step, "s": _stats(s)}
        if args.check_every and step % args.check_every == 0:
            row["check"] = fd_check(model.decoder, names, latents.z.detach(), s, seed=step)
        optimizer.zero_grad(set_to_none=True)
        nhp_norm = backward_with_part(out.loss, nhp.weight * out.terms["nhp"], decoder_params)
        grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in decoder_params]
        total_norm = _norm(grads)
        clipped = sum((g.abs() > ts.CLIP).sum() for g in grads) / sum(g.numel() for g in grads)
        torch.nn.utils.clip_grad_value_(model.parameters(), ts.CLIP)
        optimizer.step()
        values = torch.stack([out.loss.detach(), out.terms["reconstruction"].detach(), out.terms["nhp"].detach(),
                              nhp_norm, total_norm, clipped.float()]).tolist()  # fmt: skip
        keys = ("loss", "reconstruction", "nhp", "nhp_grad_norm", "decoder_grad_norm", "decoder_clipped_fraction")
        row.update(zip(keys, values, strict=True))
        row["seconds"] = time.perf_counter() - start
        line = (
            f"step {step:4d}  s min/med/max {row['s']['min']:.2e}/{row['s']['median']:.2e}/{row['s']['max']:.2e}"
            f"  nhp {row['nhp']:.4f}  |g_nhp| {row['nhp_grad_norm']:.2e}  |g_dec| {row['decoder_grad_norm']:.2e}"
            f"  clipped {row['decoder_clipped_fraction']:.1e}  rec {row['reconstruction']:.4f}"
        )
        if "check" in row:
            err = row["check"]["grad_rel_err"]
            line += (
                f"  | grad err fd32/fd64 {err['fd32_vs_fd64']:.1e} fd32/jvp32 {err['fd32_vs_jvp32']:.1e}"
                f" jvp32/fd64 {err['jvp32_vs_fd64']:.1e}"
            )
        print(line, flush=True)
        return row

    interrupted = None
    try:
        for step in range(args.steps):
            rows.append(_logged_step(step))
    except KeyboardInterrupt:  # a time limit (SIGINT or SIGTERM): keep the steps logged so far
        interrupted = len(rows)  # the step that was cut short
        print(f"interrupted at step {interrupted}: saving the {len(rows)} steps logged", flush=True)

    return {
        "model": {
            "size": args.size,
            "widths": {k: list(v) if isinstance(v, tuple) else v for k, v in ts.SIZES[args.size].items()},
            "n_z": model.n_z,
            "legs": model.leg_specs(),
            "batch": args.batch_size,
            "lr": ts.LR,
            "clip_value": ts.CLIP,
            "data": args.data,
            "image_pool": pool.shape[0],
        },
        "notes": (
            "s: batch stds of the continuous latents z_c (what NHP rescales by); nhp_grad_norm: norm of the "
            "gradient of the weighted NHP term (1e-2 * nhp) w.r.t. the decoder's parameters, before clipping; "
            "decoder_grad_norm: the same for the whole loss; decoder_clipped_fraction: share of the decoder's "
            "gradient elements above the clip value; check (every check_every steps): NHP and its unweighted "
            "gradient at the step's latents by fd32, fd64 and jvp32 on the same draws, and relative gradient errors"
        ),
        "check_every": args.check_every,
        "interrupted_at_step": interrupted,
        "steps": rows,
    }


def _train_log_main(args: argparse.Namespace) -> None:
    for option in ("steps", "batch_size"):
        if getattr(args, option) < 1:
            raise ValueError(f"--{option.replace('_', '-')} must be >= 1, got {getattr(args, option)}")
    if args.check_every < 0:
        raise ValueError(f"--check-every must be >= 0 (0: no checks), got {args.check_every}")
    if args.batch_size < 2:
        raise ValueError(f"--batch-size must be >= 2 (batch stds), got {args.batch_size}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: CUDA is not available here")
    if args.data == DEFAULT_DATA and not Path(args.data).exists():
        from tripod_pl.data.datamodule import generate_missing_procedural

        generate_missing_procedural(args.data)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    # a time limit ends the log with the steps so far: SIGINT (ignored by background jobs of a non-interactive
    # shell, so set here) or SIGTERM (what `kill` and `timeout` send by default) raise KeyboardInterrupt; while
    # the log is saved they are ignored; the caller's handlers come back at the end
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.getsignal(sig) for sig in signals}
    try:
        for sig in signals:
            signal.signal(sig, signal.default_int_handler)
        log = train_log(args)
        for sig in signals:
            signal.signal(sig, signal.SIG_IGN)
        _save_train_log(args, device, log)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _save_train_log(args: argparse.Namespace, device: torch.device, log: dict) -> None:
    result = {
        "benchmark": "nhp_numerics --train-log",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": args.device,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
        "machine": platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        # on CUDA, float32 convolutions run in TF32 by default (10-bit mantissa): what a float32 run gets there
        "tf32": {"cudnn_conv": torch.backends.cudnn.allow_tf32, "matmul": torch.backends.cuda.matmul.allow_tf32},
        **log,
    }
    suffix = "" if args.method == "finite_difference" else f"_{args.method}"
    out = args.out or str(RESULTS / f"nhp_train_log_{device.type}_{args.size}{suffix}.json")
    atomic_write_text(out, json.dumps(result, indent=1) + "\n")
    print(f"saved {out}")


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    return platform.processor() or "cpu"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--bf16", action="store_true", help="the bf16 autocast comparison only")
    parser.add_argument("--step", action="store_true", help="the quickstart training step's time only")
    parser.add_argument("--paper", action="store_true", help="NHP at the paper's size at initialisation only")
    parser.add_argument("--train-log", action="store_true", help="train Tripod and log NHP's numerics every step")
    parser.add_argument("--data", default=DEFAULT_DATA, help="images for --paper and --train-log")
    parser.add_argument("--size", choices=["tiny", "small", "paper"], default="paper", help="--train-log widths")
    parser.add_argument("--steps", type=int, default=300, help="--train-log optimizer steps")
    parser.add_argument("--check-every", type=int, default=25, help="--train-log: fd32/fd64/jvp32 check interval")
    parser.add_argument("--batch-size", type=int, default=64, help="--train-log batch")
    parser.add_argument("--device", default="cpu", help="--train-log torch device (cpu, cuda)")
    parser.add_argument("--seed", type=int, default=0, help="--train-log seed")
    parser.add_argument(
        "--method",
        choices=["finite_difference", "jvp"],
        default="finite_difference",
        help="--train-log: how NHP takes its second derivatives in training (default: float32 differences)",
    )
    parser.add_argument("--out", default=None, help="JSON file (default under benchmarks/results/)")
    args = parser.parse_args(argv)
    if args.train_log:
        try:
            _train_log_main(args)
        except ValueError as err:
            raise SystemExit(f"nhp_numerics: {err}") from None
        return
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
