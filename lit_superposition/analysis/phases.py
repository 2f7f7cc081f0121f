"""Phases of one feature (Anthropic 2022, "Superposition as a Phase Change"): classified and predicted.

A feature is in one of three phases:

- ``not_represented``: ``‖W_f‖ < norm_threshold`` (default 0.5, the report's ``represented`` threshold);
- ``dedicated``: represented, and its interference ``Σ_{j≠f} (Ŵ_f·W_j)²`` is below
  ``interference_threshold`` (default 0.1): no other feature has a sizeable component along it;
- ``superposition``: represented, and sharing its direction with others (interference above the
  threshold; an antipodal partner of norm 1 gives 1).

Theory's phase at a point of the grid comes from comparing the exact :func:`~lit_superposition.analysis.theory.expected_loss`
of candidate solutions, each with its norms and biases optimized: every assignment of the features
to "absent" or to ± one hidden axis (up to the symmetries of the axes), and for ``d_hidden = 2`` the
regular polygon of all features. The phase of the cheapest candidate is theory's phase. For 2
features in 1 dimension the candidates are the paper's three: the other feature alone, the varied
feature alone, and the antipodal pair.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import einops
import torch
from torch import Tensor

from lit_superposition.analysis import theory
from lit_superposition.analysis.theory import checks, solver
from lit_superposition.errors import ConfigError

PHASES = ("not_represented", "dedicated", "superposition")
NORM_THRESHOLD = 0.5
INTERFERENCE_THRESHOLD = 0.1
#: Largest problems theory's candidates are enumerated for (the candidate count grows as 5^n_features).
MAX_THEORY_FEATURES, MAX_THEORY_HIDDEN = 4, 2


def feature_interference(W: Tensor, feature: int) -> Tensor:
    """``Σ_{j≠f} (Ŵ_f·W_j)²`` of one feature, ``(n_instances,)``; 0 where ``W_f = 0``.

    Args:
        W: ``(n_instances, d_hidden, n_features)``.
        feature: The feature ``f``.
    """
    w = W[:, :, feature]  # (n_instances, d_hidden)
    unit = w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)  # (n_instances, d_hidden)
    overlap = einops.einsum(unit, W, "i d, i d f -> i f")  # (n_instances, n_features)
    overlap[:, feature] = 0
    return overlap.square().sum(dim=1)


def classify_phases(
    W: Tensor,
    feature: int,
    norm_threshold: float = NORM_THRESHOLD,
    interference_threshold: float = INTERFERENCE_THRESHOLD,
) -> list[str]:
    """The phase of ``feature`` in every instance (see the module docstring for the thresholds).

    Args:
        W: ``(n_instances, d_hidden, n_features)``, any ``d_hidden``.
        feature: The feature whose phase is asked.
        norm_threshold: ``‖W_f‖`` below which the feature is ``not_represented``.
        interference_threshold: Interference below which a represented feature is ``dedicated``.

    Returns:
        One of :data:`PHASES` per instance.
    """
    W = checks.check_instanced(W).detach()
    checks.check_feature(feature, W.shape[2])
    norm = W[:, :, feature].norm(dim=1)  # (n_instances,)
    interference = feature_interference(W, feature)  # (n_instances,)
    return [
        PHASES[0] if n < norm_threshold else PHASES[1] if s < interference_threshold else PHASES[2]
        for n, s in zip(norm.tolist(), interference.tolist())
    ]


def candidate_directions(n_features: int, d_hidden: int) -> Tensor:
    """Theory's candidate layouts: unit directions (or 0 for an absent feature), ``(n_candidates, d_hidden, n_features)``.

    Every assignment of each feature to absent or ± one axis, one per class of the axes' symmetries
    (permutations and sign flips), without the empty one (features on the same signed axis
    included: at dense ``p`` sharing one direction can beat leaving a feature out); for ``d_hidden = 2`` and at least 3
    features also the regular polygon of all features.
    """
    if not (1 <= d_hidden <= MAX_THEORY_HIDDEN and 1 <= n_features <= MAX_THEORY_FEATURES):
        raise ConfigError(
            f"theory's phase candidates cover d_hidden <= {MAX_THEORY_HIDDEN} and n_features <= {MAX_THEORY_FEATURES},"
            f" got d_hidden={d_hidden}, n_features={n_features}"
        )
    choices = [(0, 0)] + [(axis, sign) for axis in range(1, d_hidden + 1) for sign in (1, -1)]
    symmetries = [
        (perm, signs)
        for perm in itertools.permutations(range(1, d_hidden + 1))
        for signs in itertools.product((1, -1), repeat=d_hidden)
    ]

    def image(assignment, perm, signs):
        return tuple((perm[a - 1], s * signs[a - 1]) if a else (0, 0) for a, s in assignment)

    seen, layouts = set(), []
    for assignment in itertools.product(choices, repeat=n_features):
        if all(a == 0 for a, _ in assignment):
            continue
        canonical = min(image(assignment, perm, signs) for perm, signs in symmetries)
        if canonical in seen:
            continue
        seen.add(canonical)
        U = torch.zeros(d_hidden, n_features, dtype=torch.float64)
        for f, (a, s) in enumerate(canonical):
            if a:
                U[a - 1, f] = s
        layouts.append(U)
    if d_hidden == 2 and n_features >= 3:
        angles = torch.arange(n_features, dtype=torch.float64) * (2 * torch.pi / n_features)
        layouts.append(torch.stack([angles.cos(), angles.sin()]))
    return torch.stack(layouts)


def theoretical_phases(
    feature_probability: Tensor,
    importance: Tensor,
    d_hidden: int,
    feature: int,
    variant: str = "relu_output",
    max_iterations: int = 60,
) -> tuple[list[str], Tensor, Tensor]:
    """Theory's phase of ``feature`` at each point: the phase of the cheapest optimized candidate.

    Each candidate's norms (one per present feature) and biases (every feature) are minimized on the
    exact expected loss by damped Newton steps (:func:`~lit_superposition.analysis.theory.solver.minimize`,
    the solver the k-gons use), all points and candidates at once.

    Args:
        feature_probability: ``(n_points, n_features)``.
        importance: ``(n_points, n_features)``.
        d_hidden: Hidden dimensions.
        feature: The feature whose phase is asked.
        variant: ``"relu_output"`` or ``"linear_output"`` (the variants with an exact loss).
        max_iterations: Newton iterations (each problem stops on its own when it no longer improves).

    Returns:
        The phases (one per point), the cheapest candidate's loss ``(n_points,)`` and its weights
        ``(n_points, d_hidden, n_features)``.
    """
    checks.check_variant(variant, theory.INTEGRATED_VARIANTS, "theory's phases need an integrated (exact) loss")
    p = checks.as_float64(feature_probability)  # (n_points, n_features)
    if p.ndim != 2:
        raise ConfigError(f"feature_probability must be (n_points, n_features); got shape {tuple(p.shape)}")
    p = checks.check_probability(p)
    n_points, n_features = p.shape
    imp = checks.check_importance(checks.per_instance_and_feature(importance, "importance", n_points, n_features))
    checks.check_feature(feature, n_features)
    U = candidate_directions(n_features, d_hidden)  # (n_candidates, d_hidden, n_features)
    n_candidates = U.shape[0]
    present = U.abs().sum(dim=1) > 0  # (n_candidates, n_features)
    p_all = einops.repeat(p, "n f -> (n c) f", c=n_candidates)
    imp_all = einops.repeat(imp, "n f -> (n c) f", c=n_candidates)
    U_all = einops.repeat(U, "c d f -> (n c) d f", n=n_points)
    present_all = einops.repeat(present, "c f -> (n c) f", n=n_points)

    def weights(theta: Tensor) -> tuple[Tensor, Tensor]:
        norms, biases = theta[:, :n_features], theta[:, n_features:]  # (n_problems, n_features) each
        return U_all * norms.unsqueeze(1), biases  # W: (n_problems, d_hidden, n_features)

    def losses(theta: Tensor) -> Tensor:
        return theory.expected_loss(*weights(theta), p_all, imp_all, variant=variant).per_instance  # (n_problems,)

    # Start: present features at norms near 1 (unequal, or symmetric candidates stay on their saddle)
    # and bias 0; absent ones at their best constant output, E[x_f] = p_f / 2.
    start_norms = present_all * (1 - 0.05 * torch.arange(n_features, dtype=torch.float64))
    theta = torch.cat([start_norms, torch.where(present_all, 0.0, p_all / 2)], dim=1)  # (n_problems, 2·n_features)
    theta = solver.minimize(losses, theta, max_iterations)
    with torch.no_grad():
        loss = losses(theta).view(n_points, n_candidates)
    W = weights(theta)[0]
    best = loss.argmin(dim=1)  # (n_points,)
    W_best = W.view(n_points, n_candidates, d_hidden, n_features)[torch.arange(n_points), best]
    return classify_phases(W_best, feature), loss[torch.arange(n_points), best], W_best


def best_of_repeats(values: Sequence[float], repeats: int) -> list[int]:
    """Index of the lowest value in each consecutive group of ``repeats`` (one group per grid point)."""
    grouped = torch.tensor(values, dtype=torch.float64).view(-1, repeats)  # (n_points, repeats)
    return (grouped.argmin(dim=1) + torch.arange(grouped.shape[0]) * repeats).tolist()
