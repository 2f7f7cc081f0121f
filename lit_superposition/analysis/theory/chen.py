"""The closed-form TMS population loss of Chen et al. (2023), Lemma 3.1, for their data (exactly one feature active,
uniform on [0, 1]) and unweighted MSE: per output feature a sum of one-dimensional integrals in closed form. It
cross-checks :func:`~lit_superposition.analysis.theory.expected_loss` and places our k-gons beside the paper's.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lit_superposition.analysis.theory import checks
from lit_superposition.analysis.theory.checks import DTYPE
from lit_superposition.errors import ConfigError


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
    W, b = checks.as_float64(W), checks.as_float64(b)
    if W.ndim not in (2, 3) or b.shape[-1] != W.shape[-1] or b.ndim != W.ndim - 1:
        raise ConfigError(
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
