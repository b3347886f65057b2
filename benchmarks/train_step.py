"""Seconds per optimizer step of each method (forward, backward, gradient clipping, AdamW), all in one run.

Methods: AE, QLAE, beta-TCVAE, Tripod w/o NHP (FSQ + KLM) and Tripod (FSQ + KLM + NHP), with the legs and
optimizer settings of ``configs/shapes3d/*.yaml`` (12 latents, batch 64, AdamW lr 2e-4, QLAE's weight decay
0.1, gradient values clipped at 1). The data are already on the device. Per method:

- seconds per step: median of ``--steps`` steps after ``--warmup`` steps (CUDA: CUDA events between
  back-to-back steps, no synchronisation inside the loop; CPU: wall clock per step);
- FLOPs per step, counted by ``torch.utils.flop_counter.FlopCounterMode`` over one eager step (matrix
  products and convolutions, forward and backward; element-wise work such as GroupNorm, GELU and AdamW is
  not counted), and the achieved TFLOP/s (FLOPs / median seconds);
- peak memory: on CUDA ``torch.cuda.max_memory_allocated`` over the timed steps; on every device an estimate
  (parameters, gradients and AdamW state + the tensors autograd saves for backward, each storage once), a
  lower bound of the peak that does not depend on the allocator or on other processes; on CPU also the
  process's resident high-water mark (``resource`` ``ru_maxrss``, cumulative over the run).

A ``torch.profiler`` table of Tripod's step (top operators by self time; the decoder's forward passes are
labelled by batch size, so the NHP passes stand apart from the main one) is saved next to the JSON.

The paper reports 0.040 s (QLAE, beta-TCVAE) and 0.106 s (Tripod) per step on a GPU. Compare ratios within
one run: the development machine is shared and noisy.

    python benchmarks/train_step.py                                     # CPU, small widths
    python benchmarks/train_step.py --size paper --steps 3 --warmup 1   # CPU at the paper's size (slow)
    python benchmarks/train_step.py --device cuda --size paper --precision bf16-mixed [--channels-last] [--compile]
    bash benchmarks/gpu_check.sh                                        # every GPU check of the speed work

The last line printed is one JSON object: seconds per step per method, ``device``, ``precision`` and
``tflops`` (per method). The full record goes to ``benchmarks/results/train_step_<device>_<size>[...].json``.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import platform
import resource
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, record_function
from torch.utils.flop_counter import FlopCounterMode

from tripod_pl.legs import FSQ, KLM, NHP, BetaTC, GaussianBottleneck, IdentityBottleneck, ScalarCodebook
from tripod_pl.model import TripodAutoencoder

RESULTS = Path(__file__).resolve().parent / "results"

#: network widths; "paper" is the paper's (and every config's) size, "tiny" only for smoke tests
SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"encoder_widths": (4, 4, 8, 8), "decoder_widths": (8, 8, 4, 4), "cond_dim": 16},
    "small": {"encoder_widths": (8, 16, 32, 64), "decoder_widths": (64, 32, 16, 8), "cond_dim": 64},
    "paper": {"encoder_widths": (32, 64, 128, 256), "decoder_widths": (512, 256, 128, 64), "cond_dim": 256},
}

#: method -> (legs factory, AdamW weight decay), as configs/shapes3d/<method>.yaml (whose NHP is ``tripod_jvp``)
METHODS: dict[str, tuple[Callable[[], tuple[Any, list]], float]] = {
    "ae": (lambda: (IdentityBottleneck(), []), 0.0),
    "qlae": (lambda: (ScalarCodebook(n_v=10), []), 0.1),
    "betatcvae": (lambda: (GaussianBottleneck(), [BetaTC(beta=3.0)]), 0.0),
    "tripod_no_nhp": (lambda: (FSQ(n_q=12), [KLM(weight=1e-4)]), 0.0),
    "tripod": (lambda: (FSQ(n_q=12), [KLM(weight=1e-4), NHP(weight=1e-2)]), 0.0),
    # the configs' NHP: exact second derivatives by nested forward-mode AD instead of float32 differences
    "tripod_jvp": (lambda: (FSQ(n_q=12), [KLM(weight=1e-4), NHP(weight=1e-2, method="jvp")]), 0.0),
}
PRECISIONS = {"32": None, "bf16-mixed": torch.bfloat16}
N_Z, DATASET_SIZE, LR, CLIP = 12, 480_000, 2e-4, 1.0
MIB = 2**20


class Bench:
    """One method's model, optimizer, batch and training step."""

    def __init__(self, name: str, args: argparse.Namespace, compile_model: bool = False) -> None:
        torch.manual_seed(0)
        legs, weight_decay = METHODS[name]
        bottleneck, regularizers = legs()
        kwargs = dict(SIZES[args.size])
        if compile_model and _model_has_option("compile"):
            kwargs["compile"] = True
        if args.channels_last:
            kwargs["channels_last"] = True
        self.device = torch.device(args.device)
        self.model = TripodAutoencoder(bottleneck, regularizers, n_z=N_Z, dataset_size=DATASET_SIZE, **kwargs)
        self.model.to(self.device)
        self.optimizer = torch.optim.AdamW(self.model.parameter_groups(weight_decay), lr=LR)
        self.x = torch.rand(args.batch_size, 3, 64, 64, device=self.device) * 2 - 1
        if args.channels_last:
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.dtype = PRECISIONS[args.precision]
        self.cpu_times: list[float] = []  # CPU seconds of the process per timed step (CPU device)

    def step(self) -> None:
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            loss = self.model(self.x).loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_value_(self.model.parameters(), CLIP)
        self.optimizer.step()

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def _model_has_option(name: str) -> bool:
    """Whether :class:`TripodAutoencoder` takes the argument ``name`` (``compile``, ``channels_last``)."""
    return name in inspect.signature(TripodAutoencoder.__init__).parameters


