"""A rich progress bar of optimizer steps, redrawn every few steps."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ProgressBar
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text
from typing_extensions import override

from lit_superposition.errors import ConfigError


class _StepRate(ProgressColumn):
    """Optimizer steps per second, as rich estimates them."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:,.0f} steps/s" if task.speed else "", style="progress.data.speed")


class StepProgressBar(ProgressBar):
    """Optimizer steps done of ``trainer.max_steps``, the rate, the time left and ``train/loss``.

    A toy-model step takes well under a millisecond: the bar redraws every ``update_every_n_steps``
    steps (at the end of the call that passes them), not every step. It counts optimizer steps,
    also after a resume and when one call runs several steps.

    Args:
        update_every_n_steps: Steps between redraws.

    Attributes:
        progress: The ``rich.progress.Progress`` while training runs (rank zero), else None.
        train_progress_bar_id: Its task.

    Example::

        trainer = pl.Trainer(max_steps=10_000, callbacks=[StepProgressBar(update_every_n_steps=100)])
    """

    def __init__(self, update_every_n_steps: int = 25) -> None:
        super().__init__()
        if not isinstance(update_every_n_steps, int) or update_every_n_steps < 1:
            raise ConfigError(f"update_every_n_steps must be a positive integer, got {update_every_n_steps!r}")
        self.update_every_n_steps = update_every_n_steps
        self.progress: Progress | None = None
        self.train_progress_bar_id: TaskID | None = None
        self._enabled = True
        self._drawn_at = 0  # the step of the last redraw

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    @override
    def disable(self) -> None:
        self._enabled = False

    @override
    def enable(self) -> None:
        self._enabled = True

    def next_required_step(self, trainer: pl.Trainer, step: int) -> int | None:
        return None  # it redraws at the end of whichever call passes a multiple of update_every_n_steps

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._enabled or not trainer.is_global_zero:
            return
        self.progress = Progress(
            TextColumn("train"), BarColumn(), MofNCompleteColumn(), _StepRate(), TimeElapsedColumn(),
            TextColumn("left"), TimeRemainingColumn(), TextColumn("{task.fields[metrics]}"),
            console=Console(), auto_refresh=False,
        )
        self.progress.start()
        total = trainer.max_steps if trainer.max_steps > 0 else None
        self._drawn_at = trainer.global_step
        self.train_progress_bar_id = self.progress.add_task("train", total=total, completed=trainer.global_step, metrics="")

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step, every = trainer.global_step, self.update_every_n_steps
        last = trainer.max_steps > 0 and step >= trainer.max_steps
        if self.progress is None or not (last or step // every != self._drawn_at // every):
            return
        self._drawn_at = step
        metrics = self.get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        shown = "  ".join(f"{name} {value:.4g}" if isinstance(value, float) else f"{name} {value}" for name, value in metrics.items())
        self.progress.update(self.train_progress_bar_id, completed=step, metrics=shown)
        self.progress.refresh()

    def _stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop()

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._stop()

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._stop()
