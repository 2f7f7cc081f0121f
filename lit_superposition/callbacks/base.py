"""What the measurement callbacks share: a schedule, chosen instances, logger access, custom-scalars layout."""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_warn
from tensorboard.compat.proto.summary_pb2 import Summary
from torch import Tensor
from typing_extensions import override

from lit_superposition.errors import ConfigError
from lit_superposition.protocols import InstanceRoles
from lit_superposition.steps import AnyOf, AtSteps, EveryNSteps

#: Instances that get per-feature curves when none are chosen: one chart per instance and quantity
#: stays readable, and 1024 instances would otherwise mean tens of thousands of tags.
DEFAULT_PLOTTED_INSTANCES = 8

# The custom-scalars layout of each TensorBoard writer, merged over all callbacks. TensorBoard shows
# the last layout written to a run, so every callback rewrites the merged whole.
_LAYOUTS: weakref.WeakKeyDictionary[Any, dict[str, dict[str, list[str]]]] = weakref.WeakKeyDictionary()


def tensorboard_writer(trainer: pl.Trainer) -> Any | None:
    """The ``SummaryWriter`` of the trainer's first TensorBoard logger, or None."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


def add_custom_scalars(writer: Any, layout: dict[str, dict[str, list[str]]]) -> None:
    """Merge ``{category: {chart title: [tag regex, ...]}}`` into the run's layout of multi-line charts."""
    merged = _LAYOUTS.setdefault(writer, {})
    for category, charts in layout.items():
        merged.setdefault(category, {}).update(charts)
    writer.add_custom_scalars(
        {category: {title: ["Multiline", tags] for title, tags in charts.items()} for category, charts in merged.items()}
    )


def validate_interval(every_n_steps: int | None) -> None:
    if every_n_steps is not None and (not isinstance(every_n_steps, int) or every_n_steps < 1):
        raise ConfigError(f"every_n_steps must be a positive integer or null (trainer.log_every_n_steps), got {every_n_steps!r}")


def validate_instances(instances: Sequence[int] | None, name: str = "instances") -> list[int] | None:
    if instances is None:
        return None
    chosen = list(instances)
    if not chosen or any(not isinstance(i, int) or i < 0 for i in chosen):
        raise ConfigError(f"{name} must be a non-empty list of instance indices >= 0, got {instances!r}")
    return chosen


def resolve_instances(chosen: list[int] | None, n_instances: int, default: int, name: str = "instances") -> list[int]:
    """The chosen instances, checked against ``n_instances``; default: the first ``default``."""
    if chosen is None:
        return list(range(min(n_instances, default)))
    bad = [i for i in chosen if i >= n_instances]
    if bad:
        raise ConfigError(f"{name} {bad} out of range: instances are 0..{n_instances - 1}")
    return chosen


def instance_labels(trainer: pl.Trainer, pl_module: pl.LightningModule) -> list[str]:
    """What each instance is, for titles: its role in a patch run (``base``, ``patched``, ``donor``,
    from any callback with ``instance_roles()``), else the swept ``p``, else nothing."""
    for callback in trainer.callbacks:
        if isinstance(callback, InstanceRoles):
            return list(callback.instance_roles())
    p = getattr(trainer.datamodule, "feature_probability", None) if trainer.datamodule is not None else None
    if isinstance(p, Tensor) and p.shape[0] > 1 and bool((p != p[:1]).any()):
        return [f"p={row[0]:.3g}" if len(set(row)) == 1 else f"p={row[0]:.3g}…" for row in p.tolist()]
    return [""] * pl_module.model.n_instances


