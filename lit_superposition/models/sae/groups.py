"""SAEs of several dictionary sizes: one :class:`SparseAutoencoder` per size, the SAEs in their given order.

Why groups and not one tensor padded to the largest dictionary: see
:mod:`lit_superposition.models.sae.base`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lit_superposition.errors import ConfigError
from lit_superposition.models.init import resolve_init_seeds
from lit_superposition.models.sae.base import SAEOutput, SparseAutoencoder, per_sae


class SAEGroups(nn.Module):
    """SAE ``i`` of ``n_saes`` lives in the group of its dictionary size; groups are plain SAE modules.

    Settings given one per SAE are split among the groups; single values are shared. Seeds are
    resolved before the split, so SAE ``i`` gets the same initial weights as in one module of its size.

    Args:
        sae_class: The variant, e.g. ``SAE_VARIANTS["relu"]``.
        n_saes: The number of SAEs.
        d_in: The dimension of the activations ``h``.
        d_latent: The dictionary size: one for all, or one per SAE.
        init_seeds: A base seed (SAE ``i`` gets ``base + i``) or one seed per SAE.
        **settings: The variant's other arguments (``sparsity_coefficient``, ``k``, …): a single value or
            one per SAE.

    Attributes:
        groups: One module per distinct ``d_latent``, smallest first.
        indices: The SAEs each group holds, as positions in ``0 … n_saes-1``.

    Example::

        saes = SAEGroups(ReLUSAE, n_saes=6, d_in=2, d_latent=[5, 5, 10, 10, 20, 20], sparsity_coefficient=0.1)
        outputs = saes(h)                      # one SAEOutput per group; h: (6, batch, 2)
        saes.collect(outputs, "loss").sum().backward()
    """

    def __init__(
        self,
        sae_class: type[SparseAutoencoder],
        n_saes: int,
        d_in: int,
        d_latent: int | Sequence[int],
        init_seeds: int | Sequence[int] = 0,
        **settings,
    ) -> None:
        super().__init__()
        if not isinstance(n_saes, int) or isinstance(n_saes, bool) or n_saes < 1:
            raise ConfigError(f"n_saes must be an integer >= 1, got {n_saes!r}")
        self.n_saes = n_saes
        self.d_latents = per_sae("d_latent", d_latent, n_saes, int, 1)
        try:
            seeds = resolve_init_seeds(init_seeds, n_saes)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        for name, value in settings.items():
            if isinstance(value, Sequence) and not isinstance(value, str) and len(value) != n_saes:
                raise ConfigError(f"{name} has {len(value)} values, expected one per SAE ({n_saes}) or a single value")
        self.indices: list[list[int]] = [
            [i for i in range(n_saes) if self.d_latents[i] == size] for size in sorted(set(self.d_latents))
        ]
        groups = []
        for index in self.indices:
            own = {
                name: [value[i] for i in index] if isinstance(value, Sequence) and not isinstance(value, str) else value
                for name, value in settings.items()
            }
            try:
                groups.append(sae_class(len(index), d_in, self.d_latents[index[0]], init_seeds=[seeds[i] for i in index], **own))
            except ConfigError as error:  # name the SAE by its position among all, not within its group
                message = re.sub(r"\(SAE (\d+)\)", lambda match: f"(SAE {index[int(match[1])]})", str(error))
                raise ConfigError(message) from None
        self.groups = nn.ModuleList(groups)
        for g, index in enumerate(self.indices):
            self.register_buffer(f"index_{g}", torch.tensor(index), persistent=False)
        # Where SAE i's row lands in the concatenation of the groups' rows.
        order = [i for index in self.indices for i in index]
        self.register_buffer("position", torch.tensor(order).argsort(), persistent=False)

    def split(self, h: Tensor) -> list[Tensor]:
        """Each group's rows of ``h`` ``(n_saes, …)``, in group order (no copy for a single group)."""
        if len(self.groups) == 1:
            return [h]
        return [h.index_select(0, getattr(self, f"index_{g}")) for g in range(len(self.groups))]

    def forward(self, h: Tensor) -> list[SAEOutput]:
        """One :class:`SAEOutput` per group from ``h`` ``(n_saes, batch, d_in)``."""
        return [sae(part) for sae, part in zip(self.groups, self.split(h))]

    def collect(self, outputs: Sequence[SAEOutput], name: str) -> Tensor:
        """A per-SAE field of the groups' outputs (``loss``, ``reconstruction_loss``, ``sparsity``), in SAE order.

        Returns:
            ``(n_saes,)``.
        """
        values = torch.cat([getattr(out, name) for out in outputs])
        return values if len(self.groups) == 1 else values[self.position]

    def remove_parallel_gradient(self) -> None:
        """:meth:`SparseAutoencoder.remove_parallel_gradient` of every group."""
        for sae in self.groups:
            sae.remove_parallel_gradient()

    def normalize_decoder(self) -> None:
        """:meth:`SparseAutoencoder.normalize_decoder` of every group."""
        for sae in self.groups:
            sae.normalize_decoder()
