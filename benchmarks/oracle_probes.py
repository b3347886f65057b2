"""Can the procedural configs' networks hold each source when they are told it? Four probes.

The unsupervised runs capture background, object colour, x and y, and not shape, scale or rotation. These probes
tell "the networks at this size and budget cannot" from "unsupervised training does not find it":

- ``encoder``: the configs' encoder (widths 8-16-32-64) with one softmax head per source, trained by cross-entropy
  to name every source of an image. Its held-out accuracy per source is what an encoder of this size can extract
  in this many steps when told the answer.
- ``decoder``: the configs' decoder (widths 64-32-16-8, ``cond_dim`` 64) trained by the autoencoders' binary
  cross-entropy to draw each image from its true sources, one input per source with its index mapped evenly
  onto [-1, 1] (the code of a perfectly disentangled FSQ latent). Its held-out PSNR, against the best
  reconstruction that knows every source but one (``source_value.py``), says which sources it draws; the PSNR
  lost when one input is shuffled across the images (the others kept) says how much it uses each source.
- ``through``: a new encoder trained through that decoder, frozen, by the reconstruction loss alone (``tanh`` of
  its outputs as the decoder's inputs): whether the reconstruction gradient leads an encoder to every source once
  the decoder draws them all (held-out PSNR, and how often each output lands on its source's true input).
  ``--given position_x position_y`` hands it the true inputs of the sources named: whether the others are found once
  those are right.
- ``landscape``: the reconstruction loss of that decoder along one input at a time, the others at their true values,
  scanned on 61 points of [-1, 1] (every source's grid values among them) for 300 held-out images. Per source: how
  often the scan's minimum is the true value; how often walking downhill from a wrong grid value (a gradient
  descent with small steps on that input alone) ends at the true one; and what a wrong value costs, in nats per
  pixel, against the true one. For the sources other than position, the same with the object drawn one grid step
  off in x and in y: whether a misplaced object still tells its shape, scale, rotation or colour.

All train as the procedural configs do (AdamW, lr 1e-3, batch 32, gradient values clipped at 1) on 90% of the
images and are scored on 2,000 of the other 10% (a fixed random split). About 40 minutes for all four at 3,000
steps on an idle 2-core CPU (``through`` and ``landscape`` train the decoder first).

    python benchmarks/oracle_probes.py [--probe all] [--steps 3000] [--out benchmarks/results/oracle_probes.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import torch
import torch.nn.functional as F
from torch import Tensor

from tripod_pl.data.datamodule import generate_missing_procedural
from tripod_pl.data.layout import open_hdf5, read_info
from tripod_pl.data.transforms import as_model_input
from tripod_pl.io import atomic_write_text
from tripod_pl.metrics.reconstruction import psnr
from tripod_pl.nets import Decoder, Encoder

ENCODER_WIDTHS = (8, 16, 32, 64)
DECODER_WIDTHS = (64, 32, 16, 8)
COND_DIM = 64
LR, BATCH, CLIP = 1e-3, 32, 1.0
EVAL_IMAGES = 2000
SCAN_POINTS, SCAN_IMAGES = 61, 300  # 61 points: the grid values of every source with up to 7 values are among them
POSITIONS = ("position_x", "position_y")


def _grid(sizes: list[int]) -> tuple[Tensor, Tensor]:
    """Per source, ``n - 1`` (1 where ``n == 1``) and whether it has a single value."""
    return torch.tensor([max(n - 1, 1) for n in sizes], dtype=torch.float32), torch.tensor([n == 1 for n in sizes])


def source_codes(sources: Tensor, sizes: list[int]) -> Tensor:
    """Source indices (N x K) as decoder inputs: index ``i`` of a source with ``n`` values -> ``2 i / (n - 1) - 1``
    (0 for a source with one value)."""
    span, single = _grid(sizes)
    return torch.where(single, 0.0, sources.float() / span * 2 - 1)


def _in_chunks(fn, x: Tensor, size: int = 250) -> list:
    """``fn`` of ``x`` in chunks of ``size`` rows (bounded memory at evaluation)."""
    return [fn(x[i : i + size]) for i in range(0, len(x), size)]


def _optimizer(module: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW(module.parameters(), lr=LR, betas=(0.9, 0.999), weight_decay=0.0)


def _step(module: torch.nn.Module, optimizer: torch.optim.Optimizer, loss: Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_value_(module.parameters(), CLIP)
    optimizer.step()


@torch.no_grad()
def _accuracies(encoder: Encoder, images: Tensor, sources: Tensor, sizes: list[int]) -> list[float]:
    heads = torch.cat(_in_chunks(lambda chunk: encoder(as_model_input(chunk)), images)).split(sizes, dim=1)
    return [float((head.argmax(1) == sources[:, k]).float().mean()) for k, head in enumerate(heads)]


def train_encoder(images, sources, sizes, train, held, steps, eval_every, names) -> dict:
    """Cross-entropy summed over the sources' heads; held-out accuracy per source every ``eval_every`` steps."""
    encoder = Encoder(sum(sizes), widths=ENCODER_WIDTHS)
    optimizer = _optimizer(encoder)
    held_images, held_sources = images[held], sources[held]
    history, start = [], time.perf_counter()
    for step in range(1, steps + 1):
        index = train[torch.randint(len(train), (BATCH,))]
        heads = encoder(as_model_input(images[index])).split(sizes, dim=1)
        loss = sum(F.cross_entropy(head, sources[index, k]) for k, head in enumerate(heads))
        _step(encoder, optimizer, loss)
        if step % eval_every == 0 or step == steps:
            encoder.eval()
            accuracy = dict(zip(names, _accuracies(encoder, held_images, held_sources, sizes)))
            encoder.train()
            history.append({"step": step, "loss": float(loss.detach()), "accuracy": accuracy})
            print(f"encoder step {step}: " + ", ".join(f"{n} {a:.2f}" for n, a in accuracy.items()), flush=True)
    return {"history": history, "seconds": time.perf_counter() - start}


