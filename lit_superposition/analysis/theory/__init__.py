"""Expected (population) losses of toy models of superposition, k-gon templates, and the Chen et al. closed form.

Pure analysis: torch and numpy only, no Lightning. The modules: ``checks`` (input checks), ``integrals``
(exact piecewise-polynomial integrals), ``distribution`` (activity patterns, moments, samples), ``population_loss``
(:func:`expected_loss`), ``kgons`` (the k-gon family), ``chen`` (Chen et al.'s closed form) and ``solver`` (the
batched damped-Newton minimizer, shared with ``analysis.phases``).

Conventions (the same as training):

* ``W`` is ``(n_instances, d_hidden, n_features)``, ``b`` is ``(n_instances, n_features)``; per instance
  ``x' = ReLU(Wᵀ W x + b)`` (``"relu_output"``), ``x' = Wᵀ W x + b`` (``"linear_output"``) or
  ``x' = ReLU(Wᵀ ReLU(W x) + b)`` (``"hidden_relu"``).
* Feature ``f`` is 0 with probability ``1 - p_f``, otherwise uniform on ``(0, 1]``; features are independent
  except inside *correlated sets* (one draw switches the whole set on; equal ``p`` in a set) and
  *anticorrelated sets* (at most one member active; member ``f`` with probability ``p_f``; ``Σ p ≤ 1``).
* Loss: ``per_feature[i, f] = I[i, f] · E[(x_f - x'_f)²]``; ``per_instance`` is its mean over features.
"""

from __future__ import annotations

from lit_superposition.analysis.theory.chen import chen_closed_form_loss, chen_feature_terms
from lit_superposition.analysis.theory.kgons import (
    KGonSolution,
    best_kgon,
    kgon_solutions,
    kgon_weights,
    optimize_template,
    template_loss,
)
from lit_superposition.analysis.theory.population_loss import (
    INTEGRATED_VARIANTS,
    VARIANTS,
    ExpectedLoss,
    expected_loss,
)

__all__ = [
    "ExpectedLoss",
    "INTEGRATED_VARIANTS",
    "KGonSolution",
    "VARIANTS",
    "best_kgon",
    "chen_closed_form_loss",
    "chen_feature_terms",
    "expected_loss",
    "kgon_solutions",
    "kgon_weights",
    "optimize_template",
    "template_loss",
]
