"""Every score of a group of SAEs on a set of inputs, against the true features: pure functions, no Lightning.

The pieces are :mod:`lit_superposition.analysis.sae_metrics`; this puts them together the one way the
periodic curves and the end-of-fit report both use, and adds how the dictionary covers the features:
features *split* over several latents, latents that *mix* several features.

Only live latents (nonzero on at least one of the inputs) count towards recovery: a dead latent
whose decoder row happens to point at a feature reconstructs nothing.
"""

from __future__ import annotations

from torch import Tensor

from lit_superposition.analysis.sae_metrics import (
    RECOVERED,
    REPRESENTED,
    dead_latents,
    explained_variance,
    feature_cosines,
    feature_recovery,
    l0,
    l2_ratio,
    relative_reconstruction_bias,
)

#: The per-SAE scores :func:`score_group` returns, each ``(n_saes,)``.
SCALARS = (
    "mmcs", "matched_cosine", "n_recovered", "n_represented", "n_split", "n_mixed", "l0", "dead_latents",
    "explained_variance", "l2_ratio", "relative_reconstruction_bias",
)


def coverage(cosines: Tensor, represented: Tensor, live: Tensor, threshold: float = RECOVERED) -> tuple[Tensor, Tensor]:
    """How the live latents cover the represented features, per SAE.

    Args:
        cosines: ``(n_saes, n_features, d_latent)``, :func:`~lit_superposition.analysis.sae_metrics.feature_cosines`.
        represented: ``(n_saes, n_features)`` bool.
        live: ``(n_saes, d_latent)`` bool.
        threshold: The cosine at which a latent is a feature's.

    Returns:
        ``n_split``: represented features with two or more live latents at ``threshold`` or above (a
        feature split over latents); ``n_mixed``: live latents within ``threshold`` of no represented
        feature (a latent that mixes features, or follows none). Both ``(n_saes,)``.
    """
    close = (cosines >= threshold) & represented.unsqueeze(2) & live.unsqueeze(1)  # (n_saes, n_features, d_latent)
    n_split = (close.sum(dim=2) >= 2).sum(dim=1)
    n_mixed = (live & ~close.any(dim=1)).sum(dim=1)
    return n_split, n_mixed


def score_group(
    h: Tensor, latents: Tensor, reconstruction: Tensor, W_dec: Tensor, features: Tensor,
    threshold: float = RECOVERED, represented_above: float = REPRESENTED,
) -> dict[str, Tensor]:
    """Recovery, coverage and the usual SAE metrics of SAEs of one dictionary size on the same inputs.

    Args:
        h: The inputs, ``(n_saes, batch, d_in)``.
        latents: ``(n_saes, batch, d_latent)``.
        reconstruction: ``ĥ``, ``(n_saes, batch, d_in)``.
        W_dec: ``(n_saes, d_latent, d_in)``.
        features: The true directions of each SAE's source, ``(n_saes, d_in, n_truth)``.
        threshold: The matched cosine from which a feature counts as recovered.
        represented_above: The norm above which a true direction counts.

    Returns:
        ``{name: (n_saes,)}`` for every name in :data:`SCALARS`, plus ``max_cosine`` ``(n_saes, n_truth)``
        (NaN where not represented), ``matched_latent`` ``(n_saes, n_truth)`` and ``dead`` ``(n_saes, d_latent)``, on the CPU.
    """
    dead = dead_latents(latents).cpu()  # (n_saes, d_latent)
    W_dec, features = W_dec.detach().cpu(), features.detach().cpu()
    recovery = feature_recovery(W_dec, features, threshold, represented_above, latent_mask=~dead)
    represented = features.norm(dim=1) > represented_above  # (n_saes, n_truth)
    n_split, n_mixed = coverage(feature_cosines(W_dec, features), represented, ~dead, threshold)
    return {
        "mmcs": recovery.mmcs, "matched_cosine": recovery.matched_cosine, "n_recovered": recovery.n_recovered,
        "n_represented": recovery.n_represented, "n_split": n_split, "n_mixed": n_mixed,
        "l0": l0(latents).cpu(), "dead_latents": dead.sum(dim=1),
        "explained_variance": explained_variance(h, reconstruction).cpu(), "l2_ratio": l2_ratio(h, reconstruction).cpu(),
        "relative_reconstruction_bias": relative_reconstruction_bias(h, reconstruction).cpu(),
        "max_cosine": recovery.max_cosine, "matched_latent": recovery.matched_latent, "dead": dead,
    }


def represented_l0(feature_probability: Tensor, features: Tensor, represented_above: float = REPRESENTED) -> Tensor:
    """The expected number of active *represented* features per input, ``Σ_{f represented} p_f``: what an ideal SAE's L0 is.

    Args:
        feature_probability: ``(n, n_features)``.
        features: The true directions ``(n, d_in, n_truth)``; with signed values ``n_truth = 2 n_features``
            (a feature counts where either of its signs is represented).

    Returns:
        ``(n,)``.
    """
    represented = features.norm(dim=1) > represented_above  # (n, n_truth)
    n_features = feature_probability.shape[1]
    seen = represented.view(represented.shape[0], -1, n_features).any(dim=1)  # (n, n_features)
    return (feature_probability.double() * seen).sum(dim=1).float()


def recovery_label(n_recovered: int, n_represented: int) -> str:
    """The one-word summary of an SAE, as a run's ``geometry`` column shows it: ``"4/5 recovered"``."""
    return f"{n_recovered}/{n_represented} recovered"


def setting_label(d_latent: int, sparsity_name: str, value: float) -> str:
    """An SAE setting in a few characters: ``"d=5 λ=0.1"`` (a sparsity coefficient) or ``"d=40 k=2"``."""
    return f"d={d_latent} {'k' if sparsity_name == 'k' else 'λ'}={value:g}"
