"""Helpers for callback tests: a logger that records what it is given, and a small real Trainer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.loggers import Logger, TensorBoardLogger

from lit_superposition.data import SparseFeatureDataModule
from lit_superposition.module import LitToyModel


class RecordingLogger(Logger):
    """Keeps every ``log_metrics`` call: ``metrics[tag] = {step: value}``."""

    def __init__(self, save_dir: Path) -> None:
        super().__init__()
        self._save_dir = str(save_dir)
        self.metrics: dict[str, dict[int, float]] = {}

    @property
    def name(self) -> str:
        return "recording"

    @property
    def version(self) -> int:
        return 0

    @property
    def save_dir(self) -> str:
        return self._save_dir

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        for tag, value in metrics.items():
            self.metrics.setdefault(tag, {})[step] = float(value)


def make_trainer(tmp_path: Path, callbacks: list, max_steps: int = 8, tensorboard: bool = False, **kwargs: Any):
    """A quiet Trainer with a RecordingLogger (and a TensorBoardLogger first, if asked)."""
    recorder = RecordingLogger(tmp_path)
    loggers = [TensorBoardLogger(tmp_path, name="tb", default_hp_metric=False)] if tensorboard else []
    trainer = pl.Trainer(
        max_steps=max_steps,
        max_epochs=-1,
        logger=[*loggers, recorder],
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        **kwargs,
    )
    return trainer, recorder


def small_setup(n_instances: int = 3, n_features: int = 5, d_hidden: int = 2, **data_kwargs: Any):
    module = LitToyModel(n_instances=n_instances, n_features=n_features, d_hidden=d_hidden, init_seeds=0)
    data = SparseFeatureDataModule(n_instances=n_instances, n_features=n_features, batch_size=64, **data_kwargs)
    return module, data
