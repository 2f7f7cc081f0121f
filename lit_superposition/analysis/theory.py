"""Expected (population) losses of toy models of superposition, k-gon templates, and the Chen et al. closed form.

Pure analysis: torch, numpy and scipy only, no Lightning.

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

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import linalg, optimize
from torch import Tensor

__all__ = [
    "ExpectedLoss",
    "KGonSolution",
    "best_kgon",
    "chen_closed_form_loss",
    "chen_feature_terms",
    "expected_loss",
    "kgon_solutions",
    "kgon_weights",
    "optimize_template",
    "template_loss",
]

VARIANTS = ("relu_output", "linear_output", "hidden_relu")
DTYPE = torch.float64



def _gauss_legendre(n_nodes: int) -> list[tuple[float, float]]:
    """``(node, weight)`` pairs on [0, 1]; exact for polynomials of degree ``2 n_nodes - 1``."""
    nodes, weights = np.polynomial.legendre.leggauss(n_nodes)
    return [((x + 1) / 2, w / 2) for x, w in zip(nodes, weights)]


_GL2 = _gauss_legendre(2)  # cubics
_GL3 = _gauss_legendre(3)  # quintics

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


# ----------------------------------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------------------------------


def _as_float64(value) -> Tensor:
    # .to keeps the autograd graph, so expected_loss stays differentiable in W and b.
    if isinstance(value, Tensor):
        return value.to(DTYPE)
    return torch.as_tensor(np.asarray(value, dtype=np.float64))


def _check_weights(W, b) -> tuple[Tensor, Tensor]:
    W, b = _as_float64(W), _as_float64(b)
    if W.ndim == 2:  # a single instance, (d_hidden, n_features)
        W = W.unsqueeze(0)
    if W.ndim != 3:
        raise ValueError(
            f"W must be (n_instances, d_hidden, n_features) or (d_hidden, n_features); got shape {tuple(W.shape)}"
        )
    n_instances, _, n_features = W.shape
    if b.ndim == 1:
        b = b.unsqueeze(0).expand(n_instances, -1)
    if tuple(b.shape) != (n_instances, n_features):
        raise ValueError(f"b must be (n_instances, n_features) = {(n_instances, n_features)}; got {tuple(b.shape)}")
    if not (torch.isfinite(W).all() and torch.isfinite(b).all()):
        raise ValueError("W and b must be finite")
    return W, b


def _broadcast(value, name: str, n_instances: int, n_features: int) -> Tensor:
    """A scalar, per-feature or per-instance-and-feature value as ``(n_instances, n_features)`` float64."""
    tensor = _as_float64(value).detach()
    if tensor.ndim == 1:
        if tensor.shape[0] != n_features:
            raise ValueError(f"{name} has {tensor.shape[0]} entries but there are {n_features} features")
        tensor = tensor.unsqueeze(0)
    if tensor.ndim > 2:
        raise ValueError(f"{name} must be a scalar, (n_features,) or (n_instances, n_features)"
                         f"; got {tuple(tensor.shape)}")
    try:
        return torch.broadcast_to(tensor, (n_instances, n_features)).clone()
    except RuntimeError:
        raise ValueError(
            f"{name} of shape {tuple(tensor.shape)} does not broadcast to {(n_instances, n_features)}"
        ) from None


def _check_sets(sets, name: str, n_features: int) -> list[list[int]]:
    if sets is None:
        return []
    checked = []
    for members in sets:
        members = [int(f) for f in members]
        if len(set(members)) != len(members):
            raise ValueError(f"{name} contains a set with repeated features: {members}")
        if any(not 0 <= f < n_features for f in members):
            raise ValueError(f"{name} contains a feature outside 0..{n_features - 1}: {members}")
        if members:
            checked.append(members)
    return checked


def _check_distribution(p: Tensor, importance: Tensor, correlated, anticorrelated) -> tuple[list, list]:
    n_features = p.shape[1]
    if not torch.isfinite(p).all() or p.min() < 0 or p.max() > 1:
        raise ValueError(f"feature_probability must lie in [0, 1]; got values in [{p.min():g}, {p.max():g}]")
    if not torch.isfinite(importance).all() or importance.min() < 0:
        raise ValueError(f"importance must be finite and non-negative; got minimum {importance.min().item():g}")
    correlated = _check_sets(correlated, "correlated_sets", n_features)
    anticorrelated = _check_sets(anticorrelated, "anticorrelated_sets", n_features)
    used = [f for members in correlated + anticorrelated for f in members]
    if len(set(used)) != len(used):
        raise ValueError("a feature belongs to more than one correlated/anticorrelated set")
    for members in correlated:
        spread = (p[:, members].amax(1) - p[:, members].amin(1)).max().item()
        if spread > 1e-12:
            raise ValueError(
                f"the features of correlated set {members} must share one feature_probability; spread {spread:g}"
            )
    for members in anticorrelated:
        total = p[:, members].sum(1).max().item()
        if total > 1 + 1e-12:
            raise ValueError(f"anticorrelated set {members} has total feature_probability {total:g} > 1")
    return correlated, anticorrelated


# ----------------------------------------------------------------------------------------------------------------
# Exact integrals of (target - ReLU(affine))² over the unit interval, square and cube
# ----------------------------------------------------------------------------------------------------------------


def _square_poly_integral(slope, const, lo, hi):
    """``∫_lo^hi (slope v + const)² dv``, elementwise."""
    return slope * slope * (hi**3 - lo**3) / 3 + slope * const * (hi**2 - lo**2) + const * const * (hi - lo)


def _line_integral(c: Tensor, beta: Tensor, t_slope, t_const) -> Tensor:
    """``∫_0^1 (t_slope v + t_const - ReLU(c v + beta))² dv``, exact and elementwise (broadcast).

    Integrates the polynomial pieces directly (not via ``1/c``), so tiny or zero ``c`` is harmless.
    """
    c_safe = torch.where(c == 0, torch.ones_like(c), c)
    root = (-beta / c_safe).clamp(0, 1)  # where the pre-activation crosses 0
    zero, one = torch.zeros_like(root), torch.ones_like(root)
    flat_on = (c == 0) & (beta > 0)
    lo = torch.where(c > 0, root, zero)
    hi = torch.where(c > 0, one, torch.where(c < 0, root, torch.where(flat_on, one, zero)))
    outside = _square_poly_integral(t_slope, t_const, 0.0, 1.0) - _square_poly_integral(t_slope, t_const, lo, hi)
    return outside + _square_poly_integral(t_slope - c, t_const - beta, lo, hi)


def _clamped_root(offset: Tensor, slope: Tensor) -> Tensor:
    """Where ``offset + slope · u`` crosses 0, clamped to [0, 1] (0 when ``slope == 0``)."""
    slope_safe = torch.where(slope == 0, torch.ones_like(slope), slope)
    return torch.where(slope == 0, torch.zeros_like(offset), (-offset / slope_safe).clamp(0, 1))


def _piecewise_gauss(breaks: list[Tensor], rule, integrand):
    """``∫_0^1 integrand(u) du`` for an integrand that is a polynomial between the (unsorted) ``breaks``.

    All nodes of all pieces are stacked on a new leading dimension, so ``integrand`` runs once; it must accept
    ``u`` of shape ``(n_nodes, *breaks_shape)`` and return that shape.
    """
    inner = torch.stack(torch.broadcast_tensors(*breaks)).sort(dim=0).values  # (n_breaks, *S)
    edges = torch.cat([torch.zeros_like(inner[:1]), inner, torch.ones_like(inner[:1])])
    left, width = edges[:-1], edges[1:] - edges[:-1]  # (n_pieces, *S)
    shape = (1, len(rule)) + (1,) * (inner.ndim - 1)  # (1, n_nodes, 1, ...)
    nodes = torch.tensor([node for node, _ in rule], dtype=DTYPE).view(shape)
    weights = torch.tensor([weight for _, weight in rule], dtype=DTYPE).view(shape)
    u = (left.unsqueeze(1) + nodes * width.unsqueeze(1)).flatten(0, 1)  # (n_pieces * n_nodes, *S)
    scaled = (weights * width.unsqueeze(1)).flatten(0, 1)
    return (scaled * integrand(u)).sum(0)


def _broadcast_all(*values) -> list[Tensor]:
    return list(torch.broadcast_tensors(*(torch.as_tensor(v, dtype=DTYPE) for v in values)))


def _pair_integral(a, c, beta, t_u, t_v, tau) -> Tensor:
    """``∫∫_[0,1]² (t_u u + t_v v + tau - ReLU(beta + a u + c v))² du dv``, exact and elementwise.

    The inner ``v`` integral is closed form; as a function of ``u`` it is a cubic between the points where the
    kink enters or leaves the square (``beta + a u ∈ {0, -c}``), so two Gauss nodes per piece are exact.
    """
    a, c, beta, t_u, t_v, tau = _broadcast_all(a, c, beta, t_u, t_v, tau)
    breaks = [_clamped_root(beta, a), _clamped_root(beta + c, a)]
    return _piecewise_gauss(breaks, _GL2, lambda u: _line_integral(c, beta + a * u, t_v, t_u * u + tau))


def _triple_integral(a, c, d, beta, t_u, t_v, t_w) -> Tensor:
    """``∫∫∫_[0,1]³ (t_u u + t_v v + t_w w - ReLU(beta + a u + c v + d w))²``, exact and elementwise.

    As a function of ``w`` the inner square integral is a polynomial of degree ≤ 5 between the points where the
    kink plane passes a corner of the square (``beta + d w ∈ {0, -a, -c, -a-c}``); three nodes per piece are exact.
    """
    a, c, d, beta, t_u, t_v, t_w = _broadcast_all(a, c, d, beta, t_u, t_v, t_w)
    breaks = [_clamped_root(beta + corner, d) for corner in (0.0, a, c, a + c)]
    return _piecewise_gauss(breaks, _GL3, lambda w: _pair_integral(a, c, beta + d * w, t_u, t_v, t_w * w))


# ----------------------------------------------------------------------------------------------------------------
# Activity patterns and their probabilities
# ----------------------------------------------------------------------------------------------------------------


def _all_patterns(n_features: int) -> Tensor:
    """Every subset of the features as a ``(2**n_features, n_features)`` bool mask."""
    codes = torch.arange(2**n_features).unsqueeze(1)
    return ((codes >> torch.arange(n_features)) & 1).bool()


def _pattern_probabilities(patterns: Tensor, p: Tensor, correlated, anticorrelated) -> Tensor:
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


# ----------------------------------------------------------------------------------------------------------------
# ReLU output: exact for ≤ 3 active features, randomized QMC beyond
# ----------------------------------------------------------------------------------------------------------------


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
                value = _line_integral(coupling[0], beta, target[0], 0.0)
            elif k == 2:
                value = _pair_integral(*coupling, beta, *target, 0.0)
            else:
                value = _triple_integral(*coupling, beta, *target)
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


# ----------------------------------------------------------------------------------------------------------------
# Linear output: exact from the first two moments
# ----------------------------------------------------------------------------------------------------------------


def _second_moments(p: Tensor, correlated, anticorrelated) -> Tensor:
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


def _linear_output_loss(G: Tensor, b: Tensor, p: Tensor, correlated, anticorrelated) -> Tensor:
    """``E[(x_f - G_f·x - b_f)²]`` exactly: ``(n_instances, n_features)``."""
    residual = torch.eye(G.shape[1], dtype=DTYPE) - G  # (n_instances, n_features, n_features): rows e_f - G_f
    moments = _second_moments(p, correlated, anticorrelated)
    quadratic = torch.einsum("ifg,igh,ifh->if", residual, moments, residual)
    linear = torch.einsum("ifg,ig->if", residual, p / 2)
    return quadratic - 2 * b * linear + b**2


# ----------------------------------------------------------------------------------------------------------------
# Monte Carlo fallback
# ----------------------------------------------------------------------------------------------------------------


def _sample_features(p: Tensor, correlated, anticorrelated, batch: int, generator: torch.Generator) -> Tensor:
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
        x = _sample_features(p, correlated, anticorrelated, size, generator)  # (n_instances, batch, n_features)
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


# ----------------------------------------------------------------------------------------------------------------
# Public: expected loss
# ----------------------------------------------------------------------------------------------------------------


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
        ValueError: On bad shapes, probabilities outside [0, 1], inconsistent sets or an unknown variant.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}; got {variant!r}")
    W, b = _check_weights(W, b)
    n_instances, _, n_features = W.shape
    p = _broadcast(feature_probability, "feature_probability", n_instances, n_features)
    imp = _broadcast(importance, "importance", n_instances, n_features)
    correlated, anticorrelated = _check_distribution(p, imp, correlated_sets, anticorrelated_sets)
    G = torch.einsum("idf,idg->ifg", W, W)  # (n_instances, n_features, n_features)
    zero = torch.zeros(n_instances, dtype=DTYPE)

    if variant == "linear_output":
        per_feature = imp * _linear_output_loss(G, b, p, correlated, anticorrelated)
        return ExpectedLoss(per_feature, per_feature.mean(1), zero, "exact")

    if variant == "hidden_relu" or n_features > max_exact_features:
        errors, stderr = _monte_carlo_loss(W, b, p, imp, variant, correlated, anticorrelated, mc_samples, seed)
        per_feature = imp * errors
        return ExpectedLoss(per_feature, per_feature.mean(1), stderr.detach(), "monte_carlo")

    patterns = _all_patterns(n_features)
    probs = _pattern_probabilities(patterns, p, correlated, anticorrelated)
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


# ----------------------------------------------------------------------------------------------------------------
# k-gon templates (d_hidden = 2)
# ----------------------------------------------------------------------------------------------------------------


def _polygon_features(k: int, n_features: int, features) -> tuple[int, ...]:
    if not 1 <= int(k) <= n_features:
        raise ValueError(f"k must be in 1..{n_features}; got {k}")
    features = tuple(range(k)) if features is None else tuple(int(f) for f in features)
    if len(features) != k or len(set(features)) != k or any(not 0 <= f < n_features for f in features):
        raise ValueError(f"features must be {k} distinct indices in 0..{n_features - 1}; got {features}")
    return features


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
    layout = _polygon_features(k, n_features, features)
    ignored = _per_feature_vector(ignored_bias, "ignored_bias", n_features)
    # Tensors keep their autograd graph, so the loss can be differentiated in norm and bias.
    W, b = _template_batch([layout], n_features, _as_float64(norm).reshape(1), _as_float64(bias).reshape(1), ignored)
    return W[0], b[0]


def _per_feature_vector(value, name: str, n_features: int | None = None) -> Tensor:
    tensor = _as_float64(value).detach()
    if tensor.ndim != 1 and n_features is None:
        raise ValueError(f"{name} must be a per-feature list; got shape {tuple(tensor.shape)}")
    if tensor.ndim > 1:
        raise ValueError(f"{name} must be a scalar or a per-feature list; got shape {tuple(tensor.shape)}")
    if n_features is None:
        return tensor
    if tensor.ndim == 1 and tensor.shape[0] != n_features:
        raise ValueError(f"{name} has {tensor.shape[0]} entries but there are {n_features} features")
    return torch.broadcast_to(tensor, (n_features,)).clone()


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
    p = _per_feature_vector(feature_probability, "feature_probability")
    imp = _per_feature_vector(importance, "importance", p.shape[0])
    W, b = kgon_weights(k, p.shape[0], norm, bias, p / 2, features=features)
    return expected_loss(W, b, p, imp).per_instance.item()


_GRID_NORMS = np.linspace(0.6, 2.0, 8)
_GRID_BIASES = np.linspace(-1.6, 0.2, 8)


def _optimize_layouts(layouts: list[tuple[int, ...]], p: Tensor, imp: Tensor) -> list[KGonSolution]:
    """Optimize norm and bias of several polygon layouts at once.

    A coarse grid of ``(norm, bias)`` starting points (one batched evaluation) picks the best start of each
    layout; then ``scipy.optimize.minimize(method="trust-exact")`` minimizes the sum of the (independent) instance
    losses with autograd gradients and block-diagonal Hessians.
    """
    n_features = p.shape[0]
    if not torch.isfinite(p).all() or p.min() < 0 or p.max() > 1:
        raise ValueError(f"feature_probability must lie in [0, 1]; got values in [{p.min():g}, {p.max():g}]")
    if not torch.isfinite(imp).all() or imp.min() < 0:
        raise ValueError(f"importance must be finite and non-negative; got minimum {imp.min().item():g}")
    ignored = p / 2  # the best constant output of an unused feature

    def losses(theta: Tensor, runs: list[tuple[int, ...]]) -> Tensor:
        W, b = _template_batch(runs, n_features, theta[:, 0], theta[:, 1], ignored)
        return expected_loss(W, b, p, imp).per_instance  # (B,)

    grid = torch.cartesian_prod(torch.as_tensor(_GRID_NORMS), torch.as_tensor(_GRID_BIASES))  # (G, 2)
    with torch.no_grad():
        on_grid = losses(grid.repeat(len(layouts), 1), [lay for lay in layouts for _ in range(len(grid))])
    theta0 = grid[on_grid.view(len(layouts), -1).argmin(1)]  # (n_layouts, 2): best start per layout
    scale = 1.0 / max(on_grid.view(len(layouts), -1).amin(1).mean().item(), 1e-12)  # keep the objective O(1)

    def derivatives(flat: np.ndarray, hessian: bool):
        theta = torch.tensor(flat.reshape(-1, 2), dtype=DTYPE, requires_grad=True)
        total = losses(theta, layouts).sum() * scale
        (grad,) = torch.autograd.grad(total, theta, create_graph=hessian)
        if not hessian:
            return total.item(), grad.numpy().ravel()
        # Instances are independent, so the Hessian is block diagonal: (n_layouts, 2, 2).
        rows = [torch.autograd.grad(grad[:, j].sum(), theta, retain_graph=True)[0] for j in range(2)]
        blocks = torch.stack(rows, dim=1).detach().numpy()
        return linalg.block_diag(*blocks)

    result = optimize.minimize(
        lambda flat: derivatives(flat, False),
        theta0.numpy().ravel(),
        jac=True,
        hess=lambda flat: derivatives(flat, True),
        method="trust-exact",
        options={"gtol": 1e-9, "maxiter": 200},
    )
    solutions = []
    for layout, (norm, bias) in zip(layouts, result.x.reshape(-1, 2)):
        norm = abs(float(norm))  # W and -W give the same model
        # Report the loss exactly as expected_loss gives it for this single template.
        loss = template_loss(len(layout), p, imp, norm, float(bias), layout)
        solutions.append(KGonSolution(len(layout), loss, norm, float(bias), layout))
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
    p = _per_feature_vector(feature_probability, "feature_probability")
    imp = _per_feature_vector(importance, "importance", p.shape[0])
    layout = _polygon_features(k, p.shape[0], features)
    return _optimize_layouts([layout], p, imp)[0]


def kgon_solutions(n_features: int, feature_probability: float, importance: float = 1.0, ks=None) -> list[KGonSolution]:
    """Optimal regular k-gons (norm and bias optimized) for uniform ``p`` and importance, one per ``k``.

    The objective is :func:`expected_loss` (ReLU output, mean over all ``n_features``) of the template with features
    ``0..k-1`` on the polygon and the others at their best constant ``p/2``; minimized with L-BFGS-B from a few
    starting points.

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
            raise ValueError(f"kgon_solutions needs a scalar {name}; use optimize_template for per-feature values")
    ks = list(range(1, n_features + 1)) if ks is None else [int(k) for k in ks]
    layouts = [_polygon_features(k, n_features, None) for k in ks]
    p = torch.full((n_features,), float(feature_probability), dtype=DTYPE)
    imp = torch.full((n_features,), float(importance), dtype=DTYPE)
    return _optimize_layouts(layouts, p, imp)


