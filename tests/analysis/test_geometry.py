"""geometry.py on hand-built weights whose geometry is known exactly."""

from __future__ import annotations

import math

import pytest
import torch

from lit_superposition.analysis import geometry


def polygon(n: int, radius: float = 1.0, rotation: float = 0.3) -> torch.Tensor:
    """One instance whose ``n`` features sit at the vertices of a regular ``n``-gon: ``(1, 2, n)``."""
    angle = torch.arange(n, dtype=torch.float64) * 2 * math.pi / n + rotation
    return (radius * torch.stack([angle.cos(), angle.sin()])).unsqueeze(0)


def rotation(theta: float) -> torch.Tensor:
    return torch.tensor([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]], dtype=torch.float64)


TETRAHEDRON = (torch.tensor([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=torch.float64).T / math.sqrt(3)).unsqueeze(0)


def test_regular_pentagon_has_five_directions_and_dimensionality_two_fifths():
    W = polygon(5, radius=1.13)
    (shape,) = geometry.classify_2d(W)
    assert (shape.n_directions, shape.name, shape.regular) == (5, "pentagon", True)
    torch.testing.assert_close(geometry.dimensionality(W), torch.full((1, 5), 0.4, dtype=torch.float64))
    assert geometry.nearest_fraction(geometry.dimensionality(W)) == [["2/5"] * 5]
    # Σ_{g≠f} (Ŵ_f·W_g)² = r² (2 cos²72° + 2 cos²144°) = 1.5 r²
    torch.testing.assert_close(geometry.interference(W), torch.full((1, 5), 1.5 * 1.13**2, dtype=torch.float64))


def test_antipodal_pairs_have_dimensionality_one_half():
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    W = torch.stack([e1, -e1, e2, -e2], dim=1).unsqueeze(0)  # two antipodal pairs: a "square"
    torch.testing.assert_close(geometry.dimensionality(W), torch.full((1, 4), 0.5))
    (shape,) = geometry.classify_2d(W)
    assert (shape.n_directions, shape.name, shape.regular) == (4, "square", True)
    one_pair = torch.stack([e1, -e1], dim=1).unsqueeze(0)
    assert geometry.classify_2d(one_pair)[0].name == "digon" and geometry.classify_2d(one_pair)[0].regular
    torch.testing.assert_close(geometry.dimensionality(one_pair), torch.full((1, 2), 0.5))


def test_unrepresented_feature_has_dimensionality_zero():
    W = polygon(5)
    W[0, :, 2] = 0.0  # not represented at all
    W[0, :, 4] *= 0.1  # below the threshold
    D = geometry.dimensionality(W)
    assert D[0, 2] == 0 and D[0, 4] == 0 and (D[0, [0, 1, 3]] > 0).all()
    assert geometry.represented(W).tolist() == [[True, True, False, True, False]]
    assert not torch.isnan(geometry.dimensionality(torch.zeros(2, 2, 3))).any()
    assert geometry.nearest_fraction(D)[0][2] == "0"
    (shape,) = geometry.classify_2d(W)
    assert shape.n_directions == 3 and shape.features == ((0,), (1,), (3,))


def test_tetrahedron_in_three_dimensions_has_dimensionality_three_quarters():
    D = geometry.dimensionality(TETRAHEDRON)
    torch.testing.assert_close(D, torch.full((1, 4), 0.75, dtype=torch.float64))
    assert geometry.nearest_fraction(D) == [["3/4"] * 4]
    assert geometry.count_directions(TETRAHEDRON) == [4]


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("theta", [0.0, 0.7, 2.0, -2.9])
def test_rotated_or_flipped_solutions_have_the_same_canonical_form(theta, flip):
    generator = torch.Generator().manual_seed(0)
    W = torch.randn(6, 2, 5, generator=generator, dtype=torch.float64)  # six arbitrary solutions
    W[1] = polygon(5)[0]
    W[2, :, 0] = 0.01  # the anchor is the first *represented* feature
    M = rotation(theta) @ (torch.diag(torch.tensor([1.0, -1.0], dtype=torch.float64)) if flip else torch.eye(2, dtype=torch.float64))
    moved = torch.einsum("xy,iyf->ixf", M, W)
    canonical = geometry.canonicalize_2d(W)
    torch.testing.assert_close(geometry.canonicalize_2d(moved), canonical)
    # The anchor lies on +x, the first feature off its axis points up, and lengths are unchanged.
    assert canonical[1, 1, 0].abs() < 1e-12 and canonical[1, 0, 0] > 0 and canonical[1, 1, 1] > 0
    torch.testing.assert_close(geometry.feature_norms(canonical), geometry.feature_norms(W))


def test_norms_frobenius_and_dimensions_per_feature():
    W = torch.stack([polygon(5, radius=2.0)[0], torch.cat([polygon(4)[0], torch.zeros(2, 1, dtype=torch.float64)], 1)])
    torch.testing.assert_close(geometry.feature_norms(W)[0], torch.full((5,), 2.0, dtype=torch.float64))
    torch.testing.assert_close(geometry.frobenius_sq(W), torch.tensor([20.0, 4.0], dtype=torch.float64))
    torch.testing.assert_close(geometry.dimensions_per_feature(W), torch.tensor([0.1, 0.5], dtype=torch.float64))


def test_features_on_one_direction_count_once():
    W = torch.cat([polygon(5), polygon(5)[:, :, :1] * 0.9], dim=2)  # a sixth feature on the first vertex
    (shape,) = geometry.classify_2d(W)
    assert shape.n_directions == 5 and shape.name == "pentagon" and (0, 5) in shape.features
    assert geometry.classify_2d(polygon(6))[0].name == "hexagon"
    assert geometry.classify_2d(polygon(7))[0].name == "heptagon"
    assert geometry.classify_2d(torch.zeros(1, 2, 3))[0].name == "none"
    assert geometry.classify_2d(polygon(1))[0].name == "monogon"


def test_irregular_polygons_are_not_regular():
    square = torch.tensor([[1.0, 0.0, -1.0, 0.0], [0.0, 1.0, 0.0, -1.0]]).unsqueeze(0)
    uneven = torch.tensor([[1.0, 0.0, -1.0, 0.3], [0.0, 1.0, 0.0, -1.0]]).unsqueeze(0)
    long = square.clone()
    long[0, :, 0] *= 1.5
    assert geometry.classify_2d(square)[0].regular
    assert not geometry.classify_2d(uneven)[0].regular
    assert not geometry.classify_2d(long)[0].regular
    assert geometry.classify_2d(uneven)[0].name == "square"


def test_nearest_fraction_labels():
    assert geometry.nearest_fraction(0.99) == "1"
    assert geometry.nearest_fraction(0.68) == "2/3"
    assert geometry.nearest_fraction(0.37) == "3/8"
    assert geometry.nearest_fraction([[0.5, 0.0]]) == [["1/2", "0"]]
    # Near no fraction: the value itself, not the nearest fraction (0.17 is 0.08 from 1/4).
    assert geometry.nearest_fraction(0.17) == "0.17" and geometry.nearest_fraction(0.21) == "0.21"
    assert geometry.nearest_fraction(0.254) == "1/4"


def test_two_orthogonal_features_are_not_a_digon():
    orthogonal = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # (1, d_hidden=2, n_features=2)
    antipodal = torch.tensor([[[1.0, -1.0], [0.0, 0.0]]])
    assert geometry.classify_2d(orthogonal)[0].name == "orthogonal pair"
    assert geometry.classify_2d(antipodal)[0].name == "digon"


def test_batched_over_instances():
    W = torch.cat([polygon(5), TETRAHEDRON[:, :2, :].new_zeros(1, 2, 5) + polygon(5) * 0.1])
    assert [s.name for s in geometry.classify_2d(W)] == ["pentagon", "none"]
    assert geometry.dimensionality(W).shape == (2, 5)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="d_hidden = 2"):
        geometry.canonicalize_2d(TETRAHEDRON)
    with pytest.raises(ValueError, match="shape"):
        geometry.feature_norms(torch.zeros(2, 3))