@torch.no_grad()
def _scores(decoder: Decoder, codes: Tensor, images: Tensor) -> tuple[float, float]:
    """Mean PSNR (dB) of the drawn images, and their excess binary cross-entropy (nats per pixel): the training
    loss minus the images' own entropy, ``BCE(logits, p) - H(p)``, 0 for a perfect drawing (as ``source_value.py``)."""

    def score(rows: Tensor) -> tuple[Tensor, Tensor]:
        logits = decoder(codes[rows])
        target = (as_model_input(images[rows]) + 1) / 2
        entropy = F.binary_cross_entropy(target, target, reduction="none")
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        return psnr(torch.sigmoid(logits), target), (bce - entropy).flatten(1).mean(1)

    values, excess = zip(*_in_chunks(score, torch.arange(len(codes))))
    return float(torch.cat(values).mean()), float(torch.cat(excess).mean())


def train_decoder(images, sources, sizes, train, held, steps, eval_every, names) -> dict:
    """Binary cross-entropy of the drawn image from the true sources; every ``eval_every`` steps the held-out PSNR
    and excess cross-entropy, and the PSNR with each source's input shuffled over the held-out images."""
    codes = source_codes(sources, sizes)
    decoder = Decoder(len(sizes), widths=DECODER_WIDTHS, cond_dim=COND_DIM)
    optimizer = _optimizer(decoder)
    shuffle = torch.randperm(len(held), generator=torch.Generator().manual_seed(1))
    held_codes, held_images = codes[held], images[held]
    history, start = [], time.perf_counter()
    for step in range(1, steps + 1):
        index = train[torch.randint(len(train), (BATCH,))]
        target = (as_model_input(images[index]) + 1) / 2
        loss = F.binary_cross_entropy_with_logits(decoder(codes[index]), target)
        _step(decoder, optimizer, loss)
        if step % eval_every == 0 or step == steps:
            decoder.eval()
            full, excess = _scores(decoder, held_codes, held_images)
            shuffled = {}
            for k, name in enumerate(names):
                mixed = held_codes.clone()
                mixed[:, k] = mixed[shuffle, k]
                shuffled[name] = _scores(decoder, mixed, held_images)[0]
            decoder.train()
            history.append({"step": step, "loss": float(loss.detach()), "psnr": full, "excess_bce": excess,
                            "psnr_shuffled": shuffled})  # fmt: skip
            drops = ", ".join(f"{n} {p - full:+.2f}" for n, p in shuffled.items())
            print(f"decoder step {step}: {full:.2f} dB, excess BCE {excess:.4f}; shuffled: {drops}", flush=True)
    return {"history": history, "seconds": time.perf_counter() - start}, decoder


