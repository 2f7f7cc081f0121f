"""LitToyModel: a model variant, its importance-weighted objective, and logging."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor
from typing_extensions import override

from lit_superposition.data.grid import PhaseGrid
from lit_superposition.data.specs import SpecLike, resolve_importance
from lit_superposition.errors import ConfigError
from lit_superposition.models import model_class

MAX_DEFAULT_LOGGED_INSTANCES = 32


class LitToyModel(pl.LightningModule):
    """Trains many toy models of one variant side by side.

    The loss is ``Σ_i mean_{batch, f} importance[i, f] · (y - x')²``: mean over batch and features,
    summed over instances, as in the Anthropic notebook and ARENA, so instances never interact. The
    target ``y`` is ``x`` (reconstruction) or ``|x|`` (computation, ARENA 1.3.1).

    Args:
        n_instances: Models trained side by side (linked from the data section by the CLI).
        n_features: Features per instance (linked from the data section by the CLI).
        d_hidden: Hidden dimensions per instance.
        variant: The model: ``relu_output`` (default, ``x' = ReLU(Wᵀ W x + b)``), ``linear_output``
            (``x' = Wᵀ W x + b``), ``hidden_relu`` (``x' = ReLU(Wᵀ ReLU(W x) + b)``), ``computation``
            (``y' = ReLU(W_out ReLU(W x) + b)``, untied), or the class
            path ``module.Class`` of your own :class:`~lit_superposition.models.ToyModel` subclass.
        importance: Per-feature weight of the loss: a scalar, per-feature list, matrix or spec.
        init_seeds: A base seed (instance ``i`` gets ``base + i``) or one seed per instance.
        instances: Instances whose loss is logged as ``train_loss/instance_NNN``
            (default: the first 32).
        repeats: Instances per setting (linked from the data section by the CLI): instance ``i`` is
            setting ``i // repeats``, repeat ``i % repeats``; a per-instance ``importance`` gives one
            row per setting. Init seeds stay distinct per instance.
        target: What the output should be (linked from the data section by the CLI): ``"identity"``,
            ``x`` itself, or ``"abs"``, ``|x|`` (meaningful with signed data, ``data.values: signed``).
        grid: A phase diagram's grid (linked from the data section by the CLI): it sets its
            feature's importance per point, over what ``importance`` gives.

    Attributes:
        per_feature_loss: The latest ``(n_instances, n_features)`` per-feature loss, detached; the
            surface that callbacks read.

    Example::

        module = LitToyModel(n_instances=8, n_features=5, d_hidden=2)
        trainer = pl.Trainer(max_steps=1000)
        trainer.fit(module, SparseFeatureDataModule(n_instances=8, n_features=5))
    """

    def __init__(
        self,
        n_instances: int,
        n_features: int,
        d_hidden: int = 2,
        variant: str = "relu_output",
        importance: SpecLike = 1.0,
        init_seeds: int | list[int] = 0,
        instances: list[int] | None = None,
        repeats: int = 1,
        target: str = "identity",
        grid: PhaseGrid | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if target not in ("identity", "abs"):
            raise ConfigError(f"target must be 'identity' or 'abs', got {target!r}")
        self.target = target
        try:
            self.model = model_class(variant)(n_instances, n_features, d_hidden, init_seeds)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        self.repeats = repeats
        importance_values = resolve_importance(importance, n_instances, n_features, repeats)
        if grid is not None:
            grid.check(n_instances, n_features, repeats)
            importance_values = grid.apply_importance(importance_values, repeats)
        self.register_buffer("importance", importance_values, persistent=False)
        self.instances = self._validate_instances(instances, n_instances)
        self.per_feature_loss: Tensor | None = None

    @staticmethod
    def _validate_instances(instances: Sequence[int] | None, n_instances: int) -> list[int]:
        if instances is None:
            return list(range(min(n_instances, MAX_DEFAULT_LOGGED_INSTANCES)))
        bad = [i for i in instances if not 0 <= i < n_instances]
        if bad:
            raise ConfigError(f"instances {bad} out of range: instances are 0..{n_instances - 1}")
        return list(instances)

    @override
    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def objective(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The loss and the per-feature loss of one batch.

        Args:
            x: ``(n_instances, batch, n_features)``.

        Returns:
            The scalar loss and the ``(n_instances, n_features)`` per-feature loss (importance-weighted,
            averaged over the batch).
        """
        # None: reconstruct x itself (and the ReLU-output model keeps its fused pass).
        target = x.abs() if self.target == "abs" else None  # (n_instances, batch, n_features)
        per_feature_loss = self.model.per_feature_loss(x, self.importance, target=target)  # (n_instances, n_features)
        return per_feature_loss.mean(dim=1).sum(), per_feature_loss

    @override
    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        loss, per_feature_loss = self.objective(batch)
        self.per_feature_loss = per_feature_loss.detach()
        if (self.global_step + 1) % self.trainer.log_every_n_steps == 0:
            self._log_losses(loss.detach(), batch_size=batch.shape[1])
        return loss

    def _log_losses(self, loss: Tensor, batch_size: int) -> None:
        """Log ``train/loss`` and the per-instance losses (called on logging steps only)."""
        per_instance = self.per_feature_loss.mean(dim=1)[self.instances]  # (len(instances),)
        values = torch.cat([loss.reshape(1), per_instance]).tolist()  # syncs the device, once
        # A CPU tensor: the progress bar reads the last logged value after every step, without a device sync.
        self.log("train/loss", torch.tensor(values[0]), prog_bar=True, batch_size=batch_size)
        # self.log costs about 0.3 ms a call, and Lightning revisits every logged key after every later
        # step: the per-instance losses go to the loggers directly, at the step Lightning logs at.
        metrics = {f"train_loss/instance_{i:03d}": value for i, value in zip(self.instances, values[1:])}
        for logger in self.loggers:
            logger.log_metrics(metrics, step=self.global_step)

    @override
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Checkpoints of release 0.1 carry no recorded initial state: theirs was the seeds'.
        state = checkpoint["state_dict"]
        for name, value in self.model.initial_state().items():
            state.setdefault(f"model.initial_{name}", value)

    @override
    def configure_optimizers(self) -> torch.optim.Optimizer:
        # The Anthropic notebook's optimizer; LightningCLI's --optimizer/--lr_scheduler replace it. The
        # fused implementation updates each parameter in one kernel instead of about ten small ones.
        return torch.optim.AdamW(self.parameters(), lr=1e-3, fused=self.device.type in ("cpu", "cuda"))
