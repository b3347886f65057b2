"""benchmarks/oracle_probes.py: the decoder's inputs, its scores against the definitions written out in float64, and
a short end-to-end run on a small procedural file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tripod_pl.data.prepare.procedural import generate_procedural

from ..helpers import load_script


def test_source_codes_spread_each_source_evenly_on_minus_one_to_one() -> None:
    bench = load_script("benchmarks/oracle_probes.py")
    sources = torch.tensor([[0, 0, 0], [1, 2, 0], [2, 4, 0]])
    codes = bench.source_codes(sources, [3, 5, 1])
    expected = torch.tensor([[-1, -1, 0], [0, 0, 0], [1, 1, 0]], dtype=torch.float32)  # one value: the midpoint
    torch.testing.assert_close(codes, expected)


class _Fixed(torch.nn.Module):
    """A stand-in decoder returning fixed logits for the codes' rows (the codes hold row numbers)."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.logits[codes[:, 0].long()]


def _reference(pixels: np.ndarray, q: np.ndarray) -> tuple[float, float]:
    p = pixels.astype(np.float64) / 255
    mse = ((p - q) ** 2).reshape(len(p), -1).mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = np.nan_to_num(p * np.log(p / q)) + np.nan_to_num((1 - p) * np.log((1 - p) / (1 - q)))
    return float(np.mean(-10 * np.log10(mse))), float(kl.mean())


def test_scores_equal_the_definitions() -> None:
    bench = load_script("benchmarks/oracle_probes.py")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(300, 4, 4, 3), dtype=np.uint8)  # more than one chunk of 250
    q = rng.uniform(0.05, 0.95, size=(300, 3, 4, 4))
    logits = torch.logit(torch.tensor(q, dtype=torch.float32))
    codes = torch.arange(300, dtype=torch.float32)[:, None]
    psnr, excess = bench._scores(_Fixed(logits), codes, torch.from_numpy(images))
    ref_psnr, ref_excess = _reference(images.transpose(0, 3, 1, 2), q)
    assert psnr == pytest.approx(ref_psnr, rel=1e-4)
    assert excess == pytest.approx(ref_excess, rel=1e-3)
    exact = torch.logit(torch.from_numpy(images.transpose(0, 3, 1, 2)).float() / 255, eps=1e-6)
    assert bench._scores(_Fixed(exact), codes, torch.from_numpy(images))[1] == pytest.approx(0, abs=1e-4)


def test_the_probes_run_end_to_end(tmp_path, monkeypatch) -> None:
    bench = load_script("benchmarks/oracle_probes.py")
    data, out = tmp_path / "toy.h5", tmp_path / "oracle.json"
    sizes = {"background_color": 2, "object_color": 2, "shape": 2, "scale": 2, "position_x": 3, "position_y": 3}
    generate_procedural(data, {**sizes, "rotation": 1})  # one value: its input is constant, always found
    monkeypatch.setattr(bench, "EVAL_IMAGES", 20)
    argv = ["oracle_probes.py", "--path", str(data), "--steps", "2", "--eval-every", "1", "--out", str(out)]
    monkeypatch.setattr("sys.argv", argv)
    bench.main()
    result = json.loads(out.read_text())
    assert [h["step"] for h in result["encoder"]["history"]] == [1, 2]
    accuracy = result["encoder"]["history"][-1]["accuracy"]
    assert set(accuracy) == set(result["sources"]) and all(0 <= a <= 1 for a in accuracy.values())
    last = result["decoder"]["history"][-1]
    assert set(last["psnr_shuffled"]) == set(result["sources"])
    assert 0 < last["psnr"] < 60 and last["excess_bce"] > 0
    through = result["through"]["history"][-1]
    assert set(through["accuracy"]) == set(result["sources"]) and 0 < through["psnr"] < 60
    assert through["accuracy"]["rotation"] == 1.0
    landscape = result["landscape"]["sources"]
    assert set(landscape) == set(sizes)  # rotation has one value: nothing to scan
    assert "misplaced" in landscape["shape"] and "misplaced" not in landscape["position_x"]
    scale = landscape["scale"]["misplaced"]
    assert 0 <= scale["minimum_is_true"] <= 1 and 0 <= scale["descent_finds_true"] <= 1


