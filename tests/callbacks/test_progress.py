"""The progress bar counts optimizer steps, also when one call runs several of them."""

from __future__ import annotations

import pytorch_lightning as pl

from lit_superposition import LitToyModel, SparseFeatureDataModule
from lit_superposition.callbacks import StepProgressBar


class RecordingBar(StepProgressBar):
    """Notes what the bar shows after every call, and every count it is ever set to."""

    def __init__(self) -> None:
        super().__init__(update_every_n_steps=10)
        self.shown: list[tuple[int, float]] = []  # (global_step, the bar's completed count)
        self.counts: list[float] = []  # every completed count given to the training bar

    def on_train_start(self, trainer, pl_module):
        super().on_train_start(trainer, pl_module)
        update = self.progress.update

        def recording_update(task_id, **kwargs):
            if task_id == self.train_progress_bar_id and "completed" in kwargs:
                self.counts.append(kwargs["completed"])
            update(task_id, **kwargs)

        self.progress.update = recording_update

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        task = next(task for task in self.progress.tasks if task.id == self.train_progress_bar_id)
        self.shown.append((trainer.global_step, task.completed))


def test_the_bar_shows_the_optimizer_step_and_never_steps_back(tmp_path):
    bar = RecordingBar()
    trainer = pl.Trainer(max_steps=100, max_epochs=-1, logger=False, callbacks=[bar], enable_checkpointing=False,
                         enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(LitToyModel(4, 5, steps_per_call=16), SparseFeatureDataModule(4, 5, batch_size=16))
    shown = [completed for _, completed in bar.shown]
    assert shown[-1] == 100
    assert bar.counts and bar.counts == sorted(bar.counts)  # never back to a count of calls: rich's rate stays true
    assert len(bar.shown) < 100  # several steps per call
    # Redrawn whenever a multiple of 10 steps was passed: it is never more than a call behind.
    assert all(step - completed < 16 for step, completed in bar.shown)