def train_through(images, sources, sizes, train, held, steps, eval_every, names, decoder: Decoder, given=()) -> dict:
    """A new encoder trained through the trained decoder, frozen, by the reconstruction loss alone: ``z = tanh(h)``
    feeds the decoder's source inputs, except that the sources named in ``given`` get their true inputs. Every
    ``eval_every`` steps the held-out PSNR and, per source, how often ``z_k`` lands nearest the true index's input
    (``round((z_k + 1) (n_k - 1) / 2)``; 1 for a given source)."""
    decoder.requires_grad_(False)
    encoder = Encoder(len(sizes), widths=ENCODER_WIDTHS)
    optimizer = _optimizer(encoder)
    span, single = _grid(sizes)
    told = torch.tensor([name in given for name in names])
    codes = source_codes(sources, sizes)

    def through(x: Tensor, rows: Tensor) -> Tensor:
        return torch.where(told, codes[rows], torch.tanh(encoder(x)))

    held_images, held_sources = images[held], sources[held]
    history, start = [], time.perf_counter()
    for step in range(1, steps + 1):
        index = train[torch.randint(len(train), (BATCH,))]
        x = as_model_input(images[index])
        loss = F.binary_cross_entropy_with_logits(decoder(through(x, index)), (x + 1) / 2)
        _step(encoder, optimizer, loss)
        if step % eval_every == 0 or step == steps:
            encoder.eval()
            with torch.no_grad():
                z = torch.cat(_in_chunks(lambda rows: through(as_model_input(images[rows]), rows), held))
            nearest = torch.minimum(torch.round((z + 1) * span / 2).clamp(min=0), span)
            found = (nearest == held_sources) | single  # a one-value source has one input (0): always found
            accuracy = dict(zip(names, found.float().mean(0).tolist()))
            full = _scores(decoder, z, held_images)[0]
            encoder.train()
            history.append({"step": step, "loss": float(loss.detach()), "psnr": full, "accuracy": accuracy})
            found_text = ", ".join(f"{n} {a:.2f}" for n, a in accuracy.items())
            print(f"encoder through decoder step {step}: {full:.2f} dB; {found_text}", flush=True)
    return {"history": history, "given": list(given), "seconds": time.perf_counter() - start}


def _losses(decoder: Decoder, codes: Tensor, images: Tensor) -> Tensor:
    """Per row, the decoder's binary cross-entropy (mean over pixels) of ``images`` drawn from ``codes``."""

    def loss(rows: Tensor) -> Tensor:
        target = (as_model_input(images[rows]) + 1) / 2
        return F.binary_cross_entropy_with_logits(decoder(codes[rows]), target, reduction="none").flatten(1).mean(1)

    with torch.no_grad():
        return torch.cat(_in_chunks(loss, torch.arange(len(codes))))


def descend(losses: Tensor, start: Tensor) -> Tensor:
    """Where walking downhill on each row of ``losses`` (N x P) from the indices ``start`` ends: step to the lower
    neighbour while one is lower than here (gradient descent with small steps along a 1-D scan)."""
    index, rows, last = start.clone(), torch.arange(len(losses)), losses.shape[1] - 1
    for _ in range(last):
        left, right = (index - 1).clamp(min=0), (index + 1).clamp(max=last)
        lower = torch.where(losses[rows, left] < losses[rows, right], left, right)
        index = torch.where(losses[rows, lower] < losses[rows, index], lower, index)
    return index


def scan_source(decoder: Decoder, codes: Tensor, images: Tensor, truth: Tensor, k: int, n: int) -> dict:
    """The loss along input ``k`` (the others as in ``codes``) on ``SCAN_POINTS`` points of [-1, 1]: how often its
    minimum rounds to the true value ``truth`` (indices), how often a descent from each wrong grid value ends
    there, and the mean cost of a wrong grid value over the true one (nats per pixel)."""
    points = torch.linspace(-1, 1, SCAN_POINTS)
    scan = codes.repeat_interleave(SCAN_POINTS, dim=0)
    scan[:, k] = points.repeat(len(codes))
    losses = _losses(decoder, scan, images.repeat_interleave(SCAN_POINTS, dim=0)).view(len(codes), SCAN_POINTS)
    per_value = (SCAN_POINTS - 1) // (n - 1)  # scan points between neighbouring grid values
    grid = losses[:, ::per_value]  # N x n: the loss at each grid value
    wrong = torch.arange(n)[None, :] != truth[:, None]
    starts = torch.arange(n).repeat(len(codes), 1)[wrong].view(len(codes), n - 1)
    ends = descend(losses.repeat_interleave(n - 1, dim=0), starts.flatten() * per_value).view(len(codes), n - 1)
    landed = torch.round(ends / per_value) == truth[:, None]
    return {
        "minimum_is_true": float((torch.round(losses.argmin(1) / per_value) == truth).float().mean()),
        "descent_finds_true": float(landed.float().mean()),
        "wrong_value_cost": float((grid[wrong].view(len(codes), n - 1) - grid.gather(1, truth[:, None])).mean()),
    }


