"""Exact integrals of ``(target - ReLU(affine))²`` over the unit interval, square and cube: the building blocks of the
ReLU-output expected loss for up to three active features. One input is integrated in closed form; the others by
Gauss–Legendre on the pieces between the points where the ReLU kink meets a corner of the (sub)cube, where the
integrand is a polynomial, so the rule is exact and only rounding error remains. Everything is elementwise and
broadcasts, so one call integrates every instance, output feature and activity pattern at once.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from lit_superposition.analysis.theory.checks import DTYPE


def _gauss_legendre(n_nodes: int) -> list[tuple[float, float]]:
    """``(node, weight)`` pairs on [0, 1]; exact for polynomials of degree ``2 n_nodes - 1``."""
    nodes, weights = np.polynomial.legendre.leggauss(n_nodes)
    return [((x + 1) / 2, w / 2) for x, w in zip(nodes, weights)]


_GL2 = _gauss_legendre(2)  # cubics
_GL3 = _gauss_legendre(3)  # quintics


def _square_poly_integral(slope, const, lo, hi):
    """``∫_lo^hi (slope v + const)² dv``, elementwise."""
    return slope * slope * (hi**3 - lo**3) / 3 + slope * const * (hi**2 - lo**2) + const * const * (hi - lo)


def line_integral(c: Tensor, beta: Tensor, t_slope, t_const) -> Tensor:
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


def pair_integral(a, c, beta, t_u, t_v, tau) -> Tensor:
    """``∫∫_[0,1]² (t_u u + t_v v + tau - ReLU(beta + a u + c v))² du dv``, exact and elementwise.

    The inner ``v`` integral is closed form; as a function of ``u`` it is a cubic between the points where the
    kink enters or leaves the square (``beta + a u ∈ {0, -c}``), so two Gauss nodes per piece are exact.
    """
    a, c, beta, t_u, t_v, tau = _broadcast_all(a, c, beta, t_u, t_v, tau)
    breaks = [_clamped_root(beta, a), _clamped_root(beta + c, a)]
    return _piecewise_gauss(breaks, _GL2, lambda u: line_integral(c, beta + a * u, t_v, t_u * u + tau))


def triple_integral(a, c, d, beta, t_u, t_v, t_w) -> Tensor:
    """``∫∫∫_[0,1]³ (t_u u + t_v v + t_w w - ReLU(beta + a u + c v + d w))²``, exact and elementwise.

    As a function of ``w`` the inner square integral is a polynomial of degree ≤ 5 between the points where the
    kink plane passes a corner of the square (``beta + d w ∈ {0, -a, -c, -a-c}``); three nodes per piece are exact.
    """
    a, c, d, beta, t_u, t_v, t_w = _broadcast_all(a, c, d, beta, t_u, t_v, t_w)
    breaks = [_clamped_root(beta + corner, d) for corner in (0.0, a, c, a + c)]
    return _piecewise_gauss(breaks, _GL3, lambda w: pair_integral(a, c, beta + d * w, t_u, t_v, t_w * w))
