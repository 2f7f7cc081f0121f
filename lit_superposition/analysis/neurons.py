"""Per-neuron measurements for models with a privileged basis (a ReLU on the hidden layer); no Lightning.

Row ``n`` of ``W[i]`` (``(d_hidden, n_features)``) holds neuron ``n``'s weights on the features.
"""

from __future__ import annotations

from torch import Tensor

EPS = 1e-12


def top_feature_share(W: Tensor) -> Tensor:
    """How much of each neuron's squared weight falls on its top feature: ``max_f W[n, f]² / Σ_f W[n, f]²``.

    1 for a monosemantic neuron, ``1/k`` for one spread evenly over ``k`` features (polysemantic).

    Args:
        W: ``(n_instances, d_hidden, n_features)``.

    Returns:
        ``(n_instances, d_hidden)``; 0 for a neuron with no weight at all.
    """
    squared = W.square()  # (n_instances, d_hidden, n_features)
    total = squared.sum(dim=2)
    return squared.amax(dim=2) / total.clamp_min(EPS) * (total > EPS)


def top_feature(W: Tensor) -> Tensor:
    """The feature each neuron weighs most (by squared weight): ``(n_instances, d_hidden)`` indices."""
    return W.square().argmax(dim=2)
