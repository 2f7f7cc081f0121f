"""The k-gon critical points of Chen et al.'s (2023) loss, from the theory module's k-gon solutions; no Lightning.

Under Chen et al.'s data law (exactly one of ``c`` features active, chosen uniformly, uniform on
(0, 1]) a regular k-gon of ``k ≥ 2`` features with one norm and one bias, the other ``c − k``
features at ``W_f = 0`` with their best constant output ``E[x_f] = 1/(2c)`` as bias, is a critical
point of the whole loss once its norm and bias are: the polygon's columns sum to zero, so the unused
features' gradients vanish, and the polygon's symmetry carries the two-parameter optimum to all
``3c`` parameters. (A lone feature, ``k = 1``, is not one: its column does not sum to zero.)

The theory module's k-gon templates (:func:`~lit_superposition.analysis.theory.kgon_weights`) are
optimized as :func:`~lit_superposition.analysis.theory.kgon_solutions` optimizes its own (the best
point of a coarse (norm, bias) grid, then the theory's damped Newton solver), on Chen et al.'s closed
form (:func:`~lit_superposition.analysis.theory.chen_closed_form_loss`) instead of the loss under
independent features: a fraction of a second where ``kgon_solutions`` at ``p = 1/c`` integrates for
tens of seconds. They reproduce the published points (5-gon ``l* = 1.17046``, ``b* = −0.28230``;
6-gon ``1.32053``, ``−0.61814``; 7-gon ``1.44839``, ``−0.96691``); for ``k ≤ 4`` the optimum is
``l* = 1``, ``b* = 0``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from lit_superposition.analysis.theory import chen_closed_form_loss, kgon_weights
from lit_superposition.analysis.theory.solver import minimize
from lit_superposition.errors import ConfigError

_MAX_ITERATIONS = 200
#: Starting points: each k starts from the best point of this (norm, bias) grid (as kgon_solutions does).
_GRID = torch.cartesian_prod(torch.linspace(0.6, 2.0, 8, dtype=torch.float64), torch.linspace(-1.6, 0.2, 10, dtype=torch.float64))


@dataclass(frozen=True)
class CriticalKGon:
    """A k-gon critical point of Chen et al.'s loss.

    Attributes:
        k: Features on the polygon (``0 … k−1``).
        norm: ``‖W_f‖`` of the polygon features.
        bias: ``b_f`` of the polygon features (the others: ``1/(2c)``).
        loss: The expected loss as training measures it: the mean over features (Chen et al.'s ``L / c``).
        gradient: The largest absolute entry of the loss's gradient in all ``3c`` parameters (0 at a
            critical point, up to rounding).
    """

    k: int
    norm: float
    bias: float
    loss: float
    gradient: float

    def weights(self, n_features: int) -> tuple[Tensor, Tensor]:
        """``W`` ``(2, n_features)`` and ``b`` ``(n_features,)``, float64."""
        return kgon_weights(self.k, n_features, self.norm, self.bias, 1 / (2 * n_features))


def chen_kgon_critical_points(n_features: int, ks: Sequence[int] | None = None) -> list[CriticalKGon]:
    """The k-gon critical points of ``n_features`` features in 2 dimensions under Chen et al.'s law.

    Args:
        n_features: ``c``, at least 2.
        ks: Which polygons (default ``2 … c``), each in ``[2, c]``.

    Returns:
        One :class:`CriticalKGon` per ``k``, in the order of ``ks``.
    """
    if not isinstance(n_features, int) or n_features < 2:
        raise ConfigError(f"Chen et al.'s k-gons need n_features >= 2, got {n_features!r}")
    ks = list(range(2, n_features + 1)) if ks is None else [int(k) for k in ks]
    bad = [k for k in ks if not 2 <= k <= n_features]
    if not ks or bad:
        raise ConfigError(f"k-gon critical points have k in [2, {n_features}] (a lone feature is none), got {ks}")
    unused = 1 / (2 * n_features)

    def losses(x: Tensor, polygons: Sequence[int]) -> Tensor:  # (m, 2) -> (m,); one small template each, no hot path
        return torch.stack([chen_closed_form_loss(*kgon_weights(k, n_features, x[i, 0], x[i, 1], unused))
                            for i, k in enumerate(polygons)])

    with torch.no_grad():
        on_grid = losses(_GRID.repeat(len(ks), 1), [k for k in ks for _ in range(len(_GRID))]).view(len(ks), -1)
    theta = _GRID[on_grid.argmin(dim=1)]  # (len(ks), 2): norm, bias
    theta = minimize(lambda x: losses(x, ks), theta, _MAX_ITERATIONS, tolerance=1e-15)
    points = []
    for k, (norm, bias) in zip(ks, theta.tolist()):
        norm = abs(norm)  # W and -W are the same model
        W, b = kgon_weights(k, n_features, norm, bias, unused)
        W, b = W.requires_grad_(True), b.requires_grad_(True)
        loss = chen_closed_form_loss(W, b)
        gradient = torch.cat([g.flatten() for g in torch.autograd.grad(loss, (W, b))]).abs().max()
        points.append(CriticalKGon(k, norm, bias, loss.item() / n_features, gradient.item() / n_features))
    return points
