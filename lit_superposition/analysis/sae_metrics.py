"""Sparse autoencoders scored against the true features and by the usual SAE metrics: pure functions, no Lightning.

A toy model is the one place where the features are known: column ``f`` of the source's ``W``
``(d_hidden, n_features)`` is feature ``f``'s direction in the activations ``h = W x`` the SAE reads.
Recovery compares those directions with the SAE's decoder rows ``W_dec`` ``(d_latent, d_in)``,
``d_in = d_hidden``; only represented features (``‖W_f‖ > 0.5``, as the geometry's) count.

Every function works on all SAEs at once: tensors carry a leading SAE axis. The features of SAE ``i``
are its source instance's (``W[source_of_sae]``).

Example::

    features = source.W.detach()[source_of_sae]            # (n_saes, d_in, n_features)
    recovery = feature_recovery(sae.W_dec.detach(), features)
    recovery.mmcs, recovery.matched_cosine, recovery.n_recovered  # (n_saes,) each
    out = sae(h)
    l0(out.latents), l0(x)                                  # the SAE's L0 against the data's true L0
    explained_variance(h, out.reconstruction), l2_ratio(h, out.reconstruction)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from lit_superposition.analysis.geometry import EPS

#: Features with ``‖W_f‖`` above this are represented (the geometry's threshold).
REPRESENTED = 0.5
#: A feature counts as recovered when its matched latent's cosine is at least this.
RECOVERED = 0.9


def feature_cosines(W_dec: Tensor, features: Tensor) -> Tensor:
    """Cosine similarity of every true feature with every latent's decoder direction.

    Signed: a latent pointing at ``−W_f`` does not recover feature ``f`` (latents are nonnegative).

    Args:
        W_dec: ``(n_saes, d_latent, d_in)``, decoder rows.
        features: ``(n_saes, d_in, n_features)``, the true feature directions (columns).

    Returns:
        ``(n_saes, n_features, d_latent)``; 0 for a zero feature or latent.
    """
    latents = W_dec / W_dec.norm(dim=2, keepdim=True).clamp_min(EPS)  # (n_saes, d_latent, d_in)
    truth = features / features.norm(dim=1, keepdim=True).clamp_min(EPS)  # (n_saes, d_in, n_features)
    return torch.einsum("sli,sif->sfl", latents, truth)


@dataclass(frozen=True)
class FeatureRecovery:
    """How well each SAE's dictionary recovers its source's represented features.

    Attributes:
        mmcs: Mean max cosine similarity, ``(n_saes,)``: the mean over represented features of the
            best cosine any latent reaches (Sharkey et al. 2022). NaN when no feature is represented.
        matched_cosine: The mean over represented features of the cosine of the latent matched to it
            one to one (Hungarian matching, maximal total cosine); a feature left without a latent (more
            features than latents) scores 0. ``(n_saes,)``, NaN when none is represented.
        n_recovered: Represented features whose matched cosine is at least ``threshold``, ``(n_saes,)``.
        n_represented: ``(n_saes,)``.
        max_cosine: The best cosine per feature, ``(n_saes, n_features)``; NaN where not represented.
        matched_latent: The latent matched to each feature, ``(n_saes, n_features)``; -1 where none.
        threshold: The cosine above which a matched feature counts as recovered.
    """

    mmcs: Tensor
    matched_cosine: Tensor
    n_recovered: Tensor
    n_represented: Tensor
    max_cosine: Tensor
    matched_latent: Tensor
    threshold: float


def feature_recovery(
    W_dec: Tensor,
    features: Tensor,
    threshold: float = RECOVERED,
    represented_above: float = REPRESENTED,
    latent_mask: Tensor | None = None,
) -> FeatureRecovery:
    """MMCS, the Hungarian-matched cosine and the features recovered, for every SAE.

    Args:
        W_dec: ``(n_saes, d_latent, d_in)``, decoder rows.
        features: ``(n_saes, d_in, n_features)``, the source's ``W`` of each SAE's instance.
        threshold: Matched cosine from which a feature counts as recovered (default 0.9).
        represented_above: Feature norm above which a feature counts (default 0.5).
        latent_mask: ``(n_saes, d_latent)`` bool, the latents that may match (e.g. the live ones);
            default all.

    Returns:
        :class:`FeatureRecovery`.
    """
    cosines = feature_cosines(W_dec, features).detach().double().cpu()  # (n_saes, n_features, d_latent)
    represented = (features.detach().norm(dim=1) > represented_above).cpu()  # (n_saes, n_features)
    allowed = torch.ones(cosines.shape[0], cosines.shape[2], dtype=torch.bool) if latent_mask is None else latent_mask.cpu()
    usable = cosines.masked_fill(~allowed.unsqueeze(1), float("-inf"))
    best = usable.amax(dim=2) if usable.shape[2] else torch.full(represented.shape, float("-inf"), dtype=torch.float64)
    best = torch.where(torch.isfinite(best), best, torch.zeros_like(best))  # no usable latent: cosine 0
    max_cosine = torch.where(represented, best, torch.full_like(best, float("nan")))
    n_represented = represented.sum(dim=1)
    mmcs = max_cosine.nansum(dim=1) / n_represented  # NaN (0/0) when nothing is represented

    # Off the hot path: one small assignment problem per SAE.
    matched_latent = torch.full(represented.shape, -1, dtype=torch.long)
    matched = torch.zeros(represented.shape, dtype=torch.float64)
    for s in range(cosines.shape[0]):
        rows = torch.nonzero(represented[s]).flatten()
        columns = torch.nonzero(allowed[s]).flatten()
        if len(rows) == 0 or len(columns) == 0:
            continue
        scores = cosines[s][rows][:, columns].numpy()
        r, c = linear_sum_assignment(scores, maximize=True)
        matched_latent[s, rows[r]] = columns[torch.from_numpy(np.asarray(c))]
        matched[s, rows[r]] = torch.from_numpy(scores[r, c])
    matched_cosine = matched.sum(dim=1) / n_represented
    n_recovered = ((matched >= threshold) & represented & (matched_latent >= 0)).sum(dim=1)
    return FeatureRecovery(
        mmcs=mmcs.float(),
        matched_cosine=matched_cosine.float(),
        n_recovered=n_recovered,
        n_represented=n_represented,
        max_cosine=max_cosine.float(),
        matched_latent=matched_latent,
        threshold=threshold,
    )


def l0(activity: Tensor) -> Tensor:
    """The mean number of nonzero entries per input: ``(n, batch, k)`` → ``(n,)``.

    Of an SAE's latents it is the SAE's L0; of the source's features ``x`` it is the data's true L0
    (``Σ_f p_f`` in expectation).
    """
    return (activity != 0).sum(dim=2).double().mean(dim=1).float()


def dead_latents(latents: Tensor) -> Tensor:
    """The latents never active over the batch: ``(n_saes, batch, d_latent)`` → bool ``(n_saes, d_latent)``.

    Count them with ``.sum(dim=1)``; over a window of steps, OR the live ones (``~dead``) of each batch.
    """
    return ~(latents != 0).any(dim=1)


def explained_variance(h: Tensor, reconstruction: Tensor) -> Tensor:
    """``1 − Σ‖h − ĥ‖² / Σ‖h − mean(h)‖²`` over the batch, per SAE: ``(n_saes,)``.

    One minus the fraction of variance unexplained (FVU, as SAEBench reports it): the residual sum of
    squares over the total variance of ``h`` about its batch mean, both summed over dimensions (the
    quantity SAELens's ``explained_variance`` names). 1 is perfect; 0 is no better than the mean.

    Args:
        h: ``(n_saes, batch, d_in)``.
        reconstruction: ``ĥ``, the same shape.
    """
    h, reconstruction = h.double(), reconstruction.double()
    residual = (h - reconstruction).square().sum(dim=(1, 2))
    total = (h - h.mean(dim=1, keepdim=True)).square().sum(dim=(1, 2))
    return (1.0 - residual / total).float()


def l2_ratio(h: Tensor, reconstruction: Tensor, min_norm: float = 1e-4) -> Tensor:
    """Shrinkage as SAELens's ``l2_ratio``: the mean of ``‖ĥ‖ / ‖h‖`` over inputs, per SAE: ``(n_saes,)``.

    Below 1 the SAE shrinks its reconstructions (an L1 penalty does). Inputs with ``‖h‖ <= min_norm``
    are left out: sparse toy data has many ``h = 0`` (no feature active), where the ratio means
    nothing (SAELens divides those by 1 instead). NaN if every input is left out.

    Args:
        h: ``(n_saes, batch, d_in)``.
        reconstruction: ``ĥ``, the same shape.
        min_norm: Inputs with a smaller norm are left out.
    """
    norm_in = h.double().norm(dim=2)  # (n_saes, batch)
    norm_out = reconstruction.double().norm(dim=2)
    counted = norm_in > min_norm
    ratio = torch.where(counted, norm_out / norm_in.clamp_min(min_norm), torch.zeros_like(norm_in))
    return (ratio.sum(dim=1) / counted.sum(dim=1)).float()


def relative_reconstruction_bias(h: Tensor, reconstruction: Tensor) -> Tensor:
    """``γ = E‖ĥ‖² / E[ĥ · h]`` per SAE, ``(n_saes,)``: SAELens's ``relative_reconstruction_bias``.

    Rajamanoharan et al. 2024 ("Improving dictionary learning with gated sparse autoencoders", eq. 10).

    The scale ``ĥ`` would need to be divided by to best fit ``h``: below 1 is shrinkage, 1 is none.
    Inputs with ``h = 0`` add only to the numerator (``‖ĥ‖²``), as they should: a reconstruction of
    nothing that is not nothing.
    """
    h, reconstruction = h.double(), reconstruction.double()
    return (reconstruction.square().sum(dim=(1, 2)) / (reconstruction * h).sum(dim=(1, 2))).float()
