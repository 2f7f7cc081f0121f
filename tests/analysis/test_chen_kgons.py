"""Chen et al.'s k-gon critical points: the published ones, and critical in every parameter by another integrator."""

from __future__ import annotations

import pytest
import torch

from lit_superposition.analysis.chen_kgons import chen_kgon_critical_points
from lit_superposition.analysis.theory import expected_loss
from lit_superposition.errors import ConfigError


def test_the_published_critical_points_and_losses():
    # Norms and biases as Chen et al. (2023) report them (5 decimals); L(k, c) with the unused feature at 1/(2c).
    points = {p.k: p for p in chen_kgon_critical_points(7, [4, 5, 6, 7])}
    for k, norm, bias in ((5, 1.17046, -0.28230), (6, 1.32053, -0.61814), (7, 1.44839, -0.96691)):
        assert points[k].norm == pytest.approx(norm, abs=2e-5) and points[k].bias == pytest.approx(bias, abs=2e-5)
    assert points[4].norm == pytest.approx(1.0) and points[4].bias == pytest.approx(0.0, abs=1e-8)
    six = {p.k: p for p in chen_kgon_critical_points(6)}
    assert sorted(six) == [2, 3, 4, 5, 6]
    assert six[6].loss * 6 == pytest.approx(0.04819, abs=1e-5)  # their L = H / (3c), a sum over features
    assert six[5].loss * 6 == pytest.approx(0.06874 - 1 / 144, abs=1e-5)  # "5+": the unused feature at 1/12


@pytest.mark.parametrize("k", [3, 5, 6])
def test_every_parameter_is_critical_under_the_general_integrator(k):
    """Central differences of theory's exact expected loss (another code path than the closed form) in all 18 parameters."""
    point = next(p for p in chen_kgon_critical_points(6, [k]))
    W, b = point.weights(6)  # (2, 6), (6,)
    flat = torch.cat([W.flatten(), b])  # (18,)
    h = 1e-5
    shifted = flat + torch.cat([torch.eye(18), -torch.eye(18)]) * h  # (36, 18): every parameter, both ways
    loss = expected_loss(shifted[:, :12].reshape(36, 2, 6), shifted[:, 12:], 1 / 6, anticorrelated_sets=[list(range(6))])
    assert loss.method == "exact"
    gradient = (loss.per_instance[:18] - loss.per_instance[18:]) / (2 * h)  # (18,)
    assert gradient.abs().max() < 1e-6, gradient
    assert loss.per_instance.mean() == pytest.approx(point.loss, rel=1e-6)


def test_a_lone_feature_or_a_polygon_larger_than_the_features_is_refused():
    for ks in ([1], [7]):
        with pytest.raises(ConfigError, match=r"k in \[2, 6\]"):
            chen_kgon_critical_points(6, ks)
