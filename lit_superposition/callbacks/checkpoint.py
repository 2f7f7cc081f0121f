"""ModelCheckpoint that always leaves ``last.ckpt`` at the step where training stopped."""

from __future__ import annotations

import os
import warnings
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from typing_extensions import override

from lit_superposition.steps import next_multiple


class RunCheckpoint(ModelCheckpoint):
    """:class:`~pytorch_lightning.callbacks.ModelCheckpoint` whose ``last.ckpt`` is the state where fit stopped.

    Lightning writes ``last.ckpt`` only together with a periodic checkpoint, so a run of 1500 steps
    that saves every 1000 ends with a ``last.ckpt`` of step 1000. This one also writes it when
    training ends for any other reason: ``max_steps`` reached, or a clean stop after Ctrl-C or
    SIGTERM (see :class:`~lit_superposition.callbacks.GracefulStop`). A run that diverges never gets
    here: :class:`~lit_superposition.callbacks.NonFiniteLossStop` refuses to save non-finite weights,
    so ``last.ckpt`` stays the last good state.

    Args:
        **kwargs: Passed to :class:`~pytorch_lightning.callbacks.ModelCheckpoint`; the CLI sets
            ``save_last=True`` and ``every_n_train_steps=1000``.

    Example::

        trainer = pl.Trainer(max_steps=1500, callbacks=[RunCheckpoint(save_last=True, every_n_train_steps=1000)])
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.every_n_train_steps = kwargs.get("every_n_train_steps") or 0
        self.time_based = kwargs.get("train_time_interval") is not None
        self._saved_at: int | None = None  # the step of the last periodic save

    def next_required_step(self, trainer: pl.Trainer, step: int) -> int | None:
        """The next periodic save: the call ends there (see :class:`~lit_superposition.protocols.StepScheduled`)."""
        return next_multiple(step, self.every_n_train_steps) if self.every_n_train_steps > 0 else None

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # Between saves, return at once (Lightning's own checks cost a few microseconds every call).
        every = self.every_n_train_steps
        if not self.time_based and (every < 1 or trainer.global_step % every):
            return
        with warnings.catch_warnings():
            # With manual optimization Lightning warns that the checkpoint holds the weights after the
            # optimizer step: it does, as with automatic optimization, and global_step counts that step.
            warnings.filterwarnings("ignore", message=r".*ModelCheckpoint with manual optimization.*")
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        self._saved_at = trainer.global_step

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.save_last and self.dirpath and trainer.global_step != self._saved_at and not trainer.sanity_checking:
            path = os.path.join(self.dirpath, f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}")
            trainer.save_checkpoint(path, weights_only=False)
            self.last_model_path = path
        super().on_train_end(trainer, pl_module)
