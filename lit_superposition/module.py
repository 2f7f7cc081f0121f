"""LitToyModel: a model variant, its importance-weighted objective, and logging."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ProgressBar
from pytorch_lightning.utilities import rank_zero_warn
from pytorch_lightning.utilities.model_helpers import is_overridden
from torch import Tensor
from typing_extensions import override

from lit_superposition.data.grid import PhaseGrid
from lit_superposition.data.specs import SpecLike, resolve_importance
from lit_superposition.errors import ConfigError
from lit_superposition.models import model_class

MAX_DEFAULT_LOGGED_INSTANCES = 32


def next_multiple(step: int, every: int) -> int:
    """The first multiple of ``every`` after ``step``: where calls and interval callbacks stop."""
    return (step // every + 1) * every


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
        steps_per_call: Optimizer steps per ``training_step`` call (manual optimization): Lightning's
            fixed cost per call is paid once for up to this many steps. Weights are bitwise those of
            ``1`` on a CPU, ``global_step`` counts optimizer steps, and a call ends early at every
            step a callback must see (:meth:`steps_this_call`), so instruments, checkpoints and
            resume mean what they mean with ``1``. Each step draws its own batch from the
            datamodule's ``make_batch``.

    Attributes:
        per_feature_loss: The latest ``(n_instances, n_features)`` per-feature loss, detached.
        step_losses: ``(n_steps, n_instances, n_features)``: the per-feature loss of every optimizer
            step of the latest call, detached (one row unless ``steps_per_call > 1``); with
            ``per_feature_loss``, the surface that callbacks read.

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
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if not isinstance(steps_per_call, int) or isinstance(steps_per_call, bool) or steps_per_call < 1:
            raise ConfigError(f"steps_per_call must be a positive integer, got {steps_per_call!r}")
        self.steps_per_call = steps_per_call
        # Several optimizer steps per call are only possible when the module steps the optimizer itself.
        self.automatic_optimization = steps_per_call == 1
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
        self.step_losses: Tensor | None = None
        self._call_ends: list[Any] = []  # each callback's next_required_step
        self._one_step_per_call = False
        self._backward_hooks = False

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

    @property
    def draws_own_batches(self) -> bool:
        """Whether each optimizer step draws its batch from the datamodule itself (``steps_per_call > 1``):
        the loader's item then only marks the call."""
        return self.steps_per_call > 1

    def check_trainer(self, trainer: pl.Trainer) -> None:
        """Raise :class:`ConfigError` for a trainer setting that several steps per call cannot honour."""
        if self.steps_per_call == 1:
            return
        k = f"model.steps_per_call={self.steps_per_call}"
        if trainer.accumulate_grad_batches != 1:
            raise ConfigError(f"{k} needs trainer.accumulate_grad_batches=1 (every step is an optimizer step), got {trainer.accumulate_grad_batches}")
        if "mixed" in str(trainer.precision):
            raise ConfigError(f"{k} runs in full precision: trainer.precision={trainer.precision!r} is not supported, use 32-true or steps_per_call=1")
        if trainer.gradient_clip_val:
            raise ConfigError(f"{k} cannot clip gradients (trainer.gradient_clip_val={trainer.gradient_clip_val}): set it to null or use steps_per_call=1")

    @override
    def setup(self, stage: str) -> None:
        if self.draws_own_batches and stage == "fit":
            self.check_trainer(self.trainer)
            if not callable(getattr(self.trainer.datamodule, "make_batch", None)):
                raise ConfigError(f"model.steps_per_call={self.steps_per_call} needs a datamodule with make_batch(step, rank, device)")

    @override
    def on_fit_start(self) -> None:
        if not self.draws_own_batches:
            return
        # A callback that runs after every call and does not say which steps it needs may count on
        # seeing every step (as the README's own example once did): it gets one step per call.
        self._call_ends, blind = [], []
        for callback in self.trainer.callbacks:
            required = getattr(callback, "next_required_step", None)
            if callable(required):
                self._call_ends.append(required)
            elif not isinstance(callback, ProgressBar) and any(
                is_overridden(hook, callback) for hook in ("on_train_batch_start", "on_train_batch_end")
            ):
                blind.append(type(callback).__name__)
        self._one_step_per_call = bool(blind)
        if blind:
            rank_zero_warn(
                f"{', '.join(blind)} run after every call and declare no next_required_step(trainer, step):"
                f" training one optimizer step per call (model.steps_per_call={self.steps_per_call} unused)"
            )
        # Backward hooks, where anything defines them, run through manual_backward (slower: every callback is visited).
        self._backward_hooks = any(
            is_overridden(hook, owner) for owner in (self, *self.trainer.callbacks) for hook in ("on_before_backward", "on_after_backward")
        )
        for config in self.trainer.lr_scheduler_configs:
            if config.interval != "step" or config.frequency != 1 or config.reduce_on_plateau:
                raise ConfigError(
                    f"model.steps_per_call={self.steps_per_call} steps schedulers every optimizer step:"
                    f" {type(config.scheduler).__name__} has interval={config.interval!r}, frequency={config.frequency}"
                )

    @override
    def training_step(self, batch: Tensor | int, batch_idx: int) -> Tensor | None:
        if self.draws_own_batches:
            self._run_steps(self.steps_this_call(self.global_step))
            return None
        loss, per_feature_loss = self.objective(batch)
        self.per_feature_loss = per_feature_loss.detach()
        self.step_losses = self.per_feature_loss.unsqueeze(0)
        if (self.global_step + 1) % self.trainer.log_every_n_steps == 0:
            total = self._log_losses(loss.detach(), self.per_feature_loss, self.global_step)
            self._show_loss(total, batch_size=batch.shape[1])
        return loss

    def steps_this_call(self, step: int) -> int:
        """Optimizer steps of the call that starts after ``step`` steps.

        The call ends at the next multiple of ``steps_per_call`` (so calls stay aligned after a resume
        from any step), at ``trainer.max_steps``, and at the first step at whose end a callback must
        run: any callback may declare it with ``next_required_step(trainer, step) -> int | None``. A
        callback with a per-call hook (``on_train_batch_start``/``_end``) that declares nothing might
        count on seeing every step, so it gets one step per call (and a warning at the start).
        """
        if self._one_step_per_call:
            return 1
        end = next_multiple(step, self.steps_per_call)
        if self.trainer.max_steps > 0:
            end = min(end, self.trainer.max_steps)
        for required in self._call_ends:
            wanted = required(self.trainer, step)
            if wanted is not None and wanted > step:
                end = min(end, wanted)
        return max(end - step, 1)

    def _run_steps(self, n_steps: int) -> None:
        """``n_steps`` optimizer steps, each on its own batch ``make_batch(global_step)``: the same
        operations, in the same order, as ``n_steps`` calls with automatic optimization."""
        optimizer = self.optimizers()
        schedulers = [config.scheduler for config in self.trainer.lr_scheduler_configs]
        data, rank = self.trainer.datamodule, self.global_rank
        distributed = self.trainer.world_size > 1
        params = [p for p in self.parameters() if p.requires_grad] if distributed else []
        first, total = self.global_step, None
        step_losses = torch.empty(n_steps, self.model.n_instances, self.model.n_features, device=self.device)
        for j in range(n_steps):
            step = first + j
            x = data.make_batch(step, rank=rank, device=self.device)  # (n_instances, batch, n_features)
            optimizer.zero_grad()
            loss, per_feature_loss = self.objective(x)
            if distributed:
                self._all_reduce_gradients(loss, params)
            elif self._backward_hooks:
                self.manual_backward(loss)
            else:
                # manual_backward visits every callback's backward hooks, which costs more than the step's
                # math on a small model: skipped where none is defined (mixed precision, which needs it, is refused).
                loss.backward()
            step_losses[j] = per_feature_loss.detach()
            if (step + 1) % self.trainer.log_every_n_steps == 0:
                total = self._log_losses(loss.detach(), step_losses[j], step)
            optimizer.step()
            for scheduler in schedulers:
                scheduler.step()
        self.step_losses = step_losses
        self.per_feature_loss = step_losses[-1]
        if total is not None:
            self._show_loss(total, batch_size=data.batch_size)

    def _all_reduce_gradients(self, loss: Tensor, params: list[Tensor]) -> None:
        """Set every gradient to its mean over the ranks, as DDP's default hook computes it.

        DDP's reducer expects one backward per wrapped forward, and a call holds several: the
        gradients are taken with ``torch.autograd.grad`` (which the reducer does not see) and averaged
        here in one flat all-reduce, divided before the sum like DDP's own.
        """
        grads = torch.autograd.grad(loss, params)
        flat = torch.cat([g.reshape(-1) for g in grads]).div_(self.trainer.world_size)
        flat = self.trainer.strategy.reduce(flat, reduce_op="sum")
        for param, value in zip(params, flat.split([g.numel() for g in grads])):
            param.grad = value.view_as(param)

    def _log_losses(self, loss: Tensor, per_feature_loss: Tensor, step: int) -> float:
        """Log ``train/loss`` and the per-instance losses of ``step`` (on logging steps only); return the loss."""
        per_instance = per_feature_loss.mean(dim=1)[self.instances]  # (len(instances),)
        values = torch.cat([loss.reshape(1), per_instance]).tolist()  # syncs the device, once
        # self.log costs about 0.3 ms a call, Lightning revisits every logged key after every later step,
        # and it would log at its count of calls, not of optimizer steps: the losses go to the loggers
        # directly, at the step they belong to.
        metrics = {"train/loss": values[0]}
        metrics |= {f"train_loss/instance_{i:03d}": value for i, value in zip(self.instances, values[1:])}
        for logger in self.loggers:
            logger.log_metrics(metrics, step=step)
        return values[0]

    def _show_loss(self, loss: float, batch_size: int) -> None:
        # A CPU tensor: the progress bar reads the last value after every call, without a device sync.
        self.log("train/loss", torch.tensor(loss), prog_bar=True, logger=False, batch_size=batch_size)

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
