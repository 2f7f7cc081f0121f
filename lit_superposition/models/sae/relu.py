"""The ReLU SAE with an L1 penalty (Anthropic, "Towards Monosemanticity", 2023; ARENA 1.3.1's ``ToySAE``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from typing_extensions import override

from lit_superposition.models.sae.base import SparseAutoencoder, per_sae


class ReLUSAE(SparseAutoencoder):
    """``a = ReLU(W_enc (h − b_dec) + b_enc)``, trained on reconstruction plus an L1 penalty on ``a``.

    The loss is ARENA's normalization, per SAE::

        loss = mean_batch [ mean_{d_in} (h − ĥ)²  +  sparsity_coefficient · Σ_latents |a| ]

    (Anthropic's ``‖h − ĥ‖²`` sums over ``d_in``: their λ is ``sparsity_coefficient / d_in``.) With the
    decoder rows at unit norm, ``Σ |a|`` equals Anthropic's decoder-norm-weighted L1.

    Args:
        n_saes: SAEs trained side by side; they never interact.
        d_in: The dimension of the activations ``h``.
        d_latent: The dictionary size: latents per SAE.
        sparsity_coefficient: The L1 coefficient (``>= 0``): one number, or one per SAE. ARENA's
            default 0.2.
        init_seeds: A base seed (SAE ``i`` gets ``base + i``) or one seed per SAE.

    Example::

        sae = ReLUSAE(n_saes=8, d_in=2, d_latent=5, sparsity_coefficient=[0.1] * 4 + [0.3] * 4)
        out = sae(h)  # h: (8, batch, 2)
        out.loss.sum().backward()
    """

    architecture = "relu"

    def __init__(
        self,
        n_saes: int,
        d_in: int,
        d_latent: int,
        sparsity_coefficient: float | Sequence[float] = 0.2,
        init_seeds: int | Sequence[int] = 0,
    ) -> None:
        super().__init__(n_saes, d_in, d_latent, init_seeds)
        coefficients = per_sae("sparsity_coefficient", sparsity_coefficient, n_saes, float, 0.0)
        self.register_buffer("sparsity_coefficient", torch.tensor(coefficients))  # (n_saes,)
        self._register_state()

    @override
    def activation(self, pre: Tensor) -> Tensor:
        return pre.relu()

    @override
    def sparsity(self, pre: Tensor, latents: Tensor) -> Tensor:
        """``mean_batch Σ_latents |a|`` (``a >= 0``), ``(n_saes,)``."""
        return latents.sum(dim=(1, 2)) / latents.shape[1]
