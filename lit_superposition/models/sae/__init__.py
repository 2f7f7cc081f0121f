"""Sparse autoencoders on toy activations: many SAEs side by side behind one contract (:class:`SparseAutoencoder`).

A variant is chosen by name in :data:`SAE_VARIANTS` (``relu``, ``topk``, ``jumprelu``); one module holds SAEs
of one dictionary size, :class:`SAEGroups` holds several sizes.
"""

from __future__ import annotations

from lit_superposition.models.sae.base import SAEOutput, SparseAutoencoder
from lit_superposition.models.sae.groups import SAEGroups
from lit_superposition.models.sae.jumprelu import JumpReLUSAE
from lit_superposition.models.sae.relu import ReLUSAE
from lit_superposition.models.sae.resampling import Resampled, resample_dead_latents, resample_seeds, reset_optimizer_state
from lit_superposition.models.sae.topk import TopKSAE

#: The bundled SAE variants by name.
SAE_VARIANTS: dict[str, type[SparseAutoencoder]] = {"relu": ReLUSAE, "topk": TopKSAE, "jumprelu": JumpReLUSAE}

__all__ = [
    "SAE_VARIANTS",
    "JumpReLUSAE",
    "ReLUSAE",
    "Resampled",
    "SAEGroups",
    "SAEOutput",
    "SparseAutoencoder",
    "TopKSAE",
    "resample_dead_latents",
    "resample_seeds",
    "reset_optimizer_state",
]
