"""Several optimizer steps per Lightning call, invisible to callbacks.

A toy-model step takes well under a millisecond, and Lightning's fixed cost per ``training_step``
call (its loop, hooks, progress bar and logging) is about as large. So one call runs up to
``steps_per_call`` optimizer steps, each on its own batch, and :class:`StepLoop` makes that invisible:

- a callback written as Lightning's docs teach (per-batch hooks, ``trainer.global_step``,
  ``pl_module.model``) gets its ``on_train_batch_start``/``on_train_batch_end`` once per optimizer
  step, with that step's ``batch`` (its features), ``batch_idx`` (the step's index) and ``outputs``
  (:class:`~lit_superposition.protocols.StepOutputs`), and sees the weights, ``global_step``, learning
  rates and logging step it would see with one step per call. It pays for its own work, not for
  Lightning's machinery: the loop calls its hooks itself between steps, and Lightning's own calls at
  the call's edges reach it with the same step's arguments;
- a :class:`~lit_superposition.protocols.StepScheduled` callback (every bundled instrument) says
  which steps must end a call and is called once per call, with every step's losses in ``outputs``;
- ``ModelCheckpoint(every_n_train_steps=N)`` ends calls at its saves, so a checkpoint holds every
  callback's state at that step;
- the weights are bitwise those of one step per call on a CPU: the same operations in the same
  order. Calls stay aligned on multiples of ``steps_per_call``, so a resume from any step is exact.

:class:`CallPlan` (how long a call is) and the schedules (:class:`EveryNSteps`, :class:`AtSteps`)
are pure and tested without a Trainer.
"""

from __future__ import annotations

import bisect
import functools
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, EarlyStopping, ModelCheckpoint
from pytorch_lightning.utilities.model_helpers import is_overridden
from torch import Tensor
from typing_extensions import override

from lit_superposition.errors import ConfigError
from lit_superposition.protocols import CallOutputs, InstanceSplit, StepData, StepOutputs, StepScheduled

PER_BATCH_HOOKS = ("on_train_batch_start", "on_train_batch_end")
BACKWARD_HOOKS = ("on_before_backward", "on_after_backward")