def _walk(row: list[float], start: int) -> int:
    """Without ties a downhill walk keeps its first direction (towards the lower neighbour): follow it while the
    next value is lower."""
    steps = [d for d in (-1, 1) if 0 <= start + d < len(row) and row[start + d] < row[start]]
    if not steps:
        return start
    step = min(steps, key=lambda d: row[start + d])
    here = start + step
    while 0 <= here + step < len(row) and row[here + step] < row[here]:
        here += step
    return here


def test_descend_ends_where_a_walk_downhill_ends() -> None:
    bench = load_script("benchmarks/oracle_probes.py")
    rng = np.random.default_rng(0)
    losses = rng.normal(size=(200, 13)).cumsum(axis=1)  # random walks: many local minima
    starts = rng.integers(0, 13, size=200)
    ends = bench.descend(torch.tensor(losses), torch.tensor(starts))
    assert ends.tolist() == [_walk(list(row), int(s)) for row, s in zip(losses, starts)]
    valley = torch.tensor([[3.0, 2.0, 1.0, 0.0, 1.0, 0.5, 2.0]])
    assert bench.descend(valley.repeat(3, 1), torch.tensor([0, 4, 6])).tolist() == [3, 3, 5]


class _Wells(torch.nn.Module):
    """Logits ``logit(p) + h(z_k)``, where ``h >= 0`` vanishes only at ``z_k = -1``: the loss grows with ``h``.
    ``h = (z^2 - 1)^2 + 0.1 (z + 1)^2`` also has a local minimum near ``z = 0.95``; ``h = 0`` never varies."""

    def __init__(self, k: int, p: float, kind: str) -> None:
        super().__init__()
        self.k, self.logit, self.kind = k, float(np.log(p / (1 - p))), kind

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        z = codes[:, self.k]
        h = {"double": (z**2 - 1) ** 2 + 0.1 * (z + 1) ** 2, "flat": 0 * z, "single": (z + 1) ** 2}[self.kind]
        return (self.logit + h)[:, None, None, None].expand(-1, 3, 4, 4)


def _bce(q: float, p: float) -> float:
    return -p * np.log(q) - (1 - p) * np.log(1 - q)


@pytest.mark.parametrize("kind, minimum, descent", [("single", 1.0, 1.0), ("double", 1.0, 0.0), ("flat", None, 0.0)])
def test_scan_source_tells_a_trap_from_a_valley(kind, minimum, descent) -> None:
    bench = load_script("benchmarks/oracle_probes.py")
    images = torch.full((5, 4, 4, 3), 128, dtype=torch.uint8)
    p = float((bench.as_model_input(images[:1]) + 1).flatten()[0] / 2)
    codes = torch.zeros(5, 2)
    truth = torch.zeros(5, dtype=torch.long)  # index 0 of two values: input -1; the wrong value's input is +1
    result = bench.scan_source(_Wells(1, p, kind), codes, images, truth, k=1, n=2)
    if minimum is not None:  # a flat scan has no minimum to speak of
        assert result["minimum_is_true"] == minimum
    assert result["descent_finds_true"] == descent
    h_at_one = {"single": 4.0, "double": 0.4, "flat": 0.0}[kind]
    logit = np.log(p / (1 - p))
    expected = _bce(1 / (1 + np.exp(-(logit + h_at_one))), p) - _bce(p, p)
    assert result["wrong_value_cost"] == pytest.approx(expected, rel=1e-3, abs=1e-6)


def test_misplaced_moves_each_position_one_step_inside_the_grid() -> None:
    bench = load_script("benchmarks/oracle_probes.py")
    sources = torch.tensor([[0, 0, 2], [1, 3, 0], [2, 1, 1]])
    moved = bench._misplaced(sources, [3, 4, 3], [1, 2])
    assert moved.tolist() == [[0, 1, 1], [1, 2, 1], [2, 2, 2]]