def best_kgon(solutions: Sequence[KGonSolution]) -> KGonSolution:
    """The solution with the lowest loss."""
    if not solutions:
        raise ValueError("best_kgon needs at least one solution")
    return min(solutions, key=lambda solution: solution.loss)


# ----------------------------------------------------------------------------------------------------------------
# Chen et al. (2023) closed form
# ----------------------------------------------------------------------------------------------------------------


def chen_feature_terms(W, b) -> Tensor:
    """The per-output-feature terms ``H_i(W, b)`` of Chen et al. (2023), Lemma 3.1, eq. (4).

    With ``a_i = ‖W_i‖²``, ``g_ij = W_i·W_j`` and ``N_i = (1 - a_i)² - 3(1 - a_i) b_i + 3 b_i²``,
    ``H_i = 3 Σ_j ∫_0^1 (δ_ij μ - ReLU(g_ij μ + b_i))² dμ``:

    * ``b_i > 0``: ``N_i + Σ_{j≠i} [g_ij² + 3 g_ij b_i + 3 b_i²  if g_ij + b_i ≥ 0,  else  -b_i³ / g_ij]``;
    * ``b_i ≤ 0``: ``[N_i + b_i³ (1 + a_i) / a_i²  if a_i + b_i > 0,  else 1]``
      ``+ Σ_{j≠i, g_ij + b_i > 0} (g_ij + b_i)³ / g_ij``.

    A dead feature (``W_i = 0``, ``b_i ≤ 0``) contributes exactly 1, as in their Corollary D.2. The pieces are
    re-derived here from that integral (the case split on the sign of ``b_i`` and ``N_i`` are theirs); the tests
    check them against the k-gon critical points and losses the paper reports.

    Args:
        W: ``(r, c)`` or ``(n_instances, r, c)``.
        b: ``(c,)`` or ``(n_instances, c)``.

    Returns:
        ``(c,)`` or ``(n_instances, c)`` float64.
    """
    W, b = _as_float64(W), _as_float64(b)
    if W.ndim not in (2, 3) or b.shape[-1] != W.shape[-1] or b.ndim != W.ndim - 1:
        raise ValueError(
            f"W must be (r, c) or (n_instances, r, c) with b (c,) or (n_instances, c); got {tuple(W.shape)}, "
            f"{tuple(b.shape)}"
        )
    G = torch.einsum("...di,...dj->...ij", W, W)  # (..., c, c)
    a = torch.diagonal(G, dim1=-2, dim2=-1)  # (..., c)
    n_rows = (1 - a) ** 2 - 3 * (1 - a) * b + 3 * b**2
    bias = b.unsqueeze(-1)  # (..., c, 1): the bias of output i
    g_safe = torch.where(G == 0, torch.ones_like(G), G)
    off_positive = torch.where(G + bias >= 0, G**2 + 3 * G * bias + 3 * bias**2, -(bias**3) / g_safe)
    off_negative = torch.where(G + bias > 0, (G + bias) ** 3 / g_safe, torch.zeros_like(G))
    off = torch.where(bias > 0, off_positive, off_negative)
    off = off * (1 - torch.eye(W.shape[-1], dtype=DTYPE))
    a_safe = torch.where(a > 0, a, torch.ones_like(a))
    diag_negative = torch.where(a + b > 0, n_rows + b**3 * (1 + a) / a_safe**2, torch.ones_like(a))
    diag = torch.where(b > 0, n_rows, diag_negative)
    return diag + off.sum(-1)


def chen_closed_form_loss(W, b) -> Tensor:
    """The TMS population loss of Chen et al. (2023), Lemma 3.1: ``L(W, b) = H(W, b) / (3c)``, ``H = Σ_i H_i``.

    Their data (eq. (2)): exactly one of the ``c`` features is active, chosen uniformly, with a value uniform on
    [0, 1]; their loss is ``E‖x - ReLU(WᵀW x + b)‖²`` (a sum over features, no ½, no importance). The terms are
    :func:`chen_feature_terms`.

    Mapping to this package: the same distribution is one anticorrelated set of all features with ``p = 1/c``,
    and with ``importance = 1``::

        expected_loss(...).per_feature[..., i] == H_i / (3c)
        expected_loss(...).per_instance        == L / c      (the mean over features, not the sum)

    Args:
        W: ``(r, c)`` or ``(n_instances, r, c)``.
        b: ``(c,)`` or ``(n_instances, c)``.

    Returns:
        ``()`` or ``(n_instances,)`` float64.
    """
    terms = chen_feature_terms(W, b)
    return terms.sum(-1) / (3 * terms.shape[-1])
