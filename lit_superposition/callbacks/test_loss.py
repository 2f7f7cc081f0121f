"""TestLoss: each instance's loss on a held-out test set as training goes, beside its training loss."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from rich.table import Table
from typing_extensions import override

from lit_superposition.analysis.finite_data_page import best_per_size
from lit_superposition.analysis.report_schema import Report
from lit_superposition.callbacks.base import MeasurementCallback


class TestLoss(MeasurementCallback):
    """The test loss of a run with finite training sets (``data.dataset_size``); nothing on the endless stream.

    Every ``every_n_steps`` it evaluates every instance on its held-out test set (the datamodule's
    ``test_set``: fresh draws of the same law, from a seed of their own, never in a training set)
    and logs ``val/loss`` (summed over instances, as ``train/loss``) and ``val_loss/instance_NNN``;
    ``val/loss`` is also in ``trainer.callback_metrics``, for ``ModelCheckpoint(monitor="val/loss")``
    to monitor. At the end ``report.json`` gets, per instance, ``dataset_size``, ``train_loss``
    (the mean over its whole training set) and ``test_loss``.

    On the endless stream every training batch is already fresh data: the training loss is the test loss.

    Args:
        every_n_steps: Steps between evaluations (default: ``trainer.log_every_n_steps``).
        instances: Instances that get a ``val_loss`` curve (default: the first 8).

    Example::

        trainer = pl.Trainer(callbacks=[TestLoss(every_n_steps=500)])
    """

    __test__ = False  # a callback, not a pytest test class

    def __init__(self, every_n_steps: int | None = None, instances: Sequence[int] | None = None) -> None:
        super().__init__(every_n_steps, instances)
        self.active = False
        self.test_loss: torch.Tensor | None = None  # (n_instances,), the latest evaluation

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self.active = getattr(trainer.datamodule, "dataset_size", None) is not None

    @override
    def next_required_step(self, trainer: pl.Trainer, step: int) -> int | None:
        return super().next_required_step(trainer, step) if self.active else None

    @override
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.active:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    @torch.no_grad()
    def losses(self, pl_module: pl.LightningModule, x: Any) -> torch.Tensor:
        """Each instance's loss (mean over features) on ``x``: ``(n_instances,)``, on the CPU."""
        return pl_module.objective(x)[1].mean(dim=1).cpu()  # syncs the device

    @override
    def measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule, step: int) -> None:
        self.test_loss = self.losses(pl_module, trainer.datamodule.test_set(pl_module.device))
        total = float(self.test_loss.sum())
        pl_module.log("val/loss", total, logger=False, batch_size=1)  # for callbacks that monitor it
        metrics = {"val/loss": total} | {f"val_loss/instance_{i:03d}": float(self.test_loss[i]) for i in self.chosen}
        self.log_scalars(trainer, metrics, step)

    def extend_report(self, report: Report, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Table | None:
        """Add ``dataset_size``, ``train_loss`` and ``test_loss`` to every instance of ``report.json`` (with
        repeats, ``train_loss`` then picks ``best_repeat``); returns the table of each size's best repeat."""
        if not self.active:
            return None
        data = trainer.datamodule
        train = self.losses(pl_module, data.training_sets(pl_module.device))
        test = self.losses(pl_module, data.test_set(pl_module.device))
        instances = report["instances"]
        for entry, size, train_loss, test_loss in zip(instances, data.dataset_size, train.tolist(), test.tolist()):
            entry.update(dataset_size=int(size), train_loss=train_loss, test_loss=test_loss)
        best = best_per_size(instances)
        table = Table(title="finite data: the best repeat of each training set size (lowest train loss)")
        for column in ("T", "instance", "train loss", "test loss"):
            table.add_column(column, justify="right")
        for size, entry in sorted(best.items()):
            table.add_row(str(size), str(entry["index"]), f"{entry['train_loss']:.5f}", f"{entry['test_loss']:.5f}")
        return table
