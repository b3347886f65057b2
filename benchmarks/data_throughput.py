"""Images per second delivered to the training loop by ``HDF5DataModule``, against a naive reader.

The file (procedural, >= 100k images of 64x64x3) is read once beforehand so it sits in the page cache; every
configuration then iterates its training loader for a few seconds after a warm-up, in this same run (the
machine is shared and noisy: compare the ratios of one run, not figures of different runs):

- ``naive``: a map-style ``Dataset`` whose ``__getitem__`` reads one row from h5py, shuffled
  ``DataLoader(batch_size=64)`` (what most disentanglement code does);
- ``stream``: ``HDF5DataModule`` (contiguous runs, batches built whole in the worker, a plain ``DataLoader``)
  with 0, 1 and 2 workers;
- ``in RAM``: ``HDF5DataModule(in_memory=True)`` with 0 and 2 workers.

Batches are counted when the loop receives them (uint8, before any device transfer); ``parent_ms_per_batch``
is the CPU time the training process spends per batch to receive it (time the training loop cannot use).
The JSON also holds the demand of the fastest method on a GPU (see ``DEMAND``)::

    python benchmarks/data_throughput.py            # writes benchmarks/results/data_throughput.json

``results/data_throughput_ring_vs_plain.json`` was measured by this script at commit 6819bb2, when workers
could still return batches through a shared-memory batch ring: it compares, in one run, the ring with the
plain ``DataLoader`` path that replaced it (``tripod_pl.data.loader`` has the figures).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import h5py
import lightning
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from tripod_pl.data import HDF5DataModule, generate_procedural, read_info

#: 4 x 5 x 4 x 3 x 8 x 8 x 7 = 107,520 images
FACTORS = {"position_x": 8, "position_y": 8, "rotation": 7}

#: What the fastest method (AE/QLAE) consumes on one GPU at batch 64: the project targets a Tripod step of
#: <= 15 ms on one H100/H200-class GPU, and a QLAE/AE step is ~4.4x less arithmetic (0.57 vs ~2.5 TFLOP per
#: step at the paper's size), so QLAE would take 64 / (15 ms / 4.4) images/s; the paper's own profile
#: (0.040 s per QLAE step) means 64 / 0.040.
DEMAND = {
    "tripod_step_target_s": 0.015,
    "tripod_over_qlae_flops": 4.4,
    "qlae_images_per_s_at_target": round(64 / (0.015 / 4.4)),
    "paper_qlae_s_per_step": 0.040,
    "qlae_images_per_s_paper": round(64 / 0.040),
}


class NaiveRows(Dataset):
    """One h5py row read per ``__getitem__`` (handle opened lazily in each worker)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.length = read_info(path, check_sources=False).num_images
        self.file: h5py.File | None = None

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if self.file is None:
            self.file = h5py.File(self.path, "r")
        return {
            "image": torch.from_numpy(self.file["images"][i]),
            "sources": torch.from_numpy(self.file["sources"][i].astype(np.int64)),
        }


def measure(loader: Iterable, seconds: float, warmup_batches: int = 20) -> dict[str, float]:
    """Images/s over ``seconds`` of iteration, after ``warmup_batches`` (worker start-up) are discarded, and
    the training process's CPU milliseconds per batch."""
    images = batches = 0
    start = cpu = None
    while True:
        for batch in loader:
            if start is None:
                batches += 1
                if batches >= warmup_batches:
                    start, cpu, images, batches = time.perf_counter(), time.process_time(), 0, 0
                continue
            images += batch["image"].shape[0]
            batches += 1
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                parent_ms = (time.process_time() - cpu) / batches * 1e3
                return {
                    "images_per_s": images / elapsed,
                    "images": images,
                    "seconds": elapsed,
                    "parent_ms_per_batch": parent_ms,
                }


def page_cache(path: str) -> None:
    """Reads the whole file once so that every configuration reads from RAM."""
    with open(path, "rb") as f:
        while f.read(64 << 20):
            pass


def run(path: str, batch_size: int, seconds: float) -> list[dict]:
    def naive() -> DataLoader:
        rows = NaiveRows(path)
        return DataLoader(rows, batch_size, shuffle=True, num_workers=2, persistent_workers=True, drop_last=True)

    def datamodule(workers: int, in_memory: bool) -> Callable[[], Iterable]:
        options = {"batch_size": batch_size, "num_workers": workers, "in_memory": in_memory, "pin_memory": False}
        return lambda: HDF5DataModule(path, **options).train_dataloader()

    configs: list[tuple[str, int, Callable[[], Iterable]]] = [("naive __getitem__", 2, naive)]
    configs += [("stream", workers, datamodule(workers, False)) for workers in (0, 1, 2)]
    configs += [("in RAM", workers, datamodule(workers, True)) for workers in (0, 2)]
    results = []
    for name, workers, make in configs:
        loader = make()
        result = {"reader": name, "workers": workers, **measure(loader, seconds)}
        print(
            f"{name:>18}  {workers} workers  {result['images_per_s']:>10,.0f} images/s"
            f"  {result['parent_ms_per_batch']:.3f} ms parent CPU per batch",
            flush=True,
        )
        results.append(result)
        iterator = getattr(loader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()  # persistent workers: stop them before the next configuration
    return results


def table(results: list[dict]) -> str:
    naive = results[0]["images_per_s"]
    lines = [
        "| reader | workers | images/s | vs naive | parent CPU ms/batch |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['reader']} | {r['workers']} | {r['images_per_s']:,.0f} | {r['images_per_s'] / naive:,.0f}x "
            f"| {r['parent_ms_per_batch']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--path", default="/tmp/tripod_pl_bench/procedural_107k.h5")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=6.0, help="measured seconds per configuration")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "data_throughput.json"))
    args = parser.parse_args()

    torch.set_num_threads(1)
    if not Path(args.path).exists():
        Path(args.path).parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        generate_procedural(args.path, FACTORS)
        print(f"generated {args.path} in {time.perf_counter() - start:.1f} s")
    info = read_info(args.path)
    assert info.num_images >= 100_000, "the benchmark needs a file of at least 100k images"
    page_cache(args.path)
    load_before = os.getloadavg()
    results = run(args.path, args.batch_size, args.seconds)
    report = {
        "file": {"images": info.num_images, "image_shape": info.image_shape, "bytes": os.path.getsize(args.path)},
        "batch_size": args.batch_size,
        "seconds_per_config": args.seconds,
        "date": time.strftime("%Y-%m-%d"),
        "demand": DEMAND,
        "results": results,
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "lightning": lightning.__version__,
            "h5py": h5py.__version__,
        },
        "markdown": table(results),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(report["markdown"])


if __name__ == "__main__":
    main()
