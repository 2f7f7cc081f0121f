"""The symmetric k-gon family in a 2-d hidden space (``d_hidden = 2``, ReLU output): k features on a regular polygon
with one norm and one bias, every other feature at its best constant output ``E[x_f] = p_f/2``. Builds the template
weights, gives their exact expected loss, and optimizes norm and bias, so a learned geometry can be placed against the
best of its kind (an optimum or a basin).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from lit_superposition.analysis.theory import checks, solver
from lit_superposition.analysis.theory.checks import DTYPE
from lit_superposition.analysis.theory.population_loss import expected_loss
from lit_superposition.errors import ConfigError


@dataclass(frozen=True)
class KGonSolution:
    """A regular k-gon template with its optimized norm and bias.

    Attributes:
        k: Number of features on the polygon (1: a single feature on a ray, 2: an antipodal pair).
        loss: Per-instance expected loss (mean over all features) at the optimum.
        norm: ``‖W_f‖`` of the polygon features.
        bias: ``b_f`` of the polygon features.
        features: Which features sit on the polygon, in angular order.
    """

    k: int
    loss: float
    norm: float
    bias: float
    features: tuple[int, ...] = ()


def _template_batch(
    layouts: list[tuple[int, ...]], n_features: int, norms: Tensor, biases: Tensor, ignored_bias: Tensor
) -> tuple[Tensor, Tensor]:
    """Polygon templates, one per layout: W ``(B, 2, n_features)``, b ``(B, n_features)``; differentiable."""
    directions = torch.zeros(len(layouts), 2, n_features, dtype=DTYPE)
    on = torch.zeros(len(layouts), n_features, dtype=torch.bool)
    for row, features in enumerate(layouts):
        angles = torch.arange(len(features), dtype=DTYPE) * (2 * math.pi / len(features))
        directions[row, :, list(features)] = torch.stack([angles.cos(), angles.sin()])
        on[row, list(features)] = True
    W = norms[:, None, None] * directions
    b = torch.where(on, biases.unsqueeze(1), ignored_bias.unsqueeze(0))
    return W, b


def kgon_weights(
    k: int, n_features: int, norm: float, bias: float, ignored_bias=0.0, *, features: Sequence[int] | None = None
) -> tuple[Tensor, Tensor]:
    """A regular k-gon in a 2-d hidden space.

    Feature ``features[j]`` (default ``j``) sits at angle ``2πj/k`` with ``‖W_f‖ = norm`` and ``b_f = bias``; every
    other feature has ``W_f = 0`` and ``b_f = ignored_bias``. Its output is then the constant ``ReLU(b_f)``, best
    at ``E[x_f] = p_f/2`` for (importance-weighted) MSE, which is what :func:`template_loss` uses.

    Args:
        k: Features on the polygon (1: a ray, 2: an antipodal pair).
        n_features: Total number of features.
        norm: Norm of the polygon features (a float, or a 0-d tensor to differentiate through).
        bias: Bias of the polygon features (likewise).
        ignored_bias: Scalar or ``(n_features,)`` bias of the other features.
        features: Which features sit on the polygon, in angular order.

    Returns:
        ``W`` ``(2, n_features)`` and ``b`` ``(n_features,)``, float64.
    """
    layout = checks.check_polygon(k, n_features, features)
    ignored = checks.per_feature(ignored_bias, "ignored_bias", n_features)
    # Tensors keep their autograd graph, so the loss can be differentiated in norm and bias.
    norms, biases = checks.as_float64(norm).reshape(1), checks.as_float64(bias).reshape(1)
    W, b = _template_batch([layout], n_features, norms, biases, ignored)
    return W[0], b[0]


def template_loss(
    k: int,
    feature_probability,
    importance=1.0,
    norm: float = 1.0,
    bias: float = 0.0,
    features: Sequence[int] | None = None,
) -> float:
    """Per-instance expected loss (ReLU output, mean over all features) of a k-gon template.

    Args:
        k: Features on the polygon.
        feature_probability: Per-feature list (its length is ``n_features``); may be non-uniform.
        importance: Scalar or per-feature list.
        norm: Norm of the polygon features.
        bias: Bias of the polygon features.
        features: Which features sit on the polygon (default the first ``k``).

    Returns:
        The loss; the unused features get their best constant output ``p_f/2``.
    """
    p = checks.per_feature(feature_probability, "feature_probability")
    imp = checks.per_feature(importance, "importance", p.shape[0])
    W, b = kgon_weights(k, p.shape[0], norm, bias, p / 2, features=features)
    return expected_loss(W, b, p, imp).per_instance.item()


# Starting points: every layout starts from the best of this (norm, bias) grid.
_GRID_NORMS = np.linspace(0.6, 2.0, 8)
_GRID_BIASES = np.linspace(-1.6, 0.2, 8)
_MAX_ITERATIONS = 100


def _optimize_layouts(layouts: list[tuple[int, ...]], p: Tensor, imp: Tensor) -> list[KGonSolution]:
    """Optimize norm and bias of several polygon layouts at once.

    A coarse grid of ``(norm, bias)`` starting points (one batched evaluation) picks the best start of each
    layout; then :func:`~lit_superposition.analysis.theory.solver.minimize` refines every layout by damped Newton
    steps, all layouts side by side.

    Args:
        layouts: The features of each polygon, in angular order.
        p: ``(n_features,)``.
        imp: ``(n_features,)``.
    """
    n_features = p.shape[0]
    checks.check_probability(p)
    checks.check_importance(imp)
    ignored = p / 2  # the best constant output of an unused feature

    def losses(theta: Tensor, runs: list[tuple[int, ...]]) -> Tensor:
        W, b = _template_batch(runs, n_features, theta[:, 0], theta[:, 1], ignored)  # theta: (B, 2) norm, bias
        return expected_loss(W, b, p, imp).per_instance  # (B,)

    grid = torch.cartesian_prod(torch.as_tensor(_GRID_NORMS), torch.as_tensor(_GRID_BIASES))  # (G, 2)
    with torch.no_grad():
        on_grid = losses(grid.repeat(len(layouts), 1), [lay for lay in layouts for _ in range(len(grid))])
    theta = grid[on_grid.view(len(layouts), -1).argmin(1)]  # (n_layouts, 2): best start per layout
    theta = solver.minimize(lambda x: losses(x, layouts), theta, _MAX_ITERATIONS)  # (n_layouts, 2)
    solutions = []
    for layout, (norm, bias) in zip(layouts, theta.tolist()):
        norm = abs(norm)  # W and -W give the same model
        # Report the loss exactly as expected_loss gives it for this single template.
        loss = template_loss(len(layout), p, imp, norm, bias, layout)
        solutions.append(KGonSolution(len(layout), loss, norm, bias, layout))
    return solutions


def optimize_template(
    k: int, feature_probability, importance=1.0, features: Sequence[int] | None = None
) -> KGonSolution:
    """Optimize the norm and bias of one k-gon template for a per-feature (possibly non-uniform) ``p``.

    Args:
        k: Features on the polygon.
        feature_probability: Per-feature list (its length is ``n_features``).
        importance: Scalar or per-feature list.
        features: Which features sit on the polygon (default the first ``k``).

    Returns:
        The :class:`KGonSolution`; its loss is :func:`template_loss` at the optimum.
    """
    p = checks.per_feature(feature_probability, "feature_probability")
    imp = checks.per_feature(importance, "importance", p.shape[0])
    layout = checks.check_polygon(k, p.shape[0], features)
    return _optimize_layouts([layout], p, imp)[0]


def kgon_solutions(n_features: int, feature_probability: float, importance: float = 1.0, ks=None) -> list[KGonSolution]:
    """Optimal regular k-gons (norm and bias optimized) for uniform ``p`` and importance, one per ``k``.

    The objective is :func:`expected_loss` (ReLU output, mean over all ``n_features``) of the template with features
    ``0..k-1`` on the polygon and the others at their best constant ``p/2``; each ``k`` starts from the best point of
    a coarse (norm, bias) grid and is refined by damped Newton steps
    (:func:`~lit_superposition.analysis.theory.solver.minimize`), all ``k`` at once.

    Args:
        n_features: Total number of features.
        feature_probability: A scalar ``p``.
        importance: A scalar importance.
        ks: Which ``k`` to solve (default ``1..n_features``).

    Returns:
        One :class:`KGonSolution` per ``k``, in the order of ``ks``.
    """
    for name, value in (("feature_probability", feature_probability), ("importance", importance)):
        if np.ndim(value) != 0:
            raise ConfigError(f"kgon_solutions needs a scalar {name}; use optimize_template for per-feature values")
    ks = list(range(1, n_features + 1)) if ks is None else [int(k) for k in ks]
    layouts = [checks.check_polygon(k, n_features, None) for k in ks]
    p = torch.full((n_features,), float(feature_probability), dtype=DTYPE)
    imp = torch.full((n_features,), float(importance), dtype=DTYPE)
    return _optimize_layouts(layouts, p, imp)


def best_kgon(solutions: Sequence[KGonSolution]) -> KGonSolution:
    """The solution with the lowest loss."""
    if not solutions:
        raise ConfigError("best_kgon needs at least one solution")
    return min(solutions, key=lambda solution: solution.loss)
