"""Per-feature gradient norms, ``‖∂L/∂W[i, :, f]‖`` and ``|∂L/∂b[i, f]|`` (seed 000, figs. 5 and 7)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.optim import Optimizer
from typing_extensions import override

from lit_superposition.callbacks.base import MeasurementCallback


def feature_grad_norms(W_grad: Tensor, b_grad: Tensor) -> tuple[Tensor, Tensor]:
    """The gradient norm of each feature's column of ``W`` and of its bias.

    Args:
        W_grad: ``(n_instances, d_hidden, n_features)``.
        b_grad: ``(n_instances, n_features)``.

    Returns:
        ``‖∂L/∂W[i, :, f]‖`` and ``|∂L/∂b[i, f]|``, each ``(n_instances, n_features)``.
    """
    return W_grad.norm(dim=1), b_grad.abs()


class FeatureGradNorms(MeasurementCallback):
    """Logs the gradient norm of every feature of the chosen instances, read just before the optimizer step.

    Tags: ``grad_norm_W/instance_NNN/feature_FF`` and ``grad_norm_b/instance_NNN/feature_FF``, shown as
    one multi-line chart per instance and quantity in TensorBoard's Custom Scalars tab. The gradients
    are read in ``on_before_optimizer_step``, after accumulation and AMP unscaling, before clipping.

    Args:
        every_n_steps: Steps between measurements (default: ``trainer.log_every_n_steps``).
        instances: Instances to log (default: the first 8).

    Example::

        trainer = pl.Trainer(callbacks=[FeatureGradNorms(every_n_steps=10, instances=[0, 3])])
    """

    def __init__(self, every_n_steps: int | None = None, instances: Sequence[int] | None = None) -> None:
        super().__init__(every_n_steps, instances)
        self._tags: list[str] = []

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        n_features = pl_module.model.n_features
        self._tags = self.feature_tags("grad_norm_W", n_features) + self.feature_tags("grad_norm_b", n_features)

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.register_feature_charts(
            trainer, pl_module, {"grad norm ‖∂L/∂W_f‖": "grad_norm_W", "grad norm |∂L/∂b_f|": "grad_norm_b"}
        )

    @override
    def next_required_step(self, trainer: pl.Trainer, step: int) -> int | None:
        return None  # read inside the optimizer step, which every step of a call passes through

    @override
    def on_train_batch_end(self, *args: Any, **kwargs: Any) -> None:
        pass  # measured in on_before_optimizer_step

    @override
    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Optimizer) -> None:
        step = trainer.global_step + 1  # the step this update completes
        if not self.schedule.is_due(step):
            return
        grads = pl_module.model.gradients()  # every rank: in a sharded run it gathers the ranks' slices
        if not trainer.is_global_zero or "W" not in grads or "b" not in grads:
            return
        W_norm, b_norm = feature_grad_norms(grads["W"][self.chosen_index], grads["b"][self.chosen_index])  # (k, n_features) each
        values = torch.cat([W_norm.flatten(), b_norm.flatten()]).detach().cpu().tolist()  # syncs the device
        self.log_scalars(trainer, dict(zip(self._tags, values)), step)