def run_label(trainer: pl.Trainer) -> str:
    """``name/version_N`` of the TensorBoard logger: keeps each run's Custom Scalars categories its own."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
            return f"{logger.name}/{version}"
    return ""


def instance_category(trainer: pl.Trainer, pl_module: pl.LightningModule, i: int, labels: Sequence[str]) -> str:
    """The Custom Scalars category of instance ``i``: run, instance, what it is, and its seed."""
    what = f"{labels[i]}, " if labels[i] else ""
    return f"{run_label(trainer)} · instance {i:03d} ({what}init seed {pl_module.model.init_seeds[i]})"


def default_instances(trainer: pl.Trainer, n_instances: int) -> list[int]:
    """The instances worth curves when none are chosen: every member of each patch triple, else the first 8."""
    for callback in trainer.callbacks:
        if isinstance(callback, InstanceRoles):
            return list(range(min(n_instances, len(callback.instance_roles()))))
    return list(range(min(n_instances, DEFAULT_PLOTTED_INSTANCES)))


class MeasurementCallback(pl.Callback):
    """Base of the measurement callbacks: a schedule, the chosen instances, the logger.

    One schedule object (:attr:`schedule`) answers both "which step must end the call" (this is a
    :class:`~lit_superposition.protocols.StepScheduled` callback) and "is this step due": a subclass
    writes only :meth:`measure`, called at the end of every due step.

    Args:
        every_n_steps: Steps between measurements (default: ``trainer.log_every_n_steps``).
        instances: Instances that get per-feature curves (default: every member of each patch
            triple in a patch run, else the first 8).
    """

    def __init__(self, every_n_steps: int | None = None, instances: Sequence[int] | None = None) -> None:
        validate_interval(every_n_steps)
        self.every_n_steps = every_n_steps
        self.instances = validate_instances(instances)
        self.schedule: EveryNSteps | AtSteps | AnyOf = EveryNSteps(every_n_steps or 1)
        self.chosen: list[int] = []
        self.chosen_index: Tensor | None = None  # the chosen instances, on the training device
        self._warned = False

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.schedule = self.make_schedule(trainer)
        n_instances = pl_module.model.n_instances
        self.chosen = default_instances(trainer, n_instances) if self.instances is None else resolve_instances(self.instances, n_instances, 0)
        # The strategy's device, not pl_module.device: the module is moved there only after setup.
        self.chosen_index = torch.tensor(self.chosen, device=trainer.strategy.root_device)

    def make_schedule(self, trainer: pl.Trainer) -> EveryNSteps | AtSteps | AnyOf:
        """The steps to measure at: every ``every_n_steps`` (default ``trainer.log_every_n_steps``)."""
        return EveryNSteps(self.every_n_steps or trainer.log_every_n_steps)

    def next_required_step(self, trainer: pl.Trainer, step: int) -> int | None:
        """The next due step: the call ends there (see :class:`~lit_superposition.protocols.StepScheduled`)."""
        return self.schedule.next_after(step)

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.schedule.is_due(trainer.global_step):  # off schedule: no work, no device sync
            self.measure(trainer, pl_module, trainer.global_step)

    def measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule, step: int) -> None:
        """Measure at ``step`` (the weights are those after it)."""
        raise NotImplementedError

    def writer(self, trainer: pl.Trainer) -> Any | None:
        """The TensorBoard writer on rank zero; None elsewhere, and a warning (once) when there is none."""
        if not trainer.is_global_zero:
            return None
        writer = tensorboard_writer(trainer)
        if writer is None and not self._warned:
            self._warned = True
            rank_zero_warn(f"{type(self).__name__}: no TensorBoard logger, so no figures or custom-scalar charts")
        return writer

    @staticmethod
    def log_scalars(trainer: pl.Trainer, metrics: dict[str, float], step: int) -> None:
        """Write scalars through every Lightning logger (rank zero only).

        A TensorBoard logger gets them as one event: ``add_scalar`` writes one event per tag, which
        costs tens of microseconds each and, at a few hundred tags per interval, most of what the
        instruments cost.
        """
        if not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            writer = logger.experiment if isinstance(logger, TensorBoardLogger) else None
            # torch's SummaryWriter takes tensorboard's protos (tensorboardX has its own); its public
            # file_writer is open from construction until close().
            file_writer = getattr(writer, "file_writer", None)
            if file_writer is None or not type(writer).__module__.startswith("torch.utils.tensorboard"):
                logger.log_metrics(metrics, step=step)
                continue
            summary = Summary(value=[Summary.Value(tag=tag, simple_value=value) for tag, value in metrics.items()])
            file_writer.add_summary(summary, step)

    def feature_tags(self, quantity: str, n_features: int) -> list[str]:
        """``quantity/instance_NNN/feature_FF`` for every chosen instance and feature, instance-major."""
        return [f"{quantity}/instance_{i:03d}/feature_{f:02d}" for i in self.chosen for f in range(n_features)]

    def register_feature_charts(self, trainer: pl.Trainer, pl_module: pl.LightningModule, charts: dict[str, str]) -> None:
        """One multi-line chart (one line per feature) per chosen instance and ``{title: quantity}``."""
        writer = self.writer(trainer)
        if writer is None:
            return
        labels = instance_labels(trainer, pl_module)
        add_custom_scalars(
            writer,
            {
                instance_category(trainer, pl_module, i, labels): {
                    title: [rf"^{quantity}/instance_{i:03d}/feature_\d+$"] for title, quantity in charts.items()
                }
                for i in self.chosen
            },
        )
