"""The figures show what they claim: one panel per instance, each feature in its colour, labelled axes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb, to_rgba
from matplotlib.figure import Figure

from lit_superposition.analysis import plotting


def _pixels(fig: Figure) -> np.ndarray:
    """The rendered figure as ``(height, width, 3)`` floats in [0, 1]."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3] / 255.0


def _count(pixels: np.ndarray, colour, tolerance: float = 0.03) -> int:
    return int((np.abs(pixels - np.asarray(colour)).max(axis=-1) < tolerance).sum())


def test_polygon_grid_draws_every_chosen_instance_with_one_colour_per_feature():
    W = torch.randn(5, 2, 6)
    fig = plotting.polygon_grid(W, instances=[0, 2, 4])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert len(texts) == 3 and texts[0].startswith("0:") and texts[2].startswith("4:")
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == [f"f{f}" for f in range(6)]
    pixels = _pixels(fig)
    for colour in plotting.feature_colors(6):
        assert _count(pixels, colour[:3]) > 20, colour  # every feature's line is drawn, in its colour


def test_a_blank_polygon_grid_would_fail_the_colour_check():
    # The check above can fail: with every feature at the origin no feature colour is drawn.
    fig = plotting.polygon_grid(torch.zeros(1, 2, 3), canonicalize=False)
    pixels = _pixels(fig)
    assert _count(pixels, plotting.feature_colors(3)[1][:3]) < 20


def test_wtw_grid_has_a_heatmap_and_norm_bars_per_instance():
    W = torch.eye(4).unsqueeze(0).repeat(3, 1, 1)  # WᵀW = identity: red diagonal, white elsewhere
    W[1, 0, 1] = -1.0  # a negative overlap in instance 1: blue
    fig = plotting.wtw_grid(W)
    assert len(fig.axes) == 3 * 2 + 1  # heatmap + bars per instance, one colour bar
    heatmaps = [ax for ax in fig.axes if ax.images]
    assert len(heatmaps) == 3
    gram = heatmaps[1].images[0].get_array()
    assert gram[0, 1] < 0 and gram[0, 0] > 0


def test_neuron_weights_has_one_labelled_panel_per_instance_with_top_shares():
    W = torch.zeros(2, 3, 4)
    W[0, 0, 2] = 1.0  # neuron 0 of instance 0: monosemantic on feature 2
    W[1, 1, :2] = 1.0  # neuron 1 of instance 1: two features
    fig = plotting.neuron_weights(W, titles=["dense", "sparse"])
    panels = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in panels] == ["dense", "sparse"]
    assert panels[0].get_xlabel() == "feature" and panels[0].get_ylabel() == "neuron"
    assert [t.get_text() for t in panels[0].get_yticklabels()][0] == "0 (1.00)"
    assert [t.get_text() for t in panels[1].get_yticklabels()][1] == "1 (0.50)"
    assert panels[0].images[0].get_array().shape == (3, 4)  # rows neurons, columns features


def test_dimensionality_sweep_plot_and_sweep_detection():
    p = (20 ** -torch.linspace(0, 1, 6)).unsqueeze(1).expand(6, 5)
    assert plotting.is_probability_sweep(p)
    assert not plotting.is_probability_sweep(torch.full((6, 5), 0.05))
    assert not plotting.is_probability_sweep(torch.rand(6, 5))
    W = torch.eye(3, 5).unsqueeze(0).repeat(6, 1, 1)  # 3 dedicated features: 1 dimension per feature
    fig = plotting.dimensionality_sweep(W, p)
    top, bottom = fig.axes
    assert bottom.get_xscale() == "log" and "1 / feature probability" in bottom.get_xlabel()
    np.testing.assert_allclose(top.lines[0].get_ydata(), np.ones(6))  # d_hidden / ‖W‖²_F = 3 / 3
    np.testing.assert_allclose(np.sort(bottom.collections[0].get_offsets()[:, 1])[-18:], np.ones(18))


def test_feature_colors_cover_many_features():
    assert plotting.feature_colors(5).shape == (5, 4)
    assert np.allclose(plotting.feature_colors(3)[0][:3], to_rgb("tab:blue"))
    assert len({tuple(c) for c in plotting.feature_colors(40)}) == 40


