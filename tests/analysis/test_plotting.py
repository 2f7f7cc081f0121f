"""plotting.py returns matplotlib figures that draw."""

from __future__ import annotations

import io

import torch
from matplotlib.figure import Figure

from lit_superposition.analysis import plotting


def _draws(fig: Figure) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    assert buffer.tell() > 1000


def test_polygon_grid_draws_every_chosen_instance():
    W = torch.randn(5, 2, 6)
    fig = plotting.polygon_grid(W, instances=[0, 2, 4])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert len(texts) == 3 and texts[0].startswith("0:") and texts[2].startswith("4:")
    _draws(fig)


def test_wtw_grid_has_a_heatmap_and_norm_bars_per_instance():
    fig = plotting.wtw_grid(torch.randn(3, 4, 7))
    assert len(fig.axes) == 3 * 2 + 1  # heatmap + bars per instance, one colour bar
    _draws(fig)


def test_feature_geometry_plot_and_sweep_detection():
    p = (20 ** -torch.linspace(0, 1, 6)).unsqueeze(1).expand(6, 5)
    assert plotting.is_probability_sweep(p)
    assert not plotting.is_probability_sweep(torch.full((6, 5), 0.05))
    assert not plotting.is_probability_sweep(torch.rand(6, 5))
    fig = plotting.feature_geometry(torch.randn(6, 3, 5), p)
    assert len(fig.axes) == 2 and fig.axes[1].get_xscale() == "log"
    _draws(fig)


def test_feature_colors_cover_many_features():
    assert plotting.feature_colors(5).shape == (5, 4)
    assert len({tuple(c) for c in plotting.feature_colors(40)}) == 40
