"""Dead-latent resampling (Anthropic, "Towards Monosemanticity", 2023, as ARENA 1.3.1's ``resample_advanced``).

Pure functions on an SAE and a batch: the caller (a callback) decides which latents are dead and when,
and resets the optimizer state of what changed (:func:`reset_optimizer_state`).

Example::

    dead = ~ever_active                                        # (n_saes, d_latent), over a window of steps
    result = resample_dead_latents(sae, h, dead, resample_seeds(sae.init_seeds, step))
    reset_optimizer_state(optimizer, sae, result.parameter_masks)
    log(result.n_resampled)                                    # (n_saes,)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from lit_superposition.models.sae.base import EPS, SparseAutoencoder

#: Per-input reconstruction losses all below this: the SAE reconstructs the batch, nothing to sample (ARENA's 1e-6).
LOSS_FLOOR = 1e-6


class Resampled(NamedTuple):
    """What :func:`resample_dead_latents` changed.

    Attributes:
        n_resampled: Latents resampled per SAE, ``(n_saes,)`` (int64).
        latents: Which latents were resampled, ``(n_saes, d_latent)`` bool.
        parameter_masks: ``{name: bool mask of the parameter's shape}``: the entries that were rewritten,
            whose optimizer state (Adam's moments) the caller must reset.
    """

    n_resampled: Tensor
    latents: Tensor
    parameter_masks: dict[str, Tensor]


def resample_seeds(init_seeds: Sequence[int], step: int) -> list[int]:
    """One seed per SAE for a resampling at ``step``: a function of the SAE's own seed and the step only.

    So what SAE ``i`` samples does not depend on the other SAEs, and a resumed run samples the same.
    """
    mask = (1 << 63) - 1
    # Two odd 64-bit multipliers (SplitMix64's): distinct (seed, step) pairs give distinct seeds in practice.
    return [((int(seed) * 0x9E3779B97F4A7C15) ^ (int(step) * 0xBF58476D1CE4E5B9)) & mask for seed in init_seeds]


@torch.no_grad()
def resample_dead_latents(
    sae: SparseAutoencoder, h: Tensor, dead: Tensor, seeds: Sequence[int], encoder_scale: float = 0.5
) -> Resampled:
    """Give each dead latent the direction of an input the SAE reconstructs badly.

    Per SAE, as ARENA's ``resample_advanced``: each input of the batch is drawn with probability
    proportional to the square of its reconstruction loss (``mean_{d_in} (h − ĥ)²``); a dead latent's
    decoder row becomes its input's ``h − b_dec`` scaled to unit norm, its encoder column the same
    direction times ``encoder_scale`` times the mean encoder norm of the SAE's live latents (1 when
    none is live), its encoder bias 0. Every other per-latent parameter (JumpReLU's threshold) goes
    back to its recorded initial value. An SAE whose per-input losses are all below ``LOSS_FLOOR`` is
    left alone.

    Anthropic scales the encoder by 0.2; ARENA's default ``resample_scale`` is 0.5 (used here). Anthropic
    also resets Adam's moments of the rewritten weights: see :func:`reset_optimizer_state`.

    Args:
        sae: The SAEs; changed in place.
        h: A batch of activations, ``(n_saes, batch, d_in)``.
        dead: The latents to resample, ``(n_saes, d_latent)`` bool.
        seeds: One seed per SAE for its draws (e.g. :func:`resample_seeds`).
        encoder_scale: The resampled encoder norm relative to the live latents' mean.

    Returns:
        :class:`Resampled`: the counts per SAE and what changed.
    """
    if tuple(dead.shape) != (sae.n_saes, sae.d_latent):
        raise ValueError(f"dead must have shape (n_saes, d_latent) = {(sae.n_saes, sae.d_latent)}, got {tuple(dead.shape)}")
    if len(seeds) != sae.n_saes:
        raise ValueError(f"seeds has {len(seeds)} values, expected one per SAE ({sae.n_saes})")
    dead = dead.to(h.device, torch.bool)
    loss = (sae(h).reconstruction - h).square().mean(dim=2)  # (n_saes, batch)
    dead = dead & (loss.amax(dim=1) >= LOSS_FLOOR).unsqueeze(1)

    # Inverse-CDF draws from each SAE's own generator (rare and small: a loop over SAEs is fine here).
    uniform = torch.stack(
        [torch.rand(sae.d_latent, generator=torch.Generator().manual_seed(int(seed)), dtype=torch.float64) for seed in seeds]
    ).to(h.device)  # (n_saes, d_latent)
    weights = loss.double().square()
    cdf = weights.cumsum(dim=1)  # (n_saes, batch)
    indices = torch.searchsorted(cdf, uniform * cdf[:, -1:], right=True).clamp_max(h.shape[1] - 1)  # (n_saes, d_latent)
    centred = h - sae.b_dec.unsqueeze(1)  # (n_saes, batch, d_in)
    chosen = centred.gather(1, indices.unsqueeze(2).expand(-1, -1, sae.d_in))  # (n_saes, d_latent, d_in)
    direction = chosen / chosen.norm(dim=2, keepdim=True).clamp_min(EPS)

    live = ~dead
    encoder_norms = sae.W_enc.norm(dim=1)  # (n_saes, d_latent)
    n_live = live.sum(dim=1)
    live_mean = torch.where(
        n_live > 0, (encoder_norms * live).sum(dim=1) / n_live.clamp_min(1), torch.ones_like(encoder_norms[:, 0])
    )  # (n_saes,)

    mask = dead.unsqueeze(2)  # (n_saes, d_latent, 1)
    sae.W_dec.copy_(torch.where(mask, direction.to(sae.W_dec.dtype), sae.W_dec))
    new_encoder = (direction * (encoder_scale * live_mean).view(-1, 1, 1)).transpose(1, 2)  # (n_saes, d_in, d_latent)
    sae.W_enc.copy_(torch.where(dead.unsqueeze(1), new_encoder.to(sae.W_enc.dtype), sae.W_enc))
    sae.b_enc.masked_fill_(dead, 0.0)
    masks = {}
    for name, axis in sae.latent_parameters.items():
        parameter = getattr(sae, name)
        shape = [1] * parameter.ndim
        shape[0], shape[axis] = sae.n_saes, sae.d_latent
        masks[name] = dead.view(shape).expand_as(parameter)
        if name not in ("W_enc", "b_enc", "W_dec"):
            parameter.copy_(torch.where(masks[name], getattr(sae, f"initial_{name}"), parameter))
    return Resampled(dead.sum(dim=1), dead, masks)


@torch.no_grad()
def reset_optimizer_state(optimizer: torch.optim.Optimizer, sae: SparseAutoencoder, parameter_masks: dict[str, Tensor]) -> None:
    """Zero the optimizer's per-entry state (Adam's ``exp_avg``, ``exp_avg_sq``, …) where ``parameter_masks`` is True.

    Only state tensors of the parameter's own shape are touched (a per-tensor ``step`` count is left).
    """
    for name, mask in parameter_masks.items():
        state = optimizer.state.get(getattr(sae, name), {})
        for value in state.values():
            if isinstance(value, Tensor) and value.shape == mask.shape:
                value.masked_fill_(mask.to(value.device), 0)
