"""The expected (population) loss of given instanced weights under the framework's data distribution: exact for the
linear output, exact for up to three active features plus randomized QMC beyond for the ReLU output, seeded Monte
Carlo for the hidden ReLU and for many features. :func:`expected_loss` states which part is which; every estimator
returns ``(n_instances, n_features)`` errors ``E[(x_f - x'_f)²]`` before importance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from lit_superposition.analysis.theory import checks
from lit_superposition.analysis.theory.checks import DTYPE
from lit_superposition.analysis.theory.distribution import (
    all_patterns,
    pattern_probabilities,
    sample_features,
    second_moments,
)
from lit_superposition.analysis.theory.integrals import line_integral, pair_integral, triple_integral

#: Every variant :func:`expected_loss` computes.
VARIANTS = ("relu_output", "linear_output", "hidden_relu")
#: The variants whose loss is integrated, not sampled (the ReLU output up to ``max_exact_features`` features).
INTEGRATED_VARIANTS = ("relu_output", "linear_output")

# Above this many elements a block of patterns or samples is split, to bound memory.
_CHUNK_ELEMENTS = 1 << 21


@dataclass(frozen=True)
class ExpectedLoss:
    """The expected loss of every instance.

    Attributes:
        per_feature: ``(n_instances, n_features)`` float64, ``I[i, f] · E[(x_f - x'_f)²]``.
        per_instance: ``(n_instances,)``, the mean of ``per_feature`` over features.
        error_bound: ``(n_instances,)``, the standard error of ``per_instance`` (0 where it is exact up to
            rounding); see :func:`expected_loss` for which parts are estimated.
        method: ``"exact"``, ``"exact+qmc"`` or ``"monte_carlo"``.
    """

    per_feature: Tensor
    per_instance: Tensor
    error_bound: Tensor
    method: str


def _exact_small_patterns(G: Tensor, b: Tensor, probs: Tensor, patterns: Tensor) -> Tensor:
    """``Σ_{|S| ≤ 3} P(S) E[(x_f - ReLU(G_f·x + b_f))² | S]``, exact: ``(n_instances, n_features)``."""
    n_instances, n_features = b.shape
    eye = torch.eye(n_features, dtype=DTYPE)
    sizes = patterns.sum(1)
    total = torch.zeros(n_instances, n_features, dtype=DTYPE)
    cost = {0: 1, 1: 1, 2: 6, 3: 90}  # line integrals per pattern and feature
    for k in range(4):
        mask = sizes == k
        if not mask.any():
            continue
        prob = probs[:, mask]  # (n_instances, n_patterns)
        if k == 0:
            total = total + prob[:, :1] * torch.relu(b) ** 2
            continue
        idx = torch.stack([row.nonzero().squeeze(1) for row in patterns[mask]])  # (n_patterns, k) active inputs
        per_chunk = max(1, _CHUNK_ELEMENTS // (n_instances * n_features * cost[k]))
        for start in range(0, idx.shape[0], per_chunk):
            part = idx[start : start + per_chunk]
            coupling = [G[:, :, part[:, j]] for j in range(k)]  # (n_instances, n_features, P): G_{f, input j}
            target = [eye[:, part[:, j]] for j in range(k)]  # (n_features, P): is output f input j?
            beta = b.unsqueeze(2)  # (n_instances, n_features, 1)
            if k == 1:
                value = line_integral(coupling[0], beta, target[0], 0.0)
            elif k == 2:
                value = pair_integral(*coupling, beta, *target, 0.0)
            else:
                value = triple_integral(*coupling, beta, *target)
            total = total + (value * prob[:, None, start : start + per_chunk]).sum(2)
    return total


def _large_patterns_qmc(
    G: Tensor, b: Tensor, probs: Tensor, patterns: Tensor, budget: int, replicates: int, seed: int
) -> Tensor:
    """``Σ_{|S| ≥ 4} P(S) E[(x_f - x'_f)² | S]`` by randomized QMC, one estimate per scrambling.

    The first Sobol coordinate picks the pattern (inverse CDF of ``P(S | |S| ≥ 4)``, so patterns are stratified
    by probability), the other ``n_features`` give the magnitudes.

    Returns:
        ``(n_instances, n_features, replicates)``.
    """
    n_instances, n_features = b.shape
    mass = probs.sum(1)  # (n_instances,) P(|S| ≥ 4)
    cdf = (probs / mass.clamp_min(1e-300).unsqueeze(1)).cumsum(1)  # (n_instances, n_patterns)
    cdf[:, -1] = 1.0  # guard against rounding below 1
    per_replicate = 2 ** math.ceil(math.log2(max(budget * mass.max().item() / replicates, 1024)))
    chunk = max(1, _CHUNK_ELEMENTS // (n_instances * n_features))
    estimates = []
    for r in range(replicates):
        engine = torch.quasirandom.SobolEngine(n_features + 1, scramble=True, seed=seed + r)
        points = engine.draw(per_replicate, dtype=DTYPE)  # (N, 1 + n_features)
        error_sum = torch.zeros(n_instances, n_features, dtype=DTYPE)
        for start in range(0, per_replicate, chunk):
            block = points[start : start + chunk]
            pick = block[:, 0].expand(n_instances, -1).contiguous()  # (n_instances, N)
            choice = torch.searchsorted(cdf, pick, right=True).clamp_max(patterns.shape[0] - 1)
            # (n_instances, N, n_features): the magnitudes where the chosen pattern is on
            x = torch.where(patterns[choice], block[:, 1:], torch.zeros((), dtype=DTYPE))
            out = torch.relu(torch.einsum("ifg,ing->inf", G, x) + b.unsqueeze(1))
            error_sum = error_sum + ((x - out) ** 2).sum(1)
        estimates.append(mass.unsqueeze(1) * error_sum / per_replicate)
    return torch.stack(estimates, dim=2)


def _linear_output_loss(G: Tensor, b: Tensor, p: Tensor, correlated, anticorrelated) -> Tensor:
    """``E[(x_f - G_f·x - b_f)²]`` exactly: ``(n_instances, n_features)``."""
    residual = torch.eye(G.shape[1], dtype=DTYPE) - G  # (n_instances, n_features, n_features): rows e_f - G_f
    moments = second_moments(p, correlated, anticorrelated)
    quadratic = torch.einsum("ifg,igh,ifh->if", residual, moments, residual)
    linear = torch.einsum("ifg,ig->if", residual, p / 2)
    return quadratic - 2 * b * linear + b**2


def _monte_carlo_loss(
    W: Tensor,
    b: Tensor,
    p: Tensor,
    importance: Tensor,
    variant: str,
    correlated,
    anticorrelated,
    samples: int,
    seed: int,
) -> tuple[Tensor, Tensor]:
    """Plain seeded Monte Carlo: ``E[(x_f - x'_f)²]`` ``(n_instances, n_features)`` and the SE of the instance loss."""
    n_instances, _, n_features = W.shape
    generator = torch.Generator().manual_seed(seed)
    batch = max(1, min(samples, _CHUNK_ELEMENTS // max(1, n_instances * n_features)))
    error_sum = torch.zeros(n_instances, n_features, dtype=DTYPE)
    loss_sum = torch.zeros(n_instances, dtype=DTYPE)
    loss_sq_sum = torch.zeros(n_instances, dtype=DTYPE)
    done = 0
    while done < samples:
        size = min(batch, samples - done)
        x = sample_features(p, correlated, anticorrelated, size, generator)  # (n_instances, batch, n_features)
        hidden = torch.einsum("idf,ibf->ibd", W, x)  # (n_instances, batch, d_hidden)
        if variant == "hidden_relu":
            hidden = torch.relu(hidden)
        out = torch.einsum("idf,ibd->ibf", W, hidden) + b.unsqueeze(1)
        if variant != "linear_output":
            out = torch.relu(out)
        error = (x - out) ** 2  # (n_instances, batch, n_features)
        error_sum = error_sum + error.sum(1)
        loss = (importance.unsqueeze(1) * error).mean(2)  # (n_instances, batch)
        loss_sum = loss_sum + loss.sum(1)
        loss_sq_sum = loss_sq_sum + (loss**2).sum(1)
        done += size
    mean = loss_sum / samples
    variance = ((loss_sq_sum - samples * mean**2) / max(samples - 1, 1)).clamp_min(0)
    return error_sum / samples, (variance / samples).sqrt()


def expected_loss(
    W,
    b,
    feature_probability,
    importance=1.0,
    *,
    variant: str = "relu_output",
    correlated_sets: Sequence[Sequence[int]] | None = None,
    anticorrelated_sets: Sequence[Sequence[int]] | None = None,
    max_exact_features: int = 10,
    qmc_budget: int = 1 << 16,
    qmc_replicates: int = 8,
    mc_samples: int = 1 << 18,
    seed: int = 0,
) -> ExpectedLoss:
    """Expected loss of instanced weights under the framework's data distribution.

    What is exact and what is estimated:

    * ``"linear_output"``: exact for any size (the loss is quadratic in ``x``; it uses ``E[x] = p/2``,
      ``E[x_f²] = p/3`` and the pair moments of the set structure). ``error_bound`` is 0.
    * ``"relu_output"`` with ``n_features ≤ max_exact_features``: conditions on the set ``S`` of active features
      (every pattern, with its exact probability under the set structure).

      - ``|S| ≤ 3``: exact. One input is integrated in closed form; the others by Gauss-Legendre on the pieces
        between the points where the ReLU kink meets a corner of the (sub)cube, where the integrand is a
        polynomial, so the rule is exact. Only rounding error remains (~1e-15 relative).
      - ``|S| ≥ 4``: randomized QMC over ``P(· | |S| ≥ 4)`` (``qmc_replicates`` scrambled Sobol sets, about
        ``qmc_budget · P(|S| ≥ 4)`` points per instance, at least 1024 per scrambling), times ``P(|S| ≥ 4)``.

      ``error_bound`` is the standard error over the scramblings (0 when no pattern has ≥ 4 active features).
      At sparse ``p`` the estimated part is a small share of the loss: at ``p = 0.05`` the relative
      ``error_bound`` is ~1e-6 for 5 features and ≲ 4e-5 for 8, even for strongly interfering random weights.
      At dense ``p`` (e.g. 0.5–1.0) it is a QMC estimate, typically ~1e-4–1e-3 relative.
    * ``"relu_output"`` with more features, and ``"hidden_relu"`` always: plain Monte Carlo with ``mc_samples``
      seeded samples; ``error_bound`` is the standard error of the mean instance loss.

    Args:
        W: ``(n_instances, d_hidden, n_features)`` (or ``(d_hidden, n_features)`` for one instance).
        b: ``(n_instances, n_features)`` or ``(n_features,)``.
        feature_probability: Scalar, ``(n_features,)`` or ``(n_instances, n_features)``.
        importance: Scalar, ``(n_features,)`` or ``(n_instances, n_features)``.
        variant: ``"relu_output"``, ``"linear_output"`` or ``"hidden_relu"``.
        correlated_sets: Lists of features that are active together (equal ``p`` within a set).
        anticorrelated_sets: Lists of features of which at most one is active (``Σ p ≤ 1``).
        max_exact_features: Largest ``n_features`` for the pattern-by-pattern ReLU integration.
        qmc_budget: QMC points per instance if ``P(|S| ≥ 4) = 1`` (scaled down with that probability).
        qmc_replicates: Independent scramblings, for the standard error.
        mc_samples: Samples of the Monte Carlo fallback.
        seed: Seed of the scramblings and of the Monte Carlo generator.

    Returns:
        An :class:`ExpectedLoss`; differentiable in ``W`` and ``b`` if they require grad.

    Raises:
        ConfigError: On bad shapes, probabilities outside [0, 1], inconsistent sets or an unknown variant.
    """
    checks.check_variant(variant, VARIANTS)
    W, b = checks.check_weights(W, b)
    n_instances, _, n_features = W.shape
    p = checks.per_instance_and_feature(feature_probability, "feature_probability", n_instances, n_features)
    imp = checks.per_instance_and_feature(importance, "importance", n_instances, n_features)
    correlated, anticorrelated = checks.check_distribution(p, imp, correlated_sets, anticorrelated_sets)
    G = torch.einsum("idf,idg->ifg", W, W)  # (n_instances, n_features, n_features)
    zero = torch.zeros(n_instances, dtype=DTYPE)

    if variant == "linear_output":
        per_feature = imp * _linear_output_loss(G, b, p, correlated, anticorrelated)
        return ExpectedLoss(per_feature, per_feature.mean(1), zero, "exact")

    if variant not in INTEGRATED_VARIANTS or n_features > max_exact_features:
        errors, stderr = _monte_carlo_loss(W, b, p, imp, variant, correlated, anticorrelated, mc_samples, seed)
        per_feature = imp * errors
        return ExpectedLoss(per_feature, per_feature.mean(1), stderr.detach(), "monte_carlo")

    patterns = all_patterns(n_features)
    probs = pattern_probabilities(patterns, p, correlated, anticorrelated)
    possible = probs.amax(0) > 0  # drop patterns the set structure forbids
    small = possible & (patterns.sum(1) <= 3)
    large = possible & (patterns.sum(1) >= 4)
    exact = _exact_small_patterns(G, b, probs[:, small], patterns[small])  # (n_instances, n_features)
    if not large.any():
        per_feature = imp * exact
        return ExpectedLoss(per_feature, per_feature.mean(1), zero, "exact")
    estimates = _large_patterns_qmc(G, b, probs[:, large], patterns[large], qmc_budget, qmc_replicates, seed)
    replicates = imp.unsqueeze(2) * (exact.unsqueeze(2) + estimates)  # (n_instances, n_features, R)
    per_feature = replicates.mean(2)
    stderr = replicates.mean(1).std(1) / math.sqrt(qmc_replicates) if qmc_replicates > 1 else zero
    return ExpectedLoss(per_feature, per_feature.mean(1), stderr.detach(), "exact+qmc")

