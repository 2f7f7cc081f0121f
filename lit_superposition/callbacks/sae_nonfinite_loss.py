"""Stop an SAE run at the first NaN or infinite loss or weight, naming the step and the SAEs."""

from __future__ import annotations

import os

import pytorch_lightning as pl
import torch
from typing_extensions import override

from lit_superposition.callbacks.nonfinite_loss import NonFiniteLossStop
from lit_superposition.errors import NonFiniteLossError


class SAENonFiniteLossStop(NonFiniteLossStop):
    """:class:`~lit_superposition.callbacks.NonFiniteLossStop` for :class:`~lit_superposition.sae_module.LitSAE`.

    The same schedule and guarantee (a checkpoint of non-finite weights is never written); the
    losses are each SAE's two terms and the weights every SAE's parameters.

    Args:
        check_every_n_steps: Steps between checks (default: ``trainer.log_every_n_steps``).
    """

    @override
    def check(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        n_saes = pl_module.n_saes
        losses = torch.cat(self._losses) if self._losses else torch.zeros(0, n_saes, 1)  # (steps, n_saes, 2)
        bad_loss = ~losses.isfinite().all(dim=2)  # (steps, n_saes)
        finite = torch.cat([
            torch.stack([getattr(sae, name).isfinite().flatten(1).all(dim=1) for name in sae.parameter_names]).all(dim=0)
            for sae in pl_module.saes.groups
        ])[pl_module.saes.position]  # (n_saes,), SAE order
        bad_weights = ~finite.to(bad_loss.device)
        last_step = self._first_step + len(losses) - 1
        self._losses = []
        if not bool(bad_loss.any() | bad_weights.any()):  # syncs the device
            return
        if bad_loss.any():
            first = int(bad_loss.any(dim=1).nonzero()[0])
            what = f"non-finite loss (NaN or inf) at step {self._first_step + first} in {_saes(bad_loss[first], n_saes)}"
        else:
            what = f"non-finite weights after step {last_step} in {_saes(bad_weights, n_saes)}"
        checkpoint = getattr(trainer.checkpoint_callback, "last_model_path", "") or ""
        kept = f"the last good checkpoint is kept: {checkpoint}" if os.path.isfile(checkpoint) else "no checkpoint was written yet"
        raise NonFiniteLossError(f"training diverged: {what}; {kept} (try a lower optimizer.lr)")


def _saes(bad: torch.Tensor, n_saes: int) -> str:
    listed = bad.nonzero().flatten().tolist()
    text = ", ".join(map(str, listed[:10])) + (f", ... ({len(listed)} in all)" if len(listed) > 10 else "")
    return f"SAE{'s' if len(listed) > 1 else ''} {text} (of {n_saes})"