def _misplaced(sources: Tensor, sizes: list[int], columns: list[int]) -> Tensor:
    """The sources with each of ``columns`` moved one grid step (up, or down from the last value)."""
    moved = sources.clone()
    for k in columns:
        moved[:, k] = torch.where(sources[:, k] < sizes[k] - 1, sources[:, k] + 1, sources[:, k] - 1)
    return moved


def unscannable(sizes: list[int]) -> str | None:
    """Why ``SCAN_POINTS`` cannot scan sources of these sizes (not every grid value among the points), or None."""
    if (SCAN_POINTS - 1) % math.lcm(*(n - 1 for n in sizes if n > 1)):
        return f"{SCAN_POINTS} scan points do not hold every grid value of sources sized {sizes}"
    return None


def scan_landscape(images, sources, sizes, held, names, decoder: Decoder) -> dict:
    """``scan_source`` for every source with more than one value, on ``SCAN_IMAGES`` held-out images; for the
    sources other than position, again with the object's inputs moved one grid step in x and y (``misplaced``)."""
    if reason := unscannable(sizes):
        raise ValueError(reason)
    decoder.eval()
    rows = held[:SCAN_IMAGES]
    scan_images, truth = images[rows], sources[rows]
    positions = [k for k, name in enumerate(names) if name in POSITIONS and sizes[k] > 1]
    codes, misplaced = source_codes(truth, sizes), source_codes(_misplaced(truth, sizes, positions), sizes)
    result, start = {}, time.perf_counter()
    for k, (name, n) in enumerate(zip(names, sizes)):
        if n == 1:
            continue
        result[name] = {"placed": scan_source(decoder, codes, scan_images, truth[:, k], k, n)}
        if positions and k not in positions:
            result[name]["misplaced"] = scan_source(decoder, misplaced, scan_images, truth[:, k], k, n)
        text = "; ".join(f"{c}: " + ", ".join(f"{m} {v:.3g}" for m, v in r.items()) for c, r in result[name].items())
        print(f"landscape {name}: {text}", flush=True)
    return {"sources": result, "images": len(rows), "points": SCAN_POINTS, "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", default="data/procedural.h5")
    parser.add_argument("--probe", choices=("encoder", "decoder", "through", "landscape", "all"), default="all")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--eval-every", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/oracle_probes.json")
    parser.add_argument("--given", nargs="*", default=[], metavar="SOURCE",
                        help="sources whose true inputs the through probe's encoder is given")  # fmt: skip
    args = parser.parse_args()
    if not os.path.exists(args.path):
        generate_missing_procedural(args.path)
    info = read_info(args.path)
    names, sizes = info.source_names, info.source_sizes
    if unknown := sorted(set(args.given) - set(names)):
        parser.error(f"--given: {args.path} has no source {', '.join(unknown)} (its sources: {', '.join(names)})")
    if args.probe in ("landscape", "all") and (reason := unscannable(sizes)):  # before any training, not after
        parser.error(f"--probe {args.probe}: {args.path}: {reason}")
    with open_hdf5(args.path) as f:  # the whole file in memory (about 0.5 GB for the default dataset)
        images = torch.from_numpy(f["images"][:])
        sources = torch.from_numpy(f["sources"][:].astype("int64"))
    torch.manual_seed(args.seed)
    order = torch.randperm(len(images))
    cut = len(images) // 10
    held, train = order[:cut][:EVAL_IMAGES], order[cut:]
    result = {"dataset": args.path, "sources": dict(zip(names, sizes)), "steps": args.steps, "seed": args.seed,
              "encoder_widths": ENCODER_WIDTHS, "decoder_widths": DECODER_WIDTHS, "cond_dim": COND_DIM,
              "lr": LR, "batch": BATCH, "threads": torch.get_num_threads()}  # fmt: skip
    common = (images, sources, sizes, train, held, args.steps, args.eval_every, names)
    if args.probe in ("encoder", "all"):
        result["encoder"] = train_encoder(*common)
    if args.probe in ("decoder", "through", "landscape", "all"):  # the last two need the trained decoder
        result["decoder"], decoder = train_decoder(*common)
    if args.probe in ("landscape", "all"):
        result["landscape"] = scan_landscape(images, sources, sizes, held, names, decoder)
    if args.probe in ("through", "all"):
        result["through"] = train_through(*common, decoder, given=args.given)
    atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
