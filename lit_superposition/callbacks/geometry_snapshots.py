"""Snapshots of ``W`` and ``b`` on a schedule, saved to ``snapshots.pt``, and geometry figures in TensorBoard."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor
from typing_extensions import override

from lit_superposition.analysis import plotting
from lit_superposition.analysis.geometry import classify_2d
from lit_superposition.analysis.files import atomic_torch_save
from lit_superposition.analysis.report_schema import SNAPSHOT_FILE
from lit_superposition.callbacks.base import (
    MeasurementCallback,
    instance_labels,
    resolve_instances,
    validate_interval,
)
from lit_superposition.errors import ConfigError
from lit_superposition.steps import AnyOf, AtSteps, EveryNSteps

MAX_POLYGONS = 64  # cells of the default polygon grid
MAX_HEATMAPS = 8  # WᵀW heatmaps by default


def snapshot_schedule(last_step: int, spacing: str, n_snapshots: int, every_n_steps: int) -> list[int]:
    """Steps to snapshot: 0 (the initialization), ``last_step``, and log- or linearly spaced steps between."""
    if spacing == "log":
        steps = np.unique(np.rint(np.logspace(0.0, np.log10(max(last_step, 1)), max(n_snapshots - 1, 1))))
    else:
        steps = np.arange(every_n_steps, last_step, every_n_steps)
    return sorted({0, last_step, *(int(s) for s in steps if 0 < s <= last_step)})


class GeometrySnapshots(MeasurementCallback):
    """Saves ``W`` and ``b`` of every instance on a schedule and draws the geometry in TensorBoard.

    Snapshots go to ``snapshots.pt`` in the run directory, rewritten atomically after every capture
    (temporary file + ``os.replace``), as a dict ``{"step": (n_snapshots,), "W": (n_snapshots,
    n_instances, d_hidden, n_features), "b": (n_snapshots, n_instances, n_features), "init_seeds":
    (n_instances,)}`` (a variant with more trained tensors adds one entry per tensor); load it with ``torch.load(path, weights_only=True)``. Step 0 is captured in
    ``on_train_start``, after any ``on_fit_start`` change to the initial weights (weight patching), so
    it is what training started from. The last step is always captured.

    Figures (``geometry/polygons``: the canonicalized 2-D solutions in a grid, coloured by feature;
    ``geometry/WtW``: ``WᵀW`` heatmaps with feature-norm bars when ``d_hidden > 2``;
    ``geometry/neurons``: the neuron × feature weights of models with a privileged basis;
    ``geometry/dimensionality_sweep``: ARENA's plot when the instances sweep ``p``) are drawn at the
    start, at the end, and every ``figure_every_n_steps`` (each costs a few tenths of a second).

    Args:
        spacing: ``"log"``: ``n_snapshots`` log-spaced steps up to ``trainer.max_steps``;
            ``"linear"``: every ``every_n_steps``. Both always include step 0 and the last step.
        n_snapshots: Snapshots in a log-spaced schedule.
        every_n_steps: Steps between snapshots of a linear schedule (default: ``trainer.log_every_n_steps``).
        figure_every_n_steps: Steps between figures (default: only the first and the last step).
        instances: Instances drawn in the figures (default: the first 64 polygons, the first 8 heatmaps).
        threshold: Norm above which a feature counts as represented (titles, canonical orientation).

    Example::

        trainer = pl.Trainer(callbacks=[GeometrySnapshots(spacing="log", n_snapshots=40)])
        snapshots = torch.load(f"{trainer.log_dir}/snapshots.pt", weights_only=True)
    """

    def __init__(
        self,
        spacing: Literal["log", "linear"] = "log",
        n_snapshots: int = 50,
        every_n_steps: int | None = None,
        figure_every_n_steps: int | None = None,
        instances: Sequence[int] | None = None,
        threshold: float = 0.5,
    ) -> None:
        super().__init__(every_n_steps, instances)
        if spacing not in ("log", "linear"):
            raise ConfigError(f"spacing must be 'log' or 'linear', got {spacing!r}")
        if not isinstance(n_snapshots, int) or n_snapshots < 2:
            raise ConfigError(f"n_snapshots must be an integer >= 2, got {n_snapshots!r}")
        validate_interval(figure_every_n_steps)
        self.spacing, self.n_snapshots, self.threshold = spacing, n_snapshots, threshold
        self.figure_every_n_steps = figure_every_n_steps
        self.captures = AtSteps([])
        self.figures: EveryNSteps | None = None
        self.steps: list[int] = []
        # Every trained tensor of the model by name, one CPU copy per snapshot: W is
        # (n_instances, d_hidden, n_features) and b (n_instances, n_features) for every variant.
        self.tensors: dict[str, list[Tensor]] = {}
        self._path: Path | None = None

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        n_instances = pl_module.model.n_instances
        default = MAX_POLYGONS if pl_module.model.d_hidden == 2 else MAX_HEATMAPS
        self.chosen = resolve_instances(self.instances, n_instances, default)

    @override
    def make_schedule(self, trainer: pl.Trainer) -> AtSteps | AnyOf:
        """The snapshot steps (from the run's length) and the figure steps."""
        spacing, last = self.spacing, trainer.max_steps
        if last is None or last < 0:
            if spacing == "log":
                rank_zero_warn("GeometrySnapshots: log spacing needs trainer.max_steps; snapshotting linearly instead")
            spacing, last = "linear", 2**62
        every = self.every_n_steps or trainer.log_every_n_steps
        self.captures = AtSteps(snapshot_schedule(last, spacing, self.n_snapshots, every))
        self.figures = EveryNSteps(self.figure_every_n_steps) if self.figure_every_n_steps else None
        return self.captures if self.figures is None else AnyOf(self.captures, self.figures)

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._path = Path(trainer.log_dir or trainer.default_root_dir) / SNAPSHOT_FILE
        if trainer.global_step == 0 and 0 not in self.steps:  # a resumed run keeps the step 0 it restored
            self.capture(trainer, pl_module)
        self.draw(trainer, pl_module)

    @override
    def measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule, step: int) -> None:
        if self.captures.is_due(step):
            self.capture(trainer, pl_module)
        if self.figures is not None and self.figures.is_due(step) and step != trainer.max_steps:
            self.draw(trainer, pl_module)

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.steps or self.steps[-1] != trainer.global_step:  # stopped early, or off the schedule
            self.capture(trainer, pl_module)
        self.draw(trainer, pl_module)

    def capture(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Append the current weights and rewrite the snapshot file (rank zero)."""
        if not trainer.is_global_zero:
            return
        model = pl_module.model
        self.steps.append(trainer.global_step)
        for name in model.parameter_names:
            self.tensors.setdefault(name, []).append(getattr(model, name).detach().cpu().clone())  # syncs the device
        atomic_torch_save(self.snapshots(pl_module), self._path)

    def snapshots(self, pl_module: pl.LightningModule) -> dict[str, Tensor]:
        """The snapshot file's content."""
        return {
            "step": torch.tensor(self.steps, dtype=torch.long),
            **{name: torch.stack(values) for name, values in self.tensors.items()},
            "init_seeds": torch.tensor(pl_module.model.init_seeds, dtype=torch.long),
        }

    @torch.no_grad()
    def draw(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Log the geometry figures of the current weights (rank zero, TensorBoard only)."""
        writer = self.writer(trainer)
        if writer is None:
            return
        step, model = trainer.global_step, pl_module.model
        W = model.W.detach().cpu()  # (n_instances, d_hidden, n_features)
        seeds, labels = model.init_seeds, instance_labels(trainer, pl_module)
        names = [f"{i} {labels[i]} (seed {seeds[i]})".replace("  ", " ") for i in range(model.n_instances)]
        if model.d_hidden == 2:
            # Random weights form no solution: at step 0 the titles say so instead of naming a polygon.
            shapes = [s.name for s in classify_2d(W[self.chosen], self.threshold)] if step else ["initialization"] * len(self.chosen)
            titles = [f"{names[i]}:\n{shape}" for i, shape in zip(self.chosen, shapes)]
            writer.add_figure("geometry/polygons", plotting.polygon_grid(W, self.chosen, titles, threshold=self.threshold, scale=1.6), step)
        else:
            writer.add_figure("geometry/WtW", plotting.wtw_grid(W, self.chosen, [names[i] for i in self.chosen]), step)
        if model.privileged_basis:
            writer.add_figure("geometry/neurons", plotting.neuron_weights(W, self.chosen, [names[i] for i in self.chosen]), step)
        p = getattr(trainer.datamodule, "feature_probability", None) if trainer.datamodule is not None else None
        if isinstance(p, Tensor) and plotting.is_probability_sweep(p):
            writer.add_figure("geometry/dimensionality_sweep", plotting.dimensionality_sweep(W, p, self.threshold), step)

    @override
    def state_dict(self) -> dict[str, Any]:
        if not self.steps:
            return {}
        return {"step": torch.tensor(self.steps, dtype=torch.long), **{n: torch.stack(v) for n, v in self.tensors.items()}}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict:
            self.steps = [int(s) for s in state_dict["step"]]
            self.tensors = {name: list(value.unbind(0)) for name, value in state_dict.items() if name != "step"}