class _Hidden(torch.nn.Module):
    """Logits ``logit(p) + (z_0 + 1)^2 relu(-z_1)``: input 0 (shape) matters only while input 1 (x) is near -1."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.logit = float(np.log(p / (1 - p)))

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        h = (codes[:, 0] + 1) ** 2 * torch.relu(-codes[:, 1])
        return (self.logit + h)[:, None, None, None].expand(-1, 3, 4, 4)


def test_scan_landscape_scans_the_misplaced_object_with_its_position_moved() -> None:
    bench = load_script("benchmarks/oracle_probes.py")
    images = torch.full((6, 4, 4, 3), 128, dtype=torch.uint8)
    p = float((bench.as_model_input(images[:1]) + 1).flatten()[0] / 2)
    sources = torch.zeros(6, 2, dtype=torch.long)  # shape 0 of 2 (input -1), x 0 of 2 (input -1)
    result = bench.scan_landscape(images, sources, [2, 2], torch.arange(6), ["shape", "position_x"], _Hidden(p))
    shape = result["sources"]["shape"]
    logit = np.log(p / (1 - p))
    placed_cost = _bce(1 / (1 + np.exp(-(logit + 4.0))), p) - _bce(p, p)
    assert shape["placed"]["wrong_value_cost"] == pytest.approx(placed_cost, rel=1e-3)
    assert shape["placed"]["minimum_is_true"] == 1.0
    assert shape["misplaced"]["wrong_value_cost"] == 0.0  # x moved to +1: the shape input draws nothing
    assert "misplaced" not in result["sources"]["position_x"]


class _Recording(torch.nn.Module):
    """A stand-in decoder that keeps every batch of inputs it is given; its logits depend on all of them."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        self.seen.append(codes.detach().clone())
        return codes.sum(1)[:, None, None, None].expand(-1, 3, 64, 64)


def test_the_through_probe_hands_the_given_sources_their_true_inputs() -> None:
    bench = load_script("benchmarks/oracle_probes.py")
    torch.manual_seed(0)
    images = torch.randint(0, 256, (40, 64, 64, 3), dtype=torch.uint8)
    sources = torch.stack([torch.arange(40) % 3, torch.arange(40) % 4], dim=1)  # "a": 3 values, "b": 4
    decoder = _Recording()
    held = torch.arange(30, 40)
    result = bench.train_through(images, sources, [3, 4], torch.arange(30), held, 1, 1, ["a", "b"], decoder, ["b"])
    train_inputs, held_inputs = decoder.seen[0], decoder.seen[1]
    grid = torch.tensor([-1, -1 / 3, 1 / 3, 1])
    assert (train_inputs[:, 1, None] - grid).abs().min(1).values.max() < 1e-6  # a grid value in every training row
    expected = sources[held, 1].float() / 3 * 2 - 1
    torch.testing.assert_close(held_inputs[:, 1], expected)  # "b": the true input of each held-out image
    assert not torch.allclose(held_inputs[:, 0], sources[held, 0].float() - 1)  # "a": the encoder's guess
    assert result["given"] == ["b"] and result["history"][-1]["accuracy"]["b"] == 1.0


def test_an_unknown_given_source_is_an_error_naming_the_file(tmp_path, monkeypatch, capsys) -> None:
    bench = load_script("benchmarks/oracle_probes.py")
    data = tmp_path / "toy.h5"
    generate_procedural(data, {"shape": 2, "scale": 2})
    monkeypatch.setattr("sys.argv", ["oracle_probes.py", "--path", str(data), "--given", "colour", "shape"])
    with pytest.raises(SystemExit) as exit_info:
        bench.main()
    assert exit_info.value.code == 2
    assert (
        f"--given: {data} has no source colour (its sources: background_color, object_color, shape"
        in capsys.readouterr().err
    )


def test_sources_the_scan_cannot_hold_are_refused_before_any_training(tmp_path, monkeypatch, capsys) -> None:
    bench = load_script("benchmarks/oracle_probes.py")
    data = tmp_path / "toy.h5"
    generate_procedural(data, {"shape": 2, "scale": 8})  # 7 steps between values: 60 scan intervals do not divide
    monkeypatch.setattr(bench, "train_encoder", lambda *args: pytest.fail("trained before the check"))
    monkeypatch.setattr("sys.argv", ["oracle_probes.py", "--path", str(data)])
    with pytest.raises(SystemExit) as exit_info:
        bench.main()
    assert exit_info.value.code == 2
    assert "61 scan points do not hold every grid value of sources sized" in capsys.readouterr().err
    assert bench.unscannable([4, 5, 4, 3, 6, 6, 5]) is None and bench.unscannable([1, 8]) is not None