def test_feature_curves_have_one_legend_entry_and_colour_per_feature():
    curves = {f: ([0, 100, 200], [1.0 + f, 0.5 + f, 0.2 + f]) for f in range(4)}
    fig = plotting.feature_curves({"loss per feature": curves, "feature norm": curves}, title="instance 1 (patched)")
    panels = fig.axes
    assert [ax.get_title() for ax in panels] == ["loss per feature", "feature norm"]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [f"feature {f}" for f in range(4)]
    colours = [line.get_color() for line in panels[0].lines]
    assert len(set(map(str, colours))) == 4
    np.testing.assert_allclose(to_rgb(colours[2]), plotting.feature_colors(4)[2][:3])


def test_feature_bars_colour_by_interference():
    W = torch.zeros(2, 2, 3)
    W[0, 0, 0] = W[0, 1, 1] = 1.0  # instance 0: two dedicated features, no interference
    W[1, 0, 0], W[1, 0, 1] = 1.0, -1.0  # instance 1: an antipodal pair, interference 1 each
    fig = plotting.feature_bars(W, titles=["dedicated", "antipodal"])
    ax = fig.axes[0]
    bars = ax.patches  # row-major: instance 0's features, then instance 1's
    assert len(bars) == 6 and [t.get_text() for t in ax.get_yticklabels()] == ["dedicated", "antipodal"]
    assert bars[0].get_width() == pytest.approx(1.0) and bars[2].get_width() == pytest.approx(0.0)
    assert bars[0].get_facecolor() != bars[3].get_facecolor()  # no interference vs interference


def test_feature_bars_grey_out_what_is_not_represented_and_label_the_colour_in_mathtext():
    W = torch.zeros(1, 2, 3)
    W[0, 0, 0] = 1.0
    W[0, 0, 1] = 0.3  # along feature 0 but below the threshold: not represented, so not "sharing"
    W[0, 1, 2] = 1.0
    fig = plotting.feature_bars(W, threshold=0.5)
    bars = fig.axes[0].patches
    assert bars[1].get_facecolor() == pytest.approx(to_rgba("0.75"))
    assert bars[0].get_facecolor() != pytest.approx(to_rgba("0.75"))
    label = fig.axes[1].get_ylabel()
    assert label.count("$") == 2 and "_{j" in label  # markup matplotlib renders (mathtext), not shown raw
    FigureCanvasAgg(fig).draw()  # and it parses


def test_loss_by_swept_colours_by_geometry():
    fig = plotting.loss_by_swept([1.0, 0.5, 0.1, 0.05], [0.1, 0.05, 0.01, 0.005], ["digon", "square", "pentagon", "pentagon"], "p")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["digon", "square", "pentagon"]
    assert [len(c.get_offsets()) for c in ax.collections] == [1, 1, 2]
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "p"


def test_kgon_losses_marks_the_optimum_and_overlays_learned_instances():
    from lit_superposition.analysis.theory import KGonSolution

    solutions = [KGonSolution(k, loss, 1.0, 0.0, tuple(range(k))) for k, loss in [(4, 0.006), (5, 0.0048), (6, 0.0047)]]
    fig = plotting.kgon_losses(solutions, [{"k": 5, "loss": 0.00482}, {"k": 6, "loss": 0.0047}])
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "theory optimum (k = 6)" in labels and "learned (2 instances, at their directions)" in labels
    assert list(ax.lines[0].get_ydata()) == [0.006, 0.0048, 0.0047]


def test_crossover_figure_draws_both_families_and_the_crossings():
    entry = {"feature": 0, "relative_density": [0.1, 0.3, 1.0],
             "families": {"pentagon": {"learned": [None, 0.0013, 0.0018], "theory": [0.0013, 0.0014, 0.0018]},
                          "two digons": {"learned": [0.0007, 0.0014, 0.0035], "theory": [0.0007, 0.0014, 0.0035]}},
             "xavier_best": [{"geometry": "square", "loss": 0.0007}, None, {"geometry": "pentagon", "loss": 0.0018}],
             "crossover_density": 0.27, "theory_crossover_density": 0.33}
    fig = plotting.crossover(entry)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert {"pentagon: theory", "pentagon: trained from template", "two digons: theory", "best Xavier repeat",
            "learned curves cross (0.27)", "theory curves cross (0.33)"} <= set(labels)
    assert fig.axes[0].get_xscale() == "log"
