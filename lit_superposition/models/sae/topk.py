"""The TopK SAE (Gao et al. 2024, "Scaling and evaluating sparse autoencoders"): the k largest latents, no penalty."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from typing_extensions import override

from lit_superposition.errors import ConfigError
from lit_superposition.models.sae.base import SparseAutoencoder, per_sae


class TopKSAE(SparseAutoencoder):
    """``a = ReLU(TopK_k(W_enc (h − b_dec) + b_enc))``: at most ``k`` latents per input, chosen by size.

    The sparsity is set by ``k``, not by a penalty: the loss is the reconstruction loss alone
    (ARENA's ``mean_{d_in}`` normalization, as the other variants; Gao et al.'s auxiliary loss for dead
    latents is left out). The ReLU after the selection (as Gao et al.) drops selected latents that
    are negative, so an input may have fewer than ``k`` active latents, never more.

    Args:
        n_saes: SAEs trained side by side; they never interact.
        d_in: The dimension of the activations ``h``.
        d_latent: The dictionary size: latents per SAE.
        k: Latents kept per input (``1 <= k <= d_latent``): one number, or one per SAE.
        init_seeds: A base seed (SAE ``i`` gets ``base + i``) or one seed per SAE.

    Example::

        sae = TopKSAE(n_saes=4, d_in=20, d_latent=40, k=[1, 2, 4, 8])
    """

    architecture = "topk"

    def __init__(
        self,
        n_saes: int,
        d_in: int,
        d_latent: int,
        k: int | Sequence[int] = 1,
        init_seeds: int | Sequence[int] = 0,
    ) -> None:
        super().__init__(n_saes, d_in, d_latent, init_seeds)
        self.k = per_sae("k", k, n_saes, int, 1)
        for i, k_i in enumerate(self.k):
            if k_i > d_latent:
                where = f" (SAE {i})" if isinstance(k, Sequence) else ""
                raise ConfigError(f"k must be at most the dictionary size d_latent={d_latent}, got k={k_i}{where}")
        self.k_max = max(self.k)
        # Rank r of the sorted top-k_max is kept where r < k of its SAE: (n_saes, 1, k_max).
        self.register_buffer("rank_mask", (torch.arange(self.k_max) < torch.tensor(self.k).unsqueeze(1)).unsqueeze(1))
        self._register_state()

    @override
    def activation(self, pre: Tensor) -> Tensor:
        values, indices = pre.topk(self.k_max, dim=-1)  # (n_saes, batch, k_max)
        values = values.relu()
        if min(self.k) < self.k_max:
            values = values * self.rank_mask.to(values.dtype)
        return torch.zeros_like(pre).scatter(-1, indices, values)
