"""Per-instance, per-feature loss averaged over each interval (seed 000, figs. 6 and 8)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor
from typing_extensions import override

from lit_superposition.callbacks.base import MeasurementCallback
from lit_superposition.callbacks.metrics import ElementwiseMean
from lit_superposition.protocols import CallOutputs, InstanceSplit

#: Steps whose losses are stacked on the device before one aggregator update: a torchmetrics update
#: costs tens of microseconds of Python, a copy into the stack a few.
STACKED_STEPS = 64


class FeatureLosses(MeasurementCallback):
    """Logs each chosen instance's per-feature loss, averaged over every step of the interval.

    Every step's per-feature loss (``outputs["step_losses"]`` of each call, ``(n_instances, n_features)`` per
    step, importance-weighted) goes into an :class:`~lit_superposition.callbacks.metrics.ElementwiseMean` on the training device (no sync;
    up to 64 steps are stacked and added in one update, so every step counts exactly once); at the
    end of each interval the mean is logged as ``feature_loss/instance_NNN/feature_FF`` and reset. The
    latest interval mean of all instances stays available as ``interval_mean``.

    Args:
        every_n_steps: Steps averaged per logged point (default: ``trainer.log_every_n_steps``).
        instances: Instances to log (default: the first 8).

    Example::

        trainer = pl.Trainer(callbacks=[FeatureLosses(every_n_steps=100)])
    """

    def __init__(self, every_n_steps: int | None = None, instances: Sequence[int] | None = None) -> None:
        super().__init__(every_n_steps, instances)
        self.mean: ElementwiseMean | None = None
        self.interval_mean: Tensor | None = None  # (n_instances, n_features), on the CPU
        self._tags: list[str] = []
        self._pending: dict[str, Tensor] | None = None
        self._stack: Tensor | None = None  # (STACKED_STEPS, n_instances, n_features), on the device
        self._stacked = 0

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        model = pl_module.model
        # Under DDP each rank's losses are its own data's, and the mean is over all ranks. In a sharded
        # run every rank holds every instance's losses: summing the ranks would count each step once per rank.
        sync = not isinstance(trainer.strategy, InstanceSplit)
        self.mean = ElementwiseMean((model.n_instances, model.n_features), sync_on_compute=sync).to(pl_module.device)
        self._stack = torch.empty(STACKED_STEPS, model.n_instances, model.n_features, device=pl_module.device)
        self._stacked = 0
        if self._pending is not None:
            self.mean.total.copy_(self._pending["total"])
            self.mean.count.copy_(self._pending["count"])
            self._pending = None
        self._tags = self.feature_tags("feature_loss", model.n_features)

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.register_feature_charts(trainer, pl_module, {"loss per feature": "feature_loss"})

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: CallOutputs, batch: Any, batch_idx: int
    ) -> None:
        losses = outputs["step_losses"]  # (n_steps, n_instances, n_features): every step of the call
        if self._stacked + len(losses) > STACKED_STEPS:
            self._flush()
        if len(losses) > STACKED_STEPS:
            self.mean.update(losses)
        else:
            self._stack[self._stacked : self._stacked + len(losses)].copy_(losses)
            self._stacked += len(losses)
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule, step: int) -> None:
        self._flush()
        self.interval_mean = self.mean.compute().detach().cpu()  # syncs the device (and the ranks, under DDP)
        self.mean.reset()
        values = self.interval_mean[self.chosen].flatten().tolist()
        self.log_scalars(trainer, dict(zip(self._tags, values)), step)

    def _flush(self) -> None:
        """Add the stacked steps to the aggregator."""
        if self._stacked:
            self.mean.update(self._stack[: self._stacked])
            self._stacked = 0

    @override
    def state_dict(self) -> dict[str, Any]:
        if self.mean is None:
            return {}
        self._flush()  # a checkpoint holds every step of the unfinished interval
        return {"total": self.mean.total.detach().cpu(), "count": self.mean.count.detach().cpu()}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        if self.mean is None:  # restored before setup: apply there
            self._pending = {k: torch.as_tensor(v) for k, v in state_dict.items()}
        else:
            self.mean.total.copy_(state_dict["total"])
            self.mean.count.copy_(state_dict["count"])
