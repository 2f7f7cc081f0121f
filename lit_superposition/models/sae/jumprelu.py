"""The JumpReLU SAE (Rajamanoharan et al. 2024, "Jumping Ahead"): a learned threshold per latent and an L0 penalty."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from typing_extensions import override

from lit_superposition.errors import ConfigError
from lit_superposition.models.sae.base import SparseAutoencoder, per_sae


class JumpReLUSAE(SparseAutoencoder):
    """``a = z · H(z − θ)`` with ``z = W_enc (h − b_dec) + b_enc`` and a threshold ``θ > 0`` per latent.

    The loss is the reconstruction loss plus ``sparsity_coefficient · mean_batch L0(a)``, where
    ``L0 = Σ_latents H(z − θ)``. Neither the step nor the L0 has a useful derivative in ``θ``, so both
    use the paper's straight-through estimators with a rectangle kernel of width ``bandwidth`` (ε)::

        ∂/∂θ [z · H(z − θ)] := −(θ/ε) · 1[|z − θ| < ε/2]      ∂/∂z [z · H(z − θ)] = H(z − θ)
        ∂/∂θ  H(z − θ)      := −(1/ε) · 1[|z − θ| < ε/2]      ∂/∂z  H(z − θ)      := 0

    ``θ = exp(log_threshold)`` is trained in log space (as SAELens and ARENA do), so it stays positive.

    Args:
        n_saes: SAEs trained side by side; they never interact.
        d_in: The dimension of the activations ``h``.
        d_latent: The dictionary size: latents per SAE.
        sparsity_coefficient: The L0 coefficient (``>= 0``): one number, or one per SAE.
        threshold_init: The initial ``θ`` of every latent (``> 0``; ARENA 1.3.1's 0.1).
        bandwidth: ε of the straight-through estimators (``> 0``; ARENA 1.3.1's 0.01).
        init_seeds: A base seed (SAE ``i`` gets ``base + i``) or one seed per SAE.

    Example::

        sae = JumpReLUSAE(n_saes=4, d_in=2, d_latent=5, sparsity_coefficient=[1e-3, 1e-2, 0.1, 1.0])
    """

    architecture = "jumprelu"
    latent_parameters = {**SparseAutoencoder.latent_parameters, "log_threshold": 1}

    def __init__(
        self,
        n_saes: int,
        d_in: int,
        d_latent: int,
        sparsity_coefficient: float | Sequence[float] = 0.01,
        threshold_init: float = 0.1,
        bandwidth: float = 0.01,
        init_seeds: int | Sequence[int] = 0,
    ) -> None:
        super().__init__(n_saes, d_in, d_latent, init_seeds)
        coefficients = per_sae("sparsity_coefficient", sparsity_coefficient, n_saes, float, 0.0)
        for name, value in (("threshold_init", threshold_init), ("bandwidth", bandwidth)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")
        self.threshold_init, self.bandwidth = float(threshold_init), float(bandwidth)
        self.register_buffer("sparsity_coefficient", torch.tensor(coefficients))  # (n_saes,)
        self._register_state()

    @override
    def sae_initial_state(self, seed: int) -> dict[str, Tensor]:
        """The shared initial tensors, and ``log_threshold = log(threshold_init)`` for every latent."""
        state = super().sae_initial_state(seed)
        state["log_threshold"] = torch.full((self.d_latent,), math.log(self.threshold_init))
        return state

    @property
    def threshold(self) -> Tensor:
        """``θ = exp(log_threshold)``, ``(n_saes, d_latent)``."""
        return self.log_threshold.exp()

    @override
    def activation(self, pre: Tensor) -> Tensor:
        return _JumpReLU.apply(pre, self.threshold, self.bandwidth)

    @override
    def sparsity(self, pre: Tensor, latents: Tensor) -> Tensor:
        """``mean_batch Σ_latents H(z − θ)``: the mean L0, ``(n_saes,)``."""
        active = _Step.apply(pre, self.threshold, self.bandwidth)  # (n_saes, batch, d_latent)
        return active.sum(dim=(1, 2)) / pre.shape[1]


def _window(pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
    """The rectangle kernel ``1[|z − θ| < ε/2]``, ``(n_saes, batch, d_latent)``."""
    return ((pre - threshold).abs() < bandwidth / 2).to(pre.dtype)


def _open(ctx: Any, pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
    """``H(z − θ)`` ``(n_saes, batch, d_latent)``; keeps ``z``, ``θ`` ``(n_saes, 1, d_latent)`` and ``ε`` for backward."""
    threshold = threshold.unsqueeze(1)
    ctx.save_for_backward(pre, threshold)
    ctx.bandwidth = bandwidth
    return (pre > threshold).to(pre.dtype)


class _JumpReLU(torch.autograd.Function):
    """``z · H(z − θ)``; ``θ`` ``(n_saes, d_latent)`` is shared by the batch, so its gradient sums over it."""

    @staticmethod
    def forward(ctx: Any, pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
        return pre * _open(ctx, pre, threshold, bandwidth)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        pre, threshold = ctx.saved_tensors
        grad_pre = grad * (pre > threshold).to(grad.dtype)
        grad_threshold = -(threshold.squeeze(1) / ctx.bandwidth) * (grad * _window(pre, threshold, ctx.bandwidth)).sum(dim=1)
        return grad_pre, grad_threshold, None


class _Step(torch.autograd.Function):
    """``H(z − θ)``, with no gradient in ``z`` and the straight-through one in ``θ``."""

    @staticmethod
    def forward(ctx: Any, pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
        return _open(ctx, pre, threshold, bandwidth)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, Tensor, None]:
        pre, threshold = ctx.saved_tensors
        grad_threshold = -(1.0 / ctx.bandwidth) * (grad * _window(pre, threshold, ctx.bandwidth)).sum(dim=1)
        return None, grad_threshold, None
