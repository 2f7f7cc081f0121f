"""Where theory's exact answers apply: the one place that says it, for every caller.

A model variant names the theory of its exact expected loss in its ``exact_theory`` class attribute
(:class:`~lit_superposition.models.ToyModel`); the data must be what that theory integrates over:
magnitudes uniform on (0, 1], reconstructed (``target: identity``).
"""

from __future__ import annotations

from lit_superposition.analysis.phases import MAX_THEORY_FEATURES, MAX_THEORY_HIDDEN
from lit_superposition.analysis.theory import INTEGRATED_VARIANTS
from lit_superposition.models.base import ToyModel

#: The variant the k-gon family is about (Anthropic 2022's 2-D ReLU-output model).
KGON_THEORY = "relu_output"


def exact_loss_applies(model: ToyModel, values: str, target: str, scale_points: str = "none") -> bool:
    """Whether :func:`~lit_superposition.analysis.theory.expected_loss` computes this model's loss on this data
    (magnitudes uniform on (0, 1], not rescaled, reconstructed)."""
    return model.exact_theory is not None and values == "uniform" and target == "identity" and scale_points == "none"


def kgons_apply(model: ToyModel, values: str, target: str, scale_points: str = "none") -> bool:
    """Whether the k-gon family (templates, best k) is this model's: the 2-D ReLU-output model's."""
    return exact_loss_applies(model, values, target, scale_points) and model.exact_theory == KGON_THEORY and model.d_hidden == 2


def phases_apply(model: ToyModel, values: str, target: str, feature_sets: bool, scale_points: str = "none") -> bool:
    """Whether theory's phase candidates cover this model (small, independent features)."""
    return (
        exact_loss_applies(model, values, target, scale_points)
        and model.exact_theory in INTEGRATED_VARIANTS
        and model.d_hidden <= MAX_THEORY_HIDDEN
        and model.n_features <= MAX_THEORY_FEATURES
        and not feature_sets
    )
