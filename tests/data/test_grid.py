"""The phase grid: every instance's documented (importance, probability), repeats, composition, bad grids."""

from __future__ import annotations

import pytest
import torch

from lit_superposition.data import FeatureRamp, GridAxis, PhaseGrid, SparseFeatureDataModule
from lit_superposition.errors import ConfigError
from lit_superposition.module import LitToyModel


def _grid(probability_feature=None, **importance):
    importance = {"feature": 1, "start": 0.1, "end": 10.0, "points": 3, **importance}
    return PhaseGrid(GridAxis(**importance), GridAxis(start=1.0, end=0.01, points=4, feature=probability_feature))


def test_every_instance_gets_its_documented_point_with_repeats():
    grid, repeats = _grid(), 2
    data = SparseFeatureDataModule(24, 3, feature_probability=0.5, repeats=repeats, grid=grid)
    module = LitToyModel(24, 3, d_hidden=2, importance=0.7, repeats=repeats, grid=grid)
    importance_axis, probability_axis = [0.1, 1.0, 10.0], [1.0, 0.01 ** (1 / 3), 0.01 ** (2 / 3), 0.01]
    for i in range(24):
        point = i // repeats
        expected_importance = importance_axis[point // 4]
        expected_probability = [1.0, 0.01 ** (1 / 3), 0.01 ** (2 / 3), 0.01][point % 4]
        assert module.importance[i, 1].item() == pytest.approx(expected_importance, rel=1e-6)
        assert module.importance[i, [0, 2]].tolist() == pytest.approx([0.7, 0.7])  # the base spec stays
        assert data.feature_probability[i].tolist() == pytest.approx([expected_probability] * 3, rel=1e-6)
    points = grid.points()
    assert points.shape == (12, 2)
    assert points[:, 0].unique().tolist() == pytest.approx(importance_axis)
    assert points[:, 1].unique().sort(descending=True).values.tolist() == pytest.approx(probability_axis, rel=1e-6)


def test_a_one_feature_probability_axis_composes_with_a_base_spec():
    grid = _grid(probability_feature=1)
    data = SparseFeatureDataModule(12, 3, feature_probability=FeatureRamp(0.2, 0.05), grid=grid)
    assert data.feature_probability[:, 0].tolist() == pytest.approx([0.2] * 12)
    assert data.feature_probability[:, 2].tolist() == pytest.approx([0.05] * 12)
    assert data.feature_probability[:4, 1].tolist() == pytest.approx([1.0, 0.01 ** (1 / 3), 0.01 ** (2 / 3), 0.01], rel=1e-6)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: _grid(start=0.0), "start and end must be > 0"),
        (lambda: _grid(end=-1.0), "start and end must be > 0"),
        (lambda: _grid(points=0), "at least one point"),
        (lambda: _grid(feature=None), "must name the feature"),
        (lambda: PhaseGrid(GridAxis(0.1, 10.0, 3, 1), GridAxis(2.0, 0.1, 3)), "must lie in (0, 1]"),
    ],
)
def test_bad_grids_raise_one_line(make, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("]", r"\]")) as error:
        make()
    assert "\n" not in str(error.value)


def test_a_grid_that_does_not_match_the_instances_says_so():
    with pytest.raises(ConfigError, match=r"3 x 4 = 12 points, so n_instances must be points x repeats = 12 x 2 = 24, got 12"):
        SparseFeatureDataModule(12, 3, repeats=2, grid=_grid())
    with pytest.raises(ConfigError, match="feature 5 out of range"):
        SparseFeatureDataModule(12, 3, grid=_grid(feature=5))


def test_the_axes_reach_the_report_by_name():
    described = _grid().describe()
    assert described["feature"] == 1 and described["probability"]["feature"] is None
    assert described["importance"]["values"] == pytest.approx([0.1, 1.0, 10.0])
    assert torch.tensor(described["probability"]["values"]).shape == (4,)


@pytest.mark.parametrize("instance_data", ["shared", "independent"])
def test_each_point_draws_at_its_own_probability_in_both_data_modes(instance_data):
    grid = PhaseGrid(GridAxis(0.5, 2.0, 2, feature=0), GridAxis(0.8, 0.05, 3))
    data = SparseFeatureDataModule(12, 2, repeats=2, grid=grid, batch_size=4096, instance_data=instance_data)
    x = torch.cat([data.make_batch(step) for step in range(8)], dim=1)  # (12, 8 * 4096, 2)
    frequency = (x != 0).double().mean(dim=1)  # (12, 2)
    p = data.feature_probability.double()
    standard_error = (p * (1 - p) / x.shape[1]).sqrt()
    assert ((frequency - p).abs() <= 4 * standard_error).all()
    assert p[:, 0].tolist() == pytest.approx([0.8, 0.8, 0.2, 0.2, 0.05, 0.05] * 2, rel=1e-6)
