"""Learned 2-D solutions placed against theory: their exact expected loss and the optimal k-gons'; no Lightning."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from torch import Tensor

from lit_superposition.analysis import theory


@lru_cache(maxsize=256)
def optimal_template(k: int, features: tuple[int, ...], feature_probability: tuple[float, ...],
                     importance: tuple[float, ...]) -> theory.KGonSolution:
    """:func:`theory.optimize_template`, remembered: template starts and the crossover report ask alike."""
    return theory.optimize_template(k, list(feature_probability), list(importance), list(features))


@lru_cache(maxsize=64)
def _solutions(n_features: int, p: float, importance: float) -> tuple[theory.KGonSolution, ...]:
    return tuple(theory.kgon_solutions(n_features, p, importance))


def compare_with_kgons(
    W: Tensor,
    b: Tensor,
    feature_probability: Tensor,
    importance: Tensor,
    n_directions: Sequence[int],
    correlated_sets: Sequence[Sequence[int]] | None = None,
    anticorrelated_sets: Sequence[Sequence[int]] | None = None,
) -> list[dict[str, Any]]:
    """Per instance: the exact ``expected_loss`` of the learned weights and, where theory applies, the k-gons'.

    The k-gon family is defined for one ``p`` and one importance over all features and no feature
    sets; such instances also get ``kgon_loss`` (the optimal regular polygon with the instance's own
    number of directions), ``best_k`` and ``best_kgon_loss``. An instance at its k-gon critical
    point has ``expected_loss`` close to ``kgon_loss``; one in a basin of a worse polygon has
    ``kgon_loss`` above ``best_kgon_loss``.

    Args:
        W: ``(n_instances, 2, n_features)`` learned weights.
        b: ``(n_instances, n_features)``.
        feature_probability: ``(n_instances, n_features)``.
        importance: ``(n_instances, n_features)``.
        n_directions: Distinct directions of each instance (from ``geometry.classify_2d``).
        correlated_sets: The run's correlated sets, if any.
        anticorrelated_sets: The run's anticorrelated sets, if any.

    Returns:
        One dict per instance.
    """
    exact = theory.expected_loss(
        W, b, feature_probability, importance, correlated_sets=correlated_sets or None,
        anticorrelated_sets=anticorrelated_sets or None,
    )
    n_features = W.shape[2]
    uniform = not correlated_sets and not anticorrelated_sets
    entries = []
    for i in range(W.shape[0]):
        entry: dict[str, Any] = {"expected_loss": float(exact.per_instance[i]), "expected_loss_error": float(exact.error_bound[i])}
        p, imp = feature_probability[i], importance[i]
        if uniform and bool((p == p[0]).all()) and bool((imp == imp[0]).all()) and float(p[0]) > 0:
            solutions = _solutions(n_features, round(float(p[0]), 12), round(float(imp[0]), 12))
            best = theory.best_kgon(solutions)
            own = next((s for s in solutions if s.k == n_directions[i]), None)
            entry.update(best_k=best.k, best_kgon_loss=best.loss)
            if own is not None:
                entry["kgon_loss"] = own.loss
        entries.append(entry)
    return entries
