"""Every protocol between lit-superposition's parts, declared once.

A callback written the way Lightning's docs teach needs none of these: the step loop
(:mod:`lit_superposition.steps`) gives it every optimizer step as Lightning would with one step per
call. What is here is optional, and each is checked with ``isinstance`` (they are runtime-checkable),
never by looking for an undeclared name.

What a callback can tell the loop:

- :class:`StepScheduled`: "call me only where a call ends, and end a call at these steps". Such a
  callback's ``on_train_batch_start``/``on_train_batch_end`` run once per call (Lightning's own
  calls), and ``outputs`` of ``on_train_batch_end`` carries every step of the call (:class:`CallOutputs`).
  This is the fast path the bundled instruments take; without it a callback's per-batch hooks run after
  every optimizer step, with that step's ``batch``, ``batch_idx`` and ``outputs`` (:class:`StepOutputs`).

What the loop gives callbacks: :class:`StepOutputs` per step, :class:`CallOutputs` per call.

What the end-of-fit report asks of other callbacks: :class:`ReportExtension` (add to ``report.json``)
and :class:`InstanceRoles` (what each instance is, e.g. base, patched or donor).

What the loop asks of data and strategies: :class:`StepData` (a batch per step key) and
:class:`InstanceSplit` (a strategy whose processes train disjoint slices of the instances).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypedDict, runtime_checkable

from torch import Tensor

if TYPE_CHECKING:
    import pytorch_lightning as pl
    from rich.table import Table

    from lit_superposition.analysis.report_schema import Report


class StepOutputs(TypedDict):
    """What ``training_step`` gives for one optimizer step: ``outputs`` of a per-step hook."""

    loss: Tensor  #: () the summed loss of the step, detached
    per_feature_loss: Tensor  #: (n_instances, n_features), importance-weighted, detached


class CallOutputs(StepOutputs):
    """What ``training_step`` returns for one call: ``outputs`` of a :class:`StepScheduled` callback's hook.

    ``loss`` and ``per_feature_loss`` are the call's last step's.
    """

    step_losses: Tensor  #: (n_steps, n_instances, n_features): every step of the call, detached
    first_step: int  #: the global step before the call's first optimizer step


@runtime_checkable
class StepScheduled(Protocol):
    """A callback that says at which steps it must run, and is otherwise called once per call."""

    def next_required_step(self, trainer: pl.Trainer, step: int) -> int | None:
        """The first step after ``step`` at whose end this callback must run (None: no such step).

        The call that starts after ``step`` ends there; at the end of every call the callback's
        ``on_train_batch_end`` gets :class:`CallOutputs` with every step of the call.
        """
        ...


@runtime_checkable
class ReportExtension(Protocol):
    """A callback that adds to ``report.json`` before the end-of-fit report writes it (rank zero)."""

    def extend_report(self, report: Report, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Table | None:
        """Add keys to ``report`` (declared in :mod:`lit_superposition.analysis.report_schema`); may return a table to print."""
        ...


@runtime_checkable
class InstanceRoles(Protocol):
    """A callback that knows what each instance of the run is (titles, chart categories, chosen curves)."""

    def instance_roles(self) -> list[str]:
        """One label per instance, e.g. ``["base", "patched", "donor", ...]``."""
        ...


@runtime_checkable
class StepData(Protocol):
    """A datamodule that draws the batch of a step itself, on the training device."""

    def make_batch(self, step: int, rank: int = 0, device: Any = "cpu") -> Tensor:
        """``(n_instances, batch, n_features)``: a pure function of ``(step, rank)`` and the data seed.

        Datamodules used with :class:`InstanceSplit` strategies also take ``instances: slice``, the rows to draw.
        """
        ...


@runtime_checkable
class InstanceSplit(Protocol):
    """A strategy whose processes train disjoint slices of the instances (instance sharding)."""

    @property
    def instance_rows(self) -> slice:
        """The instances this process trains: its rows of every instanced tensor and of the stream."""
        ...

    @property
    def data_rank(self) -> int:
        """Whose stream every process reads: the processes are one run, split."""
        ...

    def gather_instances(self, tensors: Sequence[Tensor]) -> list[Tensor]:
        """Every process's rows joined, instance axis first (a collective: every process calls it)."""
        ...

    def sync_model(self, pl_module: pl.LightningModule) -> None:
        """Bring every instance's trained weights into ``pl_module.model`` (a collective)."""
        ...
