"""LitToyModel: a model variant, its importance-weighted objective, the optimizer, and logging."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor
from typing_extensions import override

from lit_superposition.data.grid import PhaseGrid
from lit_superposition.data.specs import SpecLike, resolve_importance
from lit_superposition.errors import ConfigError
from lit_superposition.models import model_class
from lit_superposition.models.packed import PackedSets
from lit_superposition.protocols import CallOutputs, StepOutputs
from lit_superposition.schedules import optimization
from lit_superposition.steps import StepLoop

MAX_DEFAULT_LOGGED_INSTANCES = 32


class LitToyModel(pl.LightningModule):
    """Trains many toy models of one variant side by side.

    The loss is ``Σ_i mean_{batch, f} importance[i, f] · (y - x')²``: mean over batch and features,
    summed over instances, as in the Anthropic notebook and ARENA, so instances never interact. The
    target ``y`` is ``x`` (reconstruction) or ``|x|`` (computation, ARENA 1.3.1).

    Each ``training_step`` call runs up to ``steps_per_call`` optimizer steps, each on its own batch
    drawn by the datamodule (:mod:`lit_superposition.steps`); callbacks see every step as with one.

    Args:
        n_instances: Models trained side by side (linked from the data section by the CLI).
        n_features: Features per instance (linked from the data section by the CLI).
        d_hidden: Hidden dimensions per instance.
        variant: The model: ``relu_output`` (default, ``x' = ReLU(Wᵀ W x + b)``), ``linear_output``
            (``x' = Wᵀ W x + b``), ``hidden_relu`` (``x' = ReLU(Wᵀ ReLU(W x) + b)``), ``computation``
            (``y' = ReLU(W_out ReLU(W x) + b)``, untied), or the class path ``module.Class`` of your
            own :class:`~lit_superposition.models.ToyModel` subclass.
        importance: Per-feature weight of the loss: a scalar, per-feature list, matrix or spec.
        init_seeds: A base seed (instance ``i`` gets ``base + i``) or one seed per instance.
        instances: Instances whose loss is logged as ``train_loss/instance_NNN`` (default: the first 32).
        repeats: Instances per setting (linked from the data section by the CLI): instance ``i`` is
            setting ``i // repeats``, repeat ``i % repeats``; a per-instance ``importance`` gives one
            row per setting. Init seeds stay distinct per instance.
        target: What the output should be (linked from the data section by the CLI): ``"identity"``,
            ``x`` itself, or ``"abs"``, ``|x|`` (meaningful with signed data, ``data.values: signed``).
        grid: A phase diagram's grid (linked from the data section by the CLI): it sets its feature's
            importance per point, over what ``importance`` gives.
        steps_per_call: Optimizer steps per ``training_step`` call, at most: the weights are bitwise
            those of ``1`` on a CPU, and ``global_step`` counts optimizer steps.
        optimizer: Makes the optimizer from the parameters (default: AdamW, lr 1e-3, the Anthropic
            notebook's; fused on a GPU). On the command line: ``--model.optimizer SGD --model.optimizer.lr 0.1``.
        lr_scheduler: Makes a learning-rate schedule from the optimizer, stepped every optimizer step.

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
        steps_per_call: int = 16,
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        # The module steps the optimizer itself: several times per call (StepLoop).
        self.automatic_optimization = False
        self.steps = StepLoop(steps_per_call)
        if target not in ("identity", "abs"):
            raise ConfigError(f"target must be 'identity' or 'abs', got {target!r}")
        try:
            self.model = model_class(variant)(n_instances, n_features, d_hidden, init_seeds)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        importance_values = resolve_importance(importance, n_instances, n_features, repeats)
        if grid is not None:
            grid.check(n_instances, n_features, repeats)
            importance_values = grid.apply_importance(importance_values, repeats)
        self.register_buffer("importance", importance_values, persistent=False)  # (n_instances, n_features)
        self.target, self.repeats, self.grid = target, repeats, grid
        self.instances = _logged_instances(instances, n_instances)
        self.optimizer, self.lr_scheduler = optimizer, lr_scheduler
        #: What defines the model: a checkpoint of another definition is not resumed into this one.
        self.definition = {
            "variant": self.model.variant_class.__name__, "n_instances": n_instances, "n_features": n_features,
            "d_hidden": d_hidden, "target": target, "repeats": repeats, "importance": importance_values.tolist(),
        }

    @property
    def steps_per_call(self) -> int:
        return self.steps.steps_per_call

    @override
    def configure_callbacks(self) -> Sequence[Callback]:
        return [self.steps]

    @override
    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def objective(self, x: Tensor | PackedSets) -> tuple[Tensor, Tensor]:
        """The loss and the per-feature loss of a batch: ``(n_instances, batch, n_features)`` points, or
        every instance's finite training set (:class:`~lit_superposition.data.PackedSets`).

        Returns:
            The scalar loss and the ``(n_instances, n_features)`` per-feature loss (importance-weighted,
            averaged over each instance's own points).
        """
        if isinstance(x, PackedSets):
            target = x.x.abs() if self.target == "abs" else None  # (n_rows, CHUNK, n_features)
            per_feature_loss = self.model.per_feature_loss_of_sets(x, self.importance, target)  # (n_instances, n_features)
        else:
            # None: reconstruct x itself (and the ReLU-output model keeps its fused pass).
            target = x.abs() if self.target == "abs" else None  # (n_instances, batch, n_features)
            per_feature_loss = self.model.per_feature_loss(x, self.importance, target=target)  # (n_instances, n_features)
        return per_feature_loss.mean(dim=1).sum(), per_feature_loss

    @override
    def training_step(self, batch: Any, batch_idx: int) -> CallOutputs:
        outputs = self.steps.run(self.trainer, self, self.optimization_step)
        self._log_losses(outputs)
        return outputs

    def optimization_step(self, x: Tensor) -> StepOutputs:
        """One optimizer step on the batch ``x``; what a per-step hook gets as this step's ``outputs``."""
        optimizer = self.optimizers()
        optimizer.zero_grad()
        loss, per_feature_loss = self.objective(x)
        self.steps.backward(self, loss)
        optimizer.step()
        for config in self.trainer.lr_scheduler_configs:
            config.scheduler.step()
        return {"loss": loss.detach(), "per_feature_loss": per_feature_loss.detach()}

    def _log_losses(self, outputs: CallOutputs) -> None:
        """``train/loss`` and ``train_loss/instance_NNN`` at the logging steps of the call."""
        first, every = outputs["first_step"], self.trainer.log_every_n_steps
        logged = [j for j in range(len(outputs["step_losses"])) if (first + j + 1) % every == 0]
        if not logged:
            return
        # Each as the objective reduces it: the same value, bitwise, as the step's own loss.
        per_instance = [outputs["step_losses"][j].mean(dim=1) for j in logged]  # (n_instances,) each
        values = torch.stack([torch.cat([p.sum().reshape(1), p[self.instances]]) for p in per_instance]).tolist()  # syncs
        # Lightning's self.log would log per call, not per optimizer step: the losses go to the loggers directly.
        for j, (total, *losses) in zip(logged, values):
            metrics = {"train/loss": total} | {f"train_loss/instance_{i:03d}": v for i, v in zip(self.instances, losses)}
            for logger in self.loggers:
                logger.log_metrics(metrics, step=first + j)
        # The progress bar reads the last value after every call: a CPU tensor, no device sync.
        self.log("train/loss", torch.tensor(values[-1][0]), prog_bar=True, logger=False, batch_size=1)

    @override
    def configure_optimizers(self) -> Any:
        def default(parameters: Any) -> torch.optim.Optimizer:
            # On a GPU the fused AdamW updates each parameter in one kernel. On a CPU its vectorized body
            # and scalar tail round differently, so an instance's update would depend on how many instances
            # share its tensor (a run split over processes would not reproduce one process bitwise): the standard one.
            return torch.optim.AdamW(parameters, lr=1e-3, fused=self.device.type == "cuda" or None)

        return optimization(self.parameters(), self.optimizer, self.lr_scheduler, default, lambda: self.trainer.max_steps)

    @override
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["model_definition"] = self.definition
        checkpoint["init_seeds"] = [int(seed) for seed in self.model.init_seeds]  # every instance's (-1: from a file)

    @override
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Checkpoints of release 0.1 carry no recorded initial state: theirs was the seeds'.
        state = checkpoint["state_dict"]
        for name, value in self.model.initial_state().items():
            state.setdefault(f"model.initial_{name}", value)


def _logged_instances(instances: Sequence[int] | None, n_instances: int) -> list[int]:
    if instances is None:
        return list(range(min(n_instances, MAX_DEFAULT_LOGGED_INSTANCES)))
    bad = [i for i in instances if not 0 <= i < n_instances]
    if bad:
        raise ConfigError(f"instances {bad} out of range: instances are 0..{n_instances - 1}")
    return list(instances)
