"""A rich progress bar that redraws every few steps rather than every step."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import RichProgressBar
from typing_extensions import override

from lit_superposition.errors import ConfigError


class StepProgressBar(RichProgressBar):
    """:class:`~pytorch_lightning.callbacks.RichProgressBar` that updates every ``update_every_n_steps``.

    A toy-model step takes about a millisecond; redrawing the bar and its metrics on every step
    would cost a large fraction of that.

    Args:
        update_every_n_steps: Steps between updates of the bar and its metrics.
        **kwargs: Passed to :class:`~pytorch_lightning.callbacks.RichProgressBar`.
    """

    def __init__(self, update_every_n_steps: int = 25, **kwargs: Any) -> None:
        if update_every_n_steps < 1:
            raise ConfigError(f"update_every_n_steps must be >= 1, got {update_every_n_steps}")
        super().__init__(**kwargs)
        self.update_every_n_steps = update_every_n_steps
        self._drawn_at = 0  # the step of the last redraw

    @override
    def _get_train_description(self, current_epoch: int) -> str:
        # The stream is one endless epoch: "Epoch 0/-1" would say nothing.
        return "train"

    @override
    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics

    @property
    @override
    def total_train_batches(self) -> int | float:
        # The run's length in optimizer steps, also after a resume (Lightning counts the resumed epoch).
        return self.trainer.max_steps if self.trainer.max_steps > 0 else float("inf")

    def next_required_step(self, trainer: pl.Trainer, step: int) -> int | None:
        return None  # it redraws at the end of whichever call passes a multiple of update_every_n_steps

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step, every = trainer.global_step, self.update_every_n_steps
        last = trainer.max_steps > 0 and step >= trainer.max_steps
        # Steps, not calls: a call may hold several optimizer steps (model.steps_per_call).
        if last or step // every != self._drawn_at // every:
            self._drawn_at = step
            # The bar counts optimizer steps, not calls: as the index of the last step done, so the
            # bar never steps back to the count of calls (which would garble its rate).
            super().on_train_batch_end(trainer, pl_module, outputs, batch, step - 1)
            if self.progress is not None and self.train_progress_bar_id is not None:
                # Lightning sizes the bar by the resumed epoch's batches: the whole run's steps instead.
                self.progress.update(self.train_progress_bar_id, total=self.total_train_batches)
