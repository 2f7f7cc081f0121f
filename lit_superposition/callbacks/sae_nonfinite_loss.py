"""Stop an SAE run at the first NaN or infinite loss or weight, naming the step and the SAEs."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from typing_extensions import override

from lit_superposition.callbacks.nonfinite_loss import NonFiniteLossStop


class SAENonFiniteLossStop(NonFiniteLossStop):
    """:class:`~lit_superposition.callbacks.NonFiniteLossStop` for :class:`~lit_superposition.sae_module.LitSAE`.

    The same schedule and guarantee (a checkpoint of non-finite weights is never written); the
    losses are each SAE's two terms and the weights every SAE's parameters.

    Args:
        check_every_n_steps: Steps between checks (default: ``trainer.log_every_n_steps``).
    """

    UNIT = "SAE"

    @override
    def finite_weights(self, pl_module: pl.LightningModule) -> torch.Tensor:
        finite = torch.cat([
            torch.stack([getattr(sae, name).isfinite().flatten(1).all(dim=1) for name in sae.parameter_names]).all(dim=0)
            for sae in pl_module.saes.groups
        ])
        return finite[pl_module.saes.position]  # (n_saes,), SAE order