def next_multiple(step: int, every: int) -> int:
    """The first multiple of ``every`` after ``step``."""
    return (step // every + 1) * every


class CallPlan:
    """How many optimizer steps the call after ``step`` runs.

    A call ends at the next multiple of ``steps_per_call`` (so calls stay aligned after a resume
    from any step), at ``max_steps``, and at the first step some callback requires.

    Args:
        steps_per_call: The longest call.
        max_steps: Where training ends (None: never).

    Example::

        CallPlan(16, max_steps=100).steps_this_call(90, required=[95])  # 5
    """

    def __init__(self, steps_per_call: int, max_steps: int | None = None) -> None:
        if not isinstance(steps_per_call, int) or isinstance(steps_per_call, bool) or steps_per_call < 1:
            raise ConfigError(f"steps_per_call must be a positive integer, got {steps_per_call!r}")
        self.steps_per_call, self.max_steps = steps_per_call, max_steps

    def steps_this_call(self, step: int, required: Iterable[int | None] = ()) -> int:
        """Steps of the call that starts after ``step`` steps; ``required`` are the callbacks' next required steps."""
        end = next_multiple(step, self.steps_per_call)
        if self.max_steps is not None:
            end = min(end, self.max_steps)
        for wanted in required:
            if wanted is not None and wanted > step:
                end = min(end, wanted)
        return max(end - step, 1)


class EveryNSteps:
    """Due at every multiple of ``every``: one object answers "is this step due" and "which step is next".

    Example::

        schedule = EveryNSteps(200)
        schedule.is_due(400), schedule.next_after(401)  # True, 600
    """

    def __init__(self, every: int) -> None:
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise ConfigError(f"every_n_steps must be a positive integer, got {every!r}")
        self.every = every

    def is_due(self, step: int) -> bool:
        return step % self.every == 0

    def next_after(self, step: int) -> int:
        return next_multiple(step, self.every)


class AtSteps:
    """Due at the given steps (e.g. log-spaced snapshots)."""

    def __init__(self, steps: Iterable[int]) -> None:
        self.steps = sorted(set(int(s) for s in steps))

    def is_due(self, step: int) -> bool:
        index = bisect.bisect_left(self.steps, step)
        return index < len(self.steps) and self.steps[index] == step

    def next_after(self, step: int) -> int | None:
        index = bisect.bisect_right(self.steps, step)
        return self.steps[index] if index < len(self.steps) else None


class AnyOf:
    """Due where any of ``schedules`` is."""

    def __init__(self, *schedules: EveryNSteps | AtSteps) -> None:
        self.schedules = schedules

    def is_due(self, step: int) -> bool:
        return any(s.is_due(step) for s in self.schedules)

    def next_after(self, step: int) -> int | None:
        return min((n for s in self.schedules if (n := s.next_after(step)) is not None), default=None)


def check_trainer(trainer: pl.Trainer, steps_per_call: int) -> None:
    """Raise a one-line :class:`ConfigError` for a trainer setting the step loop cannot honour."""
    k = f"model.steps_per_call={steps_per_call}"
    if trainer.accumulate_grad_batches != 1:
        raise ConfigError(f"{k} needs trainer.accumulate_grad_batches=1 (every step is an optimizer step), got {trainer.accumulate_grad_batches}")
    if "mixed" in str(trainer.precision):
        raise ConfigError(f"{k} runs in full precision: trainer.precision={trainer.precision!r} is not supported, use 32-true")
    if trainer.gradient_clip_val:
        raise ConfigError(f"{k} cannot clip gradients (trainer.gradient_clip_val={trainer.gradient_clip_val}): set it to null")
    if any(isinstance(callback, EarlyStopping) for callback in trainer.callbacks):
        # It checks at an epoch's end or a validation loop's: the stream is one endless epoch with no
        # validation loop, so it would silently never stop a run (and epochs cut by limit_train_batches
        # would count calls, not steps).
        raise ConfigError("EarlyStopping never runs here (one endless epoch, no validation loop): leave it out;"
                          " trainer.max_steps or Timer(interval='step') end a run")


@dataclass
class _Step:
    """One optimizer step, as its hooks see it."""

    batch: Tensor  # (n_instances, batch, n_features)
    index: int  # the global step before it: its batch_idx
    outputs: StepOutputs
    ended: bool = False  # its on_train_batch_end hooks ran


class _CheckpointSchedule:
    """A Lightning ``ModelCheckpoint`` that saves every N steps, as a :class:`StepScheduled`: calls end at its saves."""

    def __init__(self, checkpoint: ModelCheckpoint, every: int) -> None:
        self.checkpoint, self.every = checkpoint, every

    def next_required_step(self, trainer: pl.Trainer, step: int) -> int:
        return next_multiple(step, self.every)


class StepLoop(Callback):
    """Runs a call's optimizer steps and gives every callback the steps it asked for (see the module docstring).

    :class:`~lit_superposition.module.LitToyModel` returns it from ``configure_callbacks`` and calls
    :meth:`run` in ``training_step``. At the start of fit it sorts the trainer's callbacks: those that
    declare a schedule are left to Lightning (called once per call); those with per-batch hooks and
    no schedule are *routed*: while fit runs, their ``on_train_batch_start``/``_end`` are stand-ins
    that this loop calls after every step, and that turn Lightning's own calls at the edges of a
    call into the first and the last step's. They are restored when fit ends.

    Args:
        steps_per_call: The longest call, in optimizer steps.
    """

    def __init__(self, steps_per_call: int = 16) -> None:
        self.plan = CallPlan(steps_per_call)
        self.scheduled: list[Any] = []
        self.routed: list[Callback] = []
        self.backward_hooks = False
        self._starts: list[Callable[..., Any]] = []
        self._ends: list[Callable[..., Any]] = []
        self._saved: list[tuple[Callback, str, Any]] = []
        self._split: InstanceSplit | None = None
        self._first: _Step | None = None
        self._last: _Step | None = None

    @property
    def steps_per_call(self) -> int:
        return self.plan.steps_per_call

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        check_trainer(trainer, self.steps_per_call)
        if not isinstance(trainer.datamodule, StepData):
            raise ConfigError(
                f"model.steps_per_call={self.steps_per_call}: the datamodule must draw its own batches"
                " (make_batch(step, rank, device), e.g. SparseFeatureDataModule)"
            )

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.plan.max_steps = trainer.max_steps if trainer.max_steps is not None and trainer.max_steps >= 0 else None
        if trainer.strategy.model is not pl_module and self.steps_per_call > 1:
            raise ConfigError(
                f"model.steps_per_call={self.steps_per_call} cannot run inside {type(trainer.strategy.model).__name__},"
                " which expects one backward pass per call: use strategy='ddp_stepwise' (the CLI's 'ddp' is it)"
            )
        for config in trainer.lr_scheduler_configs:
            if config.interval != "step" or config.frequency != 1 or config.reduce_on_plateau:
                raise ConfigError(
                    f"model.steps_per_call={self.steps_per_call} steps schedulers every optimizer step:"
                    f" {type(config.scheduler).__name__} has interval={config.interval!r}, frequency={config.frequency}"
                )
        self._split = trainer.strategy if isinstance(trainer.strategy, InstanceSplit) else None
        self.scheduled, self.routed = [], []
        for callback in trainer.callbacks:
            if callback is self:
                continue
            if isinstance(callback, StepScheduled):
                self.scheduled.append(callback)
            elif isinstance(callback, ModelCheckpoint) and self._route_checkpoint(callback):
                pass
            elif any(is_overridden(hook, callback, Callback) for hook in PER_BATCH_HOOKS):
                self.routed.append(callback)
        self._install()
        # Backward hooks, where anything defines them, run through manual_backward, which visits every
        # callback; on a small model that costs more than the step's math, so it is skipped when nobody listens.
        self.backward_hooks = any(
            is_overridden(hook, owner, parent)
            for owner, parent in ((pl_module, pl.LightningModule), *((c, Callback) for c in trainer.callbacks))
            for hook in BACKWARD_HOOKS
        )

    def _route_checkpoint(self, checkpoint: ModelCheckpoint) -> bool:
        """Schedule a ``ModelCheckpoint`` that saves every N steps (True), else leave it to be routed."""
        # ModelCheckpoint has no public accessor for its step cadence (docs/private-apis.md).
        every = getattr(checkpoint, "_every_n_train_steps", 0) or 0
        if every < 1:
            return False
        self.scheduled.append(_CheckpointSchedule(checkpoint, every))
        # With manual optimization Lightning warns at every save that the weights are those after the
        # optimizer step: they are, as with automatic optimization, and global_step counts that step.
        self._stand_in(checkpoint, "on_train_batch_end", _without_manual_optimization_warning)
        return True

    def _install(self) -> None:
        self._starts, self._ends = [], []
        for callback in self.routed:
            if is_overridden("on_train_batch_start", callback, Callback):
                self._starts.append(self._stand_in(callback, "on_train_batch_start", self._lightning_start))
            if is_overridden("on_train_batch_end", callback, Callback):
                self._ends.append(self._stand_in(callback, "on_train_batch_end", self._lightning_end))

    def _stand_in(self, callback: Callback, hook: str, forward: Callable[..., Any]) -> Callable[..., Any]:
        """Shadow ``callback.hook`` with ``forward(original, ...)`` for this fit; returns the original."""
        original = getattr(callback, hook)
        self._saved.append((callback, hook, vars(callback).get(hook, _MISSING)))
        setattr(callback, hook, functools.partial(forward, original))
        return original

    def _restore(self) -> None:
        for callback, hook, previous in reversed(self._saved):
            if previous is _MISSING:
                vars(callback).pop(hook, None)
            else:
                setattr(callback, hook, previous)
        self._saved = []

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore()

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._restore()

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._restore()

    def _lightning_start(self, original: Callable[..., Any], trainer: pl.Trainer, pl_module: pl.LightningModule,
                         batch: Any, batch_idx: int) -> None:
        """Lightning's call before a call's steps: the first step's ``on_train_batch_start``."""
        step = trainer.global_step
        if self._first is None or self._first.index != step:
            self._first = _Step(self._draw(trainer, pl_module, step), step, None)  # type: ignore[arg-type]
        original(trainer, pl_module, self._first.batch, step)

    def _lightning_end(self, original: Callable[..., Any], trainer: pl.Trainer, pl_module: pl.LightningModule,
                       outputs: Any, batch: Any, batch_idx: int) -> None:
        """Lightning's call after a call's steps: the last step's ``on_train_batch_end``."""
        last = self._last
        if not last.ended:  # a call cut short after a step whose hooks already ran
            original(trainer, pl_module, last.outputs, last.batch, last.index)

    def _draw(self, trainer: pl.Trainer, pl_module: pl.LightningModule, step: int) -> Tensor:
        """Step ``step``'s batch: this rank's stream, or in a split run this process's rows of rank 0's."""
        data = trainer.datamodule
        if self._split is None:
            return data.make_batch(step, rank=trainer.global_rank, device=pl_module.device)
        return data.make_batch(step, rank=self._split.data_rank, device=pl_module.device, instances=self._split.instance_rows)

    def backward(self, pl_module: pl.LightningModule, loss: Tensor) -> None:
        """``manual_backward`` where a backward hook listens, else a plain backward pass."""
        if self.backward_hooks:
            pl_module.manual_backward(loss)
        else:
            loss.backward()

    def run(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
            optimization_step: Callable[[Tensor], StepOutputs]) -> CallOutputs:
        """Run the optimizer steps of one call; returns what the call's ``on_train_batch_end`` hooks get.

        Args:
            optimization_step: One optimizer step on a batch ``(n_instances, batch, n_features)``.
        """
        first = trainer.global_step
        required = [c.next_required_step(trainer, first) for c in self.scheduled]
        if self.routed:
            # What a per-step hook logs with self.log reaches the loggers at a call's end: calls end at
            # every logging step, as with one step per call.
            required.append(next_multiple(first, trainer.log_every_n_steps))
        n_steps = self.plan.steps_this_call(first, required)
        per_step = bool(self._starts or self._ends)
        losses = []
        for j in range(n_steps):
            step = first + j
            x = self._first.batch if j == 0 and self._first is not None and self._first.index == step else self._draw(trainer, pl_module, step)
            if j and self._starts:
                _set_logging_step(trainer, step)
                for start in self._starts:
                    start(trainer, pl_module, x, step)
            outputs = optimization_step(x)
            losses.append(outputs["per_feature_loss"])
            if per_step and self._split is not None:
                # Per-step hooks see every instance, as one process would show them.
                self._split.sync_model(pl_module)
                (every_instance,) = self._split.gather_instances([outputs["per_feature_loss"]])
                outputs = {**outputs, "per_feature_loss": every_instance}
            self._last = _Step(x, step, outputs)
            if j < n_steps - 1 and self._ends:
                _set_logging_step(trainer, step)
                for end in self._ends:
                    end(trainer, pl_module, outputs, x, step)
                self._last.ended = True
            if trainer.should_stop:  # as with one step per call: training ends after this step
                break
        self._first = None
        step_losses = torch.stack(losses)  # (n_steps, n_instances, n_features), this process's rows
        if self._split is not None:
            (step_losses,) = self._split.gather_instances([step_losses.transpose(0, 1)])
            step_losses = step_losses.transpose(0, 1)
            if not per_step:
                self._split.sync_model(pl_module)
        # Lightning adds one after the call: its logging step is then the optimizer step count.
        _set_logging_step(trainer, trainer.global_step - 1)
        return {"loss": self._last.outputs["loss"], "per_feature_loss": step_losses[-1], "step_losses": step_losses,
                "first_step": first}


_MISSING = object()


def _set_logging_step(trainer: pl.Trainer, step: int) -> None:
    """Set Lightning's logging step counter (``self.log``, ``LearningRateMonitor``) to ``step``.

    Lightning counts it per call; with several steps per call it must count optimizer steps, and it
    has no public setter (docs/private-apis.md).
    """
    trainer.fit_loop.epoch_loop._batches_that_stepped = step


def _without_manual_optimization_warning(original: Callable[..., Any], *args: Any) -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*ModelCheckpoint with manual optimization.*")
        original(*args)


def routed_names(callbacks: Sequence[Callback]) -> list[str]:
    """The class names of ``callbacks`` (for messages)."""
    return [type(c).__name__ for c in callbacks]
