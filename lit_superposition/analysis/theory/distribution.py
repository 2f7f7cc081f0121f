"""The framework's data distribution, as the theory needs it: every activity pattern with its exact probability under
the correlated/anticorrelated set structure, the second moments ``E[x xᵀ]``, and seeded samples for Monte Carlo.
``p`` is ``(n_instances, n_features)`` float64; the sets are lists of feature indices that
:func:`~lit_superposition.analysis.theory.checks.check_distribution` has checked.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lit_superposition.analysis.theory.checks import DTYPE


def all_patterns(n_features: int) -> Tensor:
    """Every subset of the features as a ``(2**n_features, n_features)`` bool mask."""
    codes = torch.arange(2**n_features).unsqueeze(1)
    return ((codes >> torch.arange(n_features)) & 1).bool()


def pattern_probabilities(patterns: Tensor, p: Tensor, correlated, anticorrelated) -> Tensor:
    """``P(exactly the features of the pattern are active)``: ``(n_instances, n_patterns)``."""
    n_instances, n_features = p.shape
    probs = torch.ones(n_instances, patterns.shape[0], dtype=DTYPE)
    grouped = set()
    for members in correlated:
        count = patterns[:, members].sum(1)  # (n_patterns,)
        p_set = p[:, members[0]].unsqueeze(1)  # (n_instances, 1)
        on = (count == len(members)).to(DTYPE)
        off = (count == 0).to(DTYPE)
        probs = probs * (on * p_set + off * (1 - p_set))
        grouped.update(members)
    for members in anticorrelated:
        count = patterns[:, members].sum(1)
        single = p[:, members] @ patterns[:, members].T.to(DTYPE)  # (n_instances, n_patterns): p of the one active
        none = (1 - p[:, members].sum(1, keepdim=True)).clamp_min(0)
        probs = probs * torch.where(count == 0, none, torch.where(count == 1, single, torch.zeros_like(single)))
        grouped.update(members)
    for f in range(n_features):
        if f not in grouped:
            probs = probs * torch.where(patterns[:, f], p[:, f : f + 1], 1 - p[:, f : f + 1])
    return probs


def second_moments(p: Tensor, correlated, anticorrelated) -> Tensor:
    """``E[x xᵀ]``: ``(n_instances, n_features, n_features)``."""
    mean = p / 2  # (n_instances, n_features)
    moments = mean.unsqueeze(2) * mean.unsqueeze(1)  # independent pairs: E[x_f] E[x_g]
    for members in correlated:
        block = torch.tensor(members)
        # Both on together with probability p (not p²), and then E[x_f x_g] = 1/4.
        moments[:, block.unsqueeze(1), block.unsqueeze(0)] = (p[:, members[0]] / 4)[:, None, None]
    for members in anticorrelated:
        block = torch.tensor(members)
        moments[:, block.unsqueeze(1), block.unsqueeze(0)] = 0.0  # never both on
    diagonal = torch.arange(p.shape[1])
    moments[:, diagonal, diagonal] = p / 3
    return moments


def sample_features(p: Tensor, correlated, anticorrelated, batch: int, generator: torch.Generator) -> Tensor:
    """Draw ``(n_instances, batch, n_features)`` inputs from the data distribution."""
    n_instances, n_features = p.shape
    magnitude = 1 - torch.rand(n_instances, batch, n_features, generator=generator, dtype=DTYPE)  # (0, 1]
    draw = torch.rand(n_instances, batch, n_features, generator=generator, dtype=DTYPE)
    active = draw < p.unsqueeze(1)
    for members in correlated:
        active[:, :, members] = (draw[:, :, members[0]] < p[:, None, members[0]]).unsqueeze(2)
    for members in anticorrelated:
        upper = p[:, members].cumsum(1).unsqueeze(1)  # (n_instances, 1, |set|)
        lower = upper - p[:, None, members]
        shared = draw[:, :, members[0]].unsqueeze(2)  # one draw picks at most one member
        active[:, :, members] = (shared >= lower) & (shared < upper)
    return torch.where(active, magnitude, torch.zeros_like(magnitude))
