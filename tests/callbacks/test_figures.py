"""The evaluation figures a researcher reads: labelled reconstructions, traversals laid out to the pixel,
latent labels with their source and NMI, the console's per-source summary, varied samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tripod_pl.callbacks import figures
from tripod_pl.callbacks.evaluation import figure_samples, source_summary

NMI = np.array([[0.9, 0.1, 0.0], [0.2, 0.3, 0.7], [0.0, 0.45, 0.1]])
ACTIVE = np.array([True, False, True])
NAMES = ["shape", "scale", "hue"]


def _texts(fig) -> list[str]:
    ax = fig.axes[0]
    return [t.get_text() for t in ax.texts] + [t.get_text() for t in ax.get_yticklabels()] + [ax.get_title()]


def test_latent_labels_name_the_best_source_and_its_nmi():
    assert figures.latent_labels(NMI, ACTIVE, NAMES) == ["z0: shape (NMI 0.90)", "z1: inactive", "z2: scale (NMI 0.70)"]


def test_source_summary_splits_captured_from_missed_sources_by_best_active_latent():
    line = source_summary(NMI, ACTIVE, NAMES)
    # hue's best latent z1 (0.45) is inactive: its best active one is z2 (0.10)
    assert line == "sources captured 2/3 (NMI >= 0.5): shape 0.90 (z0), scale 0.70 (z2); missed: hue 0.10 (z2)"
    assert "collapsed" not in line
    none_active = source_summary(NMI, np.zeros(3, bool), NAMES)
    assert none_active.startswith("sources captured 0/3 (NMI >= 0.5): none; missed: shape –, scale –, hue –")
    assert none_active.endswith(
        "hue – -- no latent is active: the codes do not vary over the evaluation images (a collapsed encoder)"
    )


def test_figure_samples_are_seeded_distinct_and_spread_over_the_subset():
    a, b = figure_samples(2000, 8), figure_samples(2000, 8)
    assert torch.equal(a, b) and len(set(a.tolist())) == 8
    assert a.max() - a.min() > 500  # not the first rows of a file-ordered subset
    assert len(figure_samples(5, 8)) == 5


def test_reconstruction_figure_labels_its_rows_and_reports_the_psnr():
    x = torch.rand(10, 3, 8, 8) * 2 - 1
    fig = figures.reconstruction_figure(x, x.clamp(-0.5, 0.5), psnr=torch.tensor([20.0] * 9 + [30.0]), ncols=5)
    texts = _texts(fig)
    assert texts.count("original") == 2 and texts.count("reconstruction") == 2  # two row pairs of five
    assert "PSNR 21.0 dB (min 20.0, max 30.0)" in texts[-1]


def test_traversal_grid_starts_with_the_input_shows_values_and_leaves_no_empty_margin():
    s, d, t, h = 2, 3, 4, 8
    images = torch.zeros(s, d, t, 3, h, h)
    originals = torch.ones(s, 3, h, h)
    values = torch.linspace(-1, 1, t).expand(d, t)
    fig = figures.traversal_grid(
        images, ["z0: a (NMI 0.90)", "z1: b (NMI 0.80)", "z2: c (NMI 0.70)"], values, originals
    )
    ax = fig.axes[0]
    canvas = ax.get_images()[0].get_array()
    block = (t + 1) * (h + 1) - 1
    assert canvas.shape[1] == s * block + (s - 1) * 8
    np.testing.assert_allclose(canvas[9 : 9 + h, :h], 1.0)  # the input (white) in the first column
    np.testing.assert_allclose(canvas[9 : 9 + h, h + 1 : 2 * h + 1], 0.5)  # then the traversal (grey)
    assert sorted({t.get_text() for t in ax.texts}) == sorted({f"{v:.2g}" for v in values[0].tolist()})
    assert len(ax.texts) == s * d * t
    fig.canvas.draw()  # the axes box has the canvas' aspect: the image fills it, no letterboxing
    box = ax.get_window_extent()
    assert box.width / box.height == pytest.approx(canvas.shape[1] / canvas.shape[0], rel=0.02)
    with pytest.raises(ValueError, match="values"):
        figures.traversal_grid(images, ["a", "b", "c"], torch.zeros(2, t))


def test_histogram_edges_give_one_bin_per_quantized_value_else_equal_bins():
    np.testing.assert_allclose(figures.histogram_edges(np.array([-1.0, 0.0, 1.0, 0.0])), [-1.5, -0.5, 0.5, 1.5])
    np.testing.assert_allclose(figures.histogram_edges(np.array([2.0, 2.0])), [1.5, 2.5])
    edges = figures.histogram_edges(np.linspace(0, 1, 100), bins=4)
    np.testing.assert_allclose(edges, [0, 0.25, 0.5, 0.75, 1])


def test_pairwise_latent_histograms_show_each_pair_of_active_latents_once_with_all_samples():
    rng = np.random.default_rng(0)
    z = np.stack([rng.integers(0, 3, 50) - 1.0, np.zeros(50), rng.normal(size=50), rng.normal(size=50)], axis=1)
    active = np.array([True, False, True, True])
    fig = figures.pairwise_latent_histograms(z, active, bins=8)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [(ax.get_xlabel(), ax.get_ylabel()) for ax in panels] == [("z0", "z2"), ("z0", "z3"), ("z2", "z3")]
    first = panels[0].collections[0].get_array()  # 1 + log10(count) per non-empty bin, 3 x 8 bins
    assert first.size == 3 * 8
    assert np.sum(10 ** (first.compressed() - 1)) == pytest.approx(50)
    single = figures.pairwise_latent_histograms(z, np.array([True, False, False, False]))
    assert "1 active" in single.texts[0].get_text()


def test_hessian_figure_plots_the_diagonal_share_and_mass_per_activation():
    stats = {
        f"eval/hessian/{name}/{kind}/{stat}": value
        for name, value in (("cond", 0.9), ("block0", 0.4))
        for kind in ("raw", "rescaled")
        for stat in ("diagonal_share", "diagonal_mean", "off_diagonal_mean")
    }
    stats["eval/infom"] = 0.5
    fig = figures.hessian_figure(stats)
    share, mass = fig.axes[:2]
    assert [t.get_text() for t in share.get_xticklabels()] == ["cond", "block0"]
    assert [p.get_height() for p in share.patches] == pytest.approx([0.9, 0.4, 0.9, 0.4])
    assert mass.get_yscale() == "log"
    with pytest.raises(ValueError, match="hessian"):
        figures.hessian_figure({"eval/infom": 0.5})


def test_traversal_latents_sweep_one_latent_per_row_shared_or_per_sample():
    latents = torch.arange(6.0).reshape(2, 3)  # samples [0, 1, 2] and [3, 4, 5]
    shared = torch.tensor([[-1.0, 1.0], [7.0, 8.0]])  # latent 2 swept over -1, 1; latent 0 over 7, 8
    z = figures.traversal_latents(latents, shared, [2, 0])
    assert z.shape == (2, 2, 2, 3)
    assert z[1, 0].tolist() == [[3.0, 4.0, -1.0], [3.0, 4.0, 1.0]]
    assert z[0, 1].tolist() == [[7.0, 1.0, 2.0], [8.0, 1.0, 2.0]]
    own = torch.stack([shared, shared + 10])  # sample 1 sweeps its own values
    z = figures.traversal_latents(latents, own, [2, 0])
    assert z[1, 0].tolist() == [[3.0, 4.0, 9.0], [3.0, 4.0, 11.0]] and z[0, 0].tolist() == [
        [0.0, 1.0, -1.0],
        [0.0, 1.0, 1.0],
    ]
    with pytest.raises(ValueError, match="values must be"):
        figures.traversal_latents(latents, own[:1], [2, 0])
    with pytest.raises(ValueError, match="2 rows of values for 1"):
        figures.traversal_latents(latents, shared, [2])
