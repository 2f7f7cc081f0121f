"""Phase classification on hand-built weights (1-D and 2-D), theory's candidates and predicted phases."""

from __future__ import annotations

import math

import pytest
import torch

from lit_superposition.analysis.phases import candidate_directions, classify_phases, feature_interference, theoretical_phases


def _stack(*columns_per_instance):
    return torch.tensor(columns_per_instance, dtype=torch.float64)  # (n_instances, d_hidden, n_features)


def test_one_dimension_each_phase():
    W = _stack(
        [[1.0, 0.1]],  # feature 1 too short: not represented
        [[0.0, 1.0]],  # feature 1 alone on the only dimension: dedicated
        [[1.0, -1.0]],  # antipodal pair: superposition
        [[0.2, 1.0]],  # a weak neighbour: interference 0.04 < 0.1, still dedicated
    )
    assert classify_phases(W, feature=1) == ["not_represented", "dedicated", "superposition", "dedicated"]
    assert feature_interference(W, 1).tolist() == pytest.approx([1.0, 0.0, 1.0, 0.04])


def test_two_dimensions_each_phase():
    c, s = math.cos(2 * math.pi / 3), math.sin(2 * math.pi / 3)
    W = _stack(
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.3]],  # feature 2 below the norm threshold
        [[1.0, -1.0, 0.0], [0.0, 0.0, 1.0]],  # feature 2 on its own axis, 0 and 1 antipodal on the other
        [[1.0, c, c], [0.0, s, -s]],  # a triangle: feature 2 shares
        [[1.0, 0.0, -1.0], [0.0, 1.0, 0.0]],  # feature 2 antipodal to feature 0
    )
    assert classify_phases(W, feature=2) == ["not_represented", "dedicated", "superposition", "superposition"]
    assert classify_phases(W, feature=0)[1] == "superposition"  # the antipodal partner shares too


def test_thresholds_are_parameters():
    W = _stack([[0.4, 0.0]], [[1.0, 0.5]])
    assert classify_phases(W, 0) == ["not_represented", "superposition"]
    assert classify_phases(W, 0, norm_threshold=0.3, interference_threshold=0.3) == ["dedicated", "dedicated"]


def test_bad_input_raises():
    with pytest.raises(ValueError, match="out of range"):
        classify_phases(torch.zeros(1, 1, 2), feature=2)
    with pytest.raises(ValueError, match="n_features <= 4"):
        candidate_directions(6, 2)


def test_the_paper_candidates_for_two_features_in_one_dimension():
    layouts = {tuple(U.flatten().tolist()) for U in candidate_directions(2, 1)}
    # Up to the sign of the axis: either feature alone, the antipodal pair, the pair sharing one direction.
    assert layouts == {(0.0, 1.0), (1.0, 0.0), (1.0, -1.0), (1.0, 1.0)} or layouts == {
        (0.0, -1.0), (-1.0, 0.0), (-1.0, 1.0), (-1.0, -1.0)}
    triangle = candidate_directions(3, 2)[-1]
    assert (triangle.norm(dim=0) - 1).abs().max() < 1e-12 and triangle.sum(dim=1).abs().max() < 1e-12


def test_theory_predicts_the_paper_corners_for_two_features_in_one_dimension():
    # (importance of feature 1, p of both): dense and unimportant, dense and important, sparse and equal.
    points = [(0.1, 1.0), (10.0, 1.0), (1.0, 0.01)]
    p = torch.tensor([[q, q] for _, q in points], dtype=torch.float64)
    importance = torch.tensor([[1.0, i] for i, _ in points], dtype=torch.float64)
    predicted, loss, W = theoretical_phases(p, importance, d_hidden=1, feature=1)
    assert predicted == ["not_represented", "dedicated", "superposition"]
    assert (loss > 0).all() and W.shape == (3, 1, 2)
    # The linear model never superposes: at the sparse equal point it keeps one feature.
    linear, _, _ = theoretical_phases(p, importance, d_hidden=1, feature=1, variant="linear_output")
    assert "superposition" not in linear