def compile_networks(model: TripodAutoencoder) -> None:
    """``torch.compile`` the encoder and the decoder's ``activations``, which both the main decoder pass and
    NHP's perturbed passes go through."""
    model.encoder.compile()
    model.decoder.activations = torch.compile(model.decoder.activations)


def counted_step(bench: Bench) -> tuple[int, int]:
    """One eager step under the FLOP counter: ``(FLOPs, bytes saved for backward)``."""
    params = {p.untyped_storage().data_ptr() for p in bench.model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        try:
            storage = t.untyped_storage()
            ptr = storage.data_ptr()
        except RuntimeError:  # a forward-mode (jvp) wrapper has no storage of its own: not counted
            return t
        if ptr not in params:
            saved[ptr] = max(saved.get(ptr, 0), storage.nbytes())
        return t

    counter = FlopCounterMode(display=False)
    with counter, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        bench.step()
    bench.sync()
    return counter.get_total_flops(), sum(saved.values())


def state_bytes(bench: Bench) -> int:
    """Parameters, gradients and optimizer state (after a step)."""
    tensors = [p for p in bench.model.parameters()] + [p.grad for p in bench.model.parameters() if p.grad is not None]
    tensors += [v for s in bench.optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
    return sum(t.numel() * t.element_size() for t in tensors)


def time_steps(bench: Bench, steps: int) -> list[float]:
    """Seconds of each of ``steps`` back-to-back steps."""
    if bench.device.type == "cuda":
        events = [torch.cuda.Event(enable_timing=True) for _ in range(steps + 1)]
        events[0].record()
        for i in range(steps):
            bench.step()
            events[i + 1].record()
        bench.sync()
        return [events[i].elapsed_time(events[i + 1]) / 1e3 for i in range(steps)]
    times, cpu_times = [], []
    for _ in range(steps):
        start, start_cpu = time.perf_counter(), time.process_time()
        bench.step()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - start_cpu)
    bench.cpu_times = cpu_times
    return times


def measure(name: str, args: argparse.Namespace) -> dict[str, Any]:
    bench = Bench(name, args)
    flops, saved = counted_step(bench)  # also the first warm-up step; creates the AdamW state
    estimate = state_bytes(bench) + saved
    row: dict[str, Any] = {"method": name, "flops": flops, "saved_for_backward_mib": saved / MIB}
    if args.compile:
        row["compiled"], row["compile_error"] = True, None
        try:
            bench = Bench(name, args, compile_model=True)
            if not _model_has_option("compile"):
                compile_networks(bench.model)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", RuntimeWarning)
                bench.step()  # compiles
                bench.sync()
            fallbacks = [str(w.message) for w in caught if "torch.compile" in str(w.message)]
            if fallbacks:  # the model's own option fell back to eager (and warned why)
                raise RuntimeError(" / ".join(fallbacks))
        except Exception as err:  # noqa: BLE001 -- any compile failure falls back to eager, saying why
            message = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
            print(f"[{name}] torch.compile failed ({message}); timing the eager model instead", file=sys.stderr)
            row["compiled"], row["compile_error"] = False, message
            bench = Bench(name, args)
            bench.step()
    for _ in range(args.warmup):
        bench.step()
    bench.sync()
    if bench.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(bench.device)
    times = time_steps(bench, args.steps)
    median = statistics.median(times)
    row.update(
        median_s=median,
        min_s=min(times),
        max_s=max(times),
        steps=len(times),
        tflops=flops / median / 1e12,
        peak_memory_estimate_mib=estimate / MIB,
    )
    if bench.device.type == "cuda":
        row["peak_memory_mib"] = torch.cuda.max_memory_allocated(bench.device) / MIB
    else:
        row["median_cpu_s"] = statistics.median(bench.cpu_times)
        row["process_maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if name == "tripod" and args.profile_steps > 0:
        row["profile"] = profile_steps(bench, args)
    return row


def profile_steps(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    """Profile ``--profile-steps`` steps; write the operator table; return the top operators' shares."""
    decoder = bench.model.decoder
    activations = decoder.activations
    labelled = not args.compile  # leave a compiled decoder alone (relabelling it would recompile it)

    def labelled_activations(z: torch.Tensor, names: Sequence[str]) -> list[torch.Tensor]:
        with record_function(f"## decoder forward, batch {z.shape[0]}, to {list(names)[-1]}"):
            return activations(z, names)

    cuda = bench.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    if labelled:
        decoder.activations = labelled_activations
    try:
        with profile(activities=activities) as prof:
            for _ in range(args.profile_steps):
                with record_function("## train step"):
                    bench.step()
            bench.sync()
    finally:
        if labelled:
            del decoder.activations
    events = prof.key_averages()
    self_key = "self_device_time_total" if cuda else "self_cpu_time_total"
    if cuda and not hasattr(events[0], self_key):
        self_key = "self_cuda_time_total"
    table = events.table(sort_by=self_key, row_limit=30, max_name_column_width=70)
    total = sum(getattr(e, self_key) for e in events) or 1.0
    top = sorted(events, key=lambda e: getattr(e, self_key), reverse=True)[:12]
    ranges = [e for e in events if e.key.startswith("##")]
    header = (
        f"torch.profiler: Tripod, {args.profile_steps} step(s), size {args.size}, batch {args.batch_size}, "
        f"precision {args.precision}, device {device_name(args.device)}, torch {torch.__version__}\n"
        f"sorted by {self_key}; rows starting with '##' are labelled ranges (their CPU total is inclusive)\n\n"
    )
    path = args.profile_out or result_path(args).with_name(result_path(args).stem + "_tripod_profile.txt")
    write_text(Path(path), header + table + "\n")
    print(f"saved {path}")
    per_step = 1e3 * args.profile_steps  # profiler times are microseconds
    return {
        "path": str(path),
        "sorted_by": self_key,
        "top_ops": [
            {"op": e.key, "self_ms_per_step": getattr(e, self_key) / per_step, "share": getattr(e, self_key) / total}
            for e in top
        ],
        "ranges_cpu_ms_per_step": {e.key.removeprefix("## "): e.cpu_time_total / per_step for e in ranges},
    }


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    return platform.processor() or "cpu"


def result_path(args: argparse.Namespace) -> Path:
    if args.out:
        return Path(args.out)
    suffix = "".join(
        tag
        for tag, on in (("_bf16", args.precision != "32"), ("_cl", args.channels_last), ("_compile", args.compile))
        if on
    )
    return RESULTS / f"train_step_{torch.device(args.device).type}_{args.size}{suffix}.json"


def write_text(path: Path, text: str) -> None:
    """Write atomically (a temporary file renamed over the target)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    parser.add_argument("--precision", choices=sorted(PRECISIONS), default="32", help="32 or bf16-mixed (autocast)")
    parser.add_argument("--size", choices=sorted(SIZES), default="small", help="network widths (paper: the paper's)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per method (median reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps after the FLOP-counted one")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--compile", action="store_true", help="torch.compile the encoder and decoder")
    parser.add_argument("--channels-last", action="store_true", help="channels-last networks and images")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--profile-steps", type=int, default=3, help="Tripod steps profiled (0: no profile)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/train_step_<...>.json)")
    parser.add_argument("--profile-out", default=None, help="profile table path (default: beside the JSON)")
    args = parser.parse_args(argv)
    for option in ("steps", "batch_size"):
        if getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be >= 1, got {getattr(args, option)}")
    if args.warmup < 0 or args.profile_steps < 0:
        parser.error("--warmup and --profile-steps must be >= 0")
    if args.channels_last and not _model_has_option("channels_last"):
        parser.error("--channels-last: this version of TripodAutoencoder has no channels_last option")
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available in this torch build or on this machine")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.steps < 20:
        print(
            f"note: median of {args.steps} steps per method (20 or more for a settled figure; on a CPU at the "
            "paper's size a few steps suffice, each takes seconds)"
        )
    if args.compile and _model_has_option("compile"):
        print("compile: the model's own compile option (TripodAutoencoder(compile=True))")
    elif args.compile:
        print("compile: torch.compile of the encoder and decoder.activations, applied by this benchmark")
    rows = []
    for name in args.methods:
        row = measure(name, args)
        rows.append(row)
        print(
            f"{name:<14} {row['median_s']:9.4f} s/step  {row['flops'] / 1e12:8.4f} TFLOP  {row['tflops']:8.3f} TFLOP/s",
            flush=True,
        )
    base = next((r for r in rows if r["method"] == "qlae"), None)
    cpu = not args.device.startswith("cuda")
    mem_key = "peak_memory_estimate_mib" if cpu else "peak_memory_mib"
    print(
        f"\n{'method':<14} {'s/step':>9} {'vs QLAE':>8}"
        + (f" {'CPU s/step':>10} {'vs QLAE':>8}" if cpu else "")
        + f" {'TFLOP':>9} {'TFLOP/s':>8} {'MiB':>8}"
    )
    for r in rows:
        r["relative_to_qlae"] = r["median_s"] / base["median_s"] if base else None
        line = f"{r['method']:<14} {r['median_s']:9.4f} " + (f"{r['relative_to_qlae']:8.2f}" if base else f"{'-':>8}")
        if cpu:
            r["cpu_relative_to_qlae"] = r["median_cpu_s"] / base["median_cpu_s"] if base else None
            line += f" {r['median_cpu_s']:10.4f} " + (f"{r['cpu_relative_to_qlae']:8.2f}" if base else f"{'-':>8}")
        print(f"{line} {r['flops'] / 1e12:9.4f} {r['tflops']:8.3f} {r[mem_key]:8.0f}")
    result = {
        "benchmark": "train_step",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "device": args.device,
        "device_name": device_name(args.device),
        "torch_threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()),
        "size": args.size,
        "widths": {k: list(v) if isinstance(v, tuple) else v for k, v in SIZES[args.size].items()},
        "batch_size": args.batch_size,
        "precision": args.precision,
        "compile": args.compile,
        "channels_last": args.channels_last,
        "steps": args.steps,
        "warmup": args.warmup,
        "torch": torch.__version__,
        "timing_note": (
            "median_s: median wall seconds per step (CUDA: CUDA events between back-to-back steps); "
            "median_cpu_s (CPU): median process CPU seconds per step, all threads"
        ),
        "flops_note": "FlopCounterMode over one eager step: matmuls and convolutions, forward + backward",
        "peak_memory_note": (
            "peak_memory_mib: torch.cuda.max_memory_allocated over the timed steps (CUDA only); "
            "peak_memory_estimate_mib: parameters + gradients + AdamW state + tensors saved for backward "
            "(a lower bound); process_maxrss_mib (CPU): the process's resident high-water mark so far "
            "(ru_maxrss, cumulative over the methods run before)"
        ),
        "results": rows,
    }
    out = result_path(args)
    write_text(out, json.dumps(result, indent=2) + "\n")
    print(f"saved {out}")
    summary: dict[str, Any] = {r["method"]: r["median_s"] for r in rows}
    summary.update(device=args.device, precision=args.precision, tflops={r["method"]: r["tflops"] for r in rows})
    print(json.dumps(summary))
    return result


if __name__ == "__main__":
    main()
