"""ThreadPolicy: the CPU threads a run's steps get, chosen from its sizes and the free cores, and reported."""

from __future__ import annotations

import os

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from typing_extensions import override

from lit_superposition.analysis.report_schema import Report
from lit_superposition.threads import ThreadChoice, choose_threads, free_cores, step_work, user_threads


class ThreadPolicy(Callback):
    """Sets ``torch.set_num_threads`` for the run (:func:`~lit_superposition.threads.choose_threads`).

    One thread for small steps, the free cores for large ones; the user's ``OMP_NUM_THREADS`` or an
    earlier ``torch.set_num_threads`` always win. The threads are put back when fit ends, and
    ``report.json`` gets ``threads``: how many and why.

    Example::

        trainer = pl.Trainer(callbacks=[ThreadPolicy()])
    """

    def __init__(self) -> None:
        self.choice: ThreadChoice | None = None
        self._previous: int | None = None

    def work(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> int:
        """The multiply-adds of one step: ``n_instances × batch × n_features × d_hidden``."""
        model = pl_module.model
        return step_work(model.n_instances, getattr(trainer.datamodule, "batch_size", 1), model.n_features, model.d_hidden)

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        work = self.work(trainer, pl_module)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        recorded = user_threads(os.environ)  # the command's: what the user set, not what Lightning set since
        environ, current = (os.environ, torch.get_num_threads()) if recorded is None else (recorded, cores)
        self.choice = choose_threads(work, free_cores(cores), environ, current, cores, trainer.strategy.root_device.type)
        if self.choice.threads is not None:
            self._previous = torch.get_num_threads()
            torch.set_num_threads(self.choice.threads)

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._previous is not None:
            torch.set_num_threads(self._previous)
            self._previous = None

    def extend_report(self, report: Report, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Add ``threads`` (``threads``, ``reason``, ``source``) to ``report.json``."""
        if self.choice is not None:
            report["threads"] = {**self.choice.as_dict(), "used": torch.get_num_threads()}
