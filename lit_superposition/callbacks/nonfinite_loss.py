"""Stop at the first NaN or infinite loss, naming the step and the instances, and keep the last good checkpoint."""

from __future__ import annotations

import os
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from torch import Tensor
from typing_extensions import override

from lit_superposition.errors import ConfigError, NonFiniteLossError
from lit_superposition.protocols import CallOutputs, InstanceSplit

MAX_LISTED_INSTANCES = 10


def _listed(indices: Tensor, total: int, unit: str) -> str:
    listed = indices.tolist()
    if len(listed) == total > 1:
        return f"all {total} {unit}s"
    text = ", ".join(str(i) for i in listed[:MAX_LISTED_INSTANCES])
    if len(listed) > MAX_LISTED_INSTANCES:
        text += f", ... ({len(listed)} in all)"
    return f"{unit}{'s' if len(listed) > 1 else ''} {text} (of {total})"


class NonFiniteLossStop(Callback):
    """Stops training when an instance's loss becomes NaN or infinite, before non-finite weights are saved.

    The error names the first bad step and the instances whose loss was not finite there; the
    CLI prints it as one line. Every checkpoint passes through this callback first
    (``on_save_checkpoint``), so a checkpoint of non-finite weights is never written and
    ``last.ckpt`` stays the last good state.

    Cost: nothing on the device between checks. Each call keeps a reference to its steps' detached
    per-feature losses (``outputs["step_losses"]``); every ``check_every_n_steps`` steps, before every checkpoint and at
    the end of training, the kept losses and the weights are tested at once (one device sync).

    Args:
        check_every_n_steps: Steps between checks (default: ``trainer.log_every_n_steps``).

    Example::

        trainer = pl.Trainer(max_steps=1000, callbacks=[NonFiniteLossStop()])
        trainer.fit(LitToyModel(n_instances=8, n_features=5), datamodule)  # raises NonFiniteLossError on NaN
    """

    def __init__(self, check_every_n_steps: int | None = None) -> None:
        if check_every_n_steps is not None and (not isinstance(check_every_n_steps, int) or check_every_n_steps < 1):
            raise ConfigError(f"check_every_n_steps must be a positive integer or null, got {check_every_n_steps!r}")
        self.check_every_n_steps = check_every_n_steps
        self._losses: list[Tensor] = []  # per call: (n_steps, n_instances, n_features), detached
        self._first_step = 0
        self._interval = 1

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._interval = self.check_every_n_steps or trainer.log_every_n_steps
        self._losses = []

    def next_required_step(self, trainer: pl.Trainer, step: int) -> int | None:
        return None  # it keeps the losses of every step of a call

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: CallOutputs, batch: Any, batch_idx: int
    ) -> None:
        losses = outputs["step_losses"]  # (n_steps, n_instances, n_features): every step of the call
        if not self._losses:
            self._first_step = outputs["first_step"]  # the step of the first loss (before its update)
        # A reference, not a copy: the module makes a new detached tensor every call.
        self._losses.append(losses)
        if sum(map(len, self._losses)) >= self._interval:
            self.check(trainer, pl_module)

    @override
    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        # Called while the checkpoint is assembled, before it is written: raising here keeps the file unwritten.
        self.check(trainer, pl_module)

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.check(trainer, pl_module)

    #: What the error calls one trained model.
    UNIT = "instance"

    def finite_weights(self, pl_module: pl.LightningModule) -> Tensor:
        """``(n,)`` bool: whether each trained model's weights are all finite."""
        model = pl_module.model
        return model.W.isfinite().all(dim=2).all(dim=1) & model.b.isfinite().all(dim=1)

    def check(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Test the kept losses and the weights; raise :class:`NonFiniteLossError` naming the first bad step."""
        bad_weights = ~self.finite_weights(pl_module)  # (n,)
        n = len(bad_weights)
        losses = torch.cat(self._losses) if self._losses else bad_weights.new_zeros(0, n, 1, dtype=torch.float32)  # (steps, n, terms)
        bad_loss = ~losses.isfinite().all(dim=2)  # (steps, n)
        bad_weights = bad_weights.to(bad_loss.device)
        found = bool(bad_loss.any() | bad_weights.any())  # syncs the device
        if trainer.world_size > 1 and not isinstance(trainer.strategy, InstanceSplit):
            # The weights are shared but the data is not: whichever rank sees it first stops them all.
            # (Every rank of a sharded run holds every instance's losses and weights: they agree already.)
            found = trainer.strategy.reduce_boolean_decision(found, all=False)
        last_step = self._first_step + len(losses) - 1
        self._losses = []
        if not found:
            return
        if bad_loss.any():
            first = int(bad_loss.any(dim=1).nonzero()[0])
            what = f"at step {self._first_step + first} in {_listed(bad_loss[first].nonzero().flatten(), n, self.UNIT)}"
            what = f"non-finite loss (NaN or inf) {what}"
        elif bad_weights.any():
            what = f"non-finite weights after step {last_step} in {_listed(bad_weights.nonzero().flatten(), n, self.UNIT)}"
        else:
            what = f"non-finite loss in another process by step {last_step}"
        checkpoint = getattr(trainer.checkpoint_callback, "last_model_path", "") or ""
        kept = f"the last good checkpoint is kept: {checkpoint}" if os.path.isfile(checkpoint) else "no checkpoint was written yet"
        raise NonFiniteLossError(f"training diverged: {what}; {kept} (try a lower optimizer.lr)")
