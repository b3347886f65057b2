"""What each source of the procedural dataset is worth to the reconstruction loss.

The best reconstruction that knows some of the sources is, per pixel, the mean image over the values of the
others (the minimiser of the expected squared error and of the expected binary cross-entropy with soft targets
alike). Its PSNR, and the binary cross-entropy it adds over the images themselves (what an autoencoder pays for
leaving the other sources out of its code), measure how much the loss rewards encoding them. Rows: knowing
nothing (the mean image), every source but one, and growing sets in the order the trained models capture them
(background, object colour, x, y, then scale, shape, rotation). The dataset is full factorial in row-major order,
so each mean is an average over axes. About 3 minutes and 4 GB on the default dataset.

    python benchmarks/source_value.py [--path data/procedural.h5] [--out benchmarks/results/source_value.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import h5py
import numpy as np

from tripod_pl.data.datamodule import generate_missing_procedural


def _neg_entropy_table() -> np.ndarray:
    """p log p + (1 - p) log(1 - p) for the 256 pixel levels p = v / 255 (0 log 0 = 0)."""
    p = np.arange(256) / 255.0
    with np.errstate(divide="ignore", invalid="ignore"):
        table = np.nan_to_num(p * np.log(p)) + np.nan_to_num((1 - p) * np.log(1 - p))
    return table.astype(np.float32)


def _scores(grid: np.ndarray, known: set[int]) -> dict[str, float]:
    """PSNR and excess BCE of the best reconstruction q from the sources ``known`` (axes of the uint8 factorial
    ``grid``): q is the mean over every other source's axis. Per pixel p, the excess BCE is
    KL(p || q) = p log p + (1 - p) log(1 - p) - [log(1 - q) + p (log q - log(1 - q))]; PSNR is the mean over
    images of -10 log10(mean squared error), as the evaluation computes it. Scored one background colour at a
    time (bounded memory)."""
    unknown = tuple(axis for axis in range(grid.ndim - 1) if axis not in known)
    if not unknown:
        return {"psnr": float("inf"), "excess_bce": 0.0}
    mean = grid.mean(axis=unknown, keepdims=True, dtype=np.float32) / np.float32(255.0)
    q = np.clip(mean, 1e-6, 1 - 1e-6)
    log_1q = np.log1p(-q)
    log_ratio = np.log(q) - log_1q
    del q
    table = _neg_entropy_table()
    psnr, bce, count = 0.0, 0.0, 0
    for index in range(grid.shape[0]):
        part = slice(index, index + 1) if mean.shape[0] > 1 else slice(0, 1)
        codes = grid[index : index + 1]
        p = codes.astype(np.float32) / 255.0
        n = p.size // p.shape[-1]
        mse = np.square(p - mean[part]).reshape(n, -1).mean(axis=1, dtype=np.float64)
        psnr += float(np.sum(10 * np.log10(1.0 / np.maximum(mse, 1e-12))))
        cross = np.mean(log_1q[part] + p * log_ratio[part], dtype=np.float64)
        bce += (float(table[codes].mean(dtype=np.float64)) - float(cross)) * n
        count += n
    return {"psnr": psnr / count, "excess_bce": bce / count}


def _rows(names: list[str]) -> list[tuple[str, set[int]]]:
    """The reconstructions scored: knowing nothing, every source but one, and growing sets of sources in the order
    the trained models capture them (background, object colour, x, y; then scale, shape, rotation)."""
    index = {name: k for k, name in enumerate(names)}
    rows = [("nothing", set())]
    rows += [(f"all but {name}", set(index) - {name}) for name in names]
    order = ["background_color", "object_color", "position_x", "position_y", "scale", "shape", "rotation"]
    order = [name for name in order if name in index] + [name for name in names if name not in order]
    for size in range(1, len(order) + 1):
        rows.append((" + ".join(order[:size]) if size < len(order) else "all", set(order[:size])))
    return [(label, {index[name] for name in known}) for label, known in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", default="data/procedural.h5")
    parser.add_argument("--out", default="benchmarks/results/source_value.json")
    args = parser.parse_args()
    if not os.path.exists(args.path):
        generate_missing_procedural(args.path)
    with h5py.File(args.path, "r") as f:
        names = [str(n) for n in f.attrs["source_names"]]
        sizes = [int(s) for s in f.attrs["source_sizes"]]
        images = f["images"][:]
    grid = images.reshape(*sizes, -1)  # row-major factorial: one axis per source, then the pixels
    start = time.perf_counter()
    rows = [{"knows": label, **_scores(grid, known)} for label, known in _rows(names)]
    for row in rows:
        row["psnr"] = None if np.isinf(row["psnr"]) else row["psnr"]  # (JSON has no infinity)
    print(f"{'reconstruction knows':<70} {'PSNR (dB)':>10} {'excess BCE (nats/pixel)':>24}")
    for row in rows:
        psnr = float("inf") if row["psnr"] is None else row["psnr"]
        print(f"{row['knows']:<70} {psnr:>10.2f} {row['excess_bce']:>24.5f}")
    result = {"dataset": args.path, "sources": dict(zip(names, sizes)), "rows": rows,
              "seconds": time.perf_counter() - start}  # fmt: skip
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
