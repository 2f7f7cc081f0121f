"""PhaseDiagram: the phase of one feature over an importance x probability grid, trained and predicted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from rich.table import Table
from typing_extensions import override

from lit_superposition.analysis.report_schema import Report
from lit_superposition.analysis import phases, plotting, theory
from lit_superposition.callbacks.base import tensorboard_writer
from lit_superposition.errors import ConfigError
from lit_superposition.analysis.theory_scope import phases_apply

FIGURE_FILE = "phase_map.png"
FIGURE_TAG = "phases/phase_map"
_SHORT = {"not_represented": "·", "dedicated": "D", "superposition": "S"}


class PhaseDiagram(Callback):
    """The Anthropic paper's phase diagram, measured: needs ``data.grid`` (a :class:`~lit_superposition.data.PhaseGrid`).

    At the end of fit it classifies the grid feature's phase in every instance
    (:func:`~lit_superposition.analysis.phases.classify_phases`) and adds to ``report.json`` a
    ``phase`` per instance and ``grid``: the axes by name, and per point (rows: importance, columns:
    probability) the phase of the lowest-loss repeat (``phase``, ``best_instance``) and, where the
    expected loss is exact (ReLU or linear output, uniform values, reconstruction, ``d_hidden <= 2``,
    at most 4 features), theory's phase (``theory_phase``, ``theory_loss``); there every instance also
    gets its exact ``expected_loss``, which picks the best repeat. It draws
    ``phase_map.png`` in the run directory and ``phases/phase_map`` in TensorBoard's Images tab.

    Args:
        norm_threshold: ``‖W_f‖`` below which the feature is not represented.
        interference_threshold: Interference ``Σ_{j≠f} (Ŵ_f·W_j)²`` below which a represented feature is dedicated.
        theory: Predict each point's phase from the exact expected loss of candidate solutions.

    Example::

        experiment:  # beside trainer.callbacks: a config that adds a callback of its own keeps this one
            - class_path: lit_superposition.callbacks.PhaseDiagram
    """

    def __init__(
        self,
        norm_threshold: float = phases.NORM_THRESHOLD,
        interference_threshold: float = phases.INTERFERENCE_THRESHOLD,
        theory: bool = True,
    ) -> None:
        if not norm_threshold > 0:
            raise ConfigError(f"PhaseDiagram norm_threshold must be > 0, got {norm_threshold!r}")
        if not interference_threshold > 0:
            raise ConfigError(f"PhaseDiagram interference_threshold must be > 0, got {interference_threshold!r}")
        self.norm_threshold, self.interference_threshold, self.theory = norm_threshold, interference_threshold, theory
        self.grid: dict[str, Any] | None = None

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._run_dir = Path(trainer.log_dir or trainer.default_root_dir)
        self._grid = getattr(trainer.datamodule, "grid", None)
        if self._grid is None:
            raise ConfigError("PhaseDiagram needs data.grid: {importance: {feature, start, end, points}, probability: {start, end, points}}")

    def _theory_variant(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> str | None:
        """The theory's name of the variant where theory applies, else None."""
        data, model = trainer.datamodule, pl_module.model
        applies = self.theory and phases_apply(model, data.values, pl_module.target, bool(data.feature_sets), data.scale_points)
        return model.exact_theory if applies else None

    def extend_report(self, report: Report, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Table:
        """Add ``phase`` to every instance and ``grid`` to ``report.json``; draw and log the map."""
        grid, rows, repeats = self._grid, report["instances"], report["repeats"]
        W = pl_module.model.W.detach().cpu()  # (n_instances, d_hidden, n_features)
        learned = phases.classify_phases(W, grid.feature, self.norm_threshold, self.interference_threshold)
        for row, phase in zip(rows, learned):
            row["phase"] = phase
        n_importance, n_probability = grid.shape
        variant = self._theory_variant(trainer, pl_module)
        if variant is not None and any("expected_loss" not in row for row in rows):
            model = pl_module.model
            p = torch.tensor([row["feature_probability"] for row in rows], dtype=torch.float64)  # (n_instances, n_features)
            importance = torch.tensor([row["importance"] for row in rows], dtype=torch.float64)  # (n_instances, n_features)
            exact = theory.expected_loss(W.double(), model.b.detach().cpu().double(), p, importance, variant=variant)
            for row, loss in zip(rows, exact.per_instance.tolist()):
                row["expected_loss"] = loss
        # The exact expected loss where there is one: it separates repeats better than batches do.
        best = phases.best_of_repeats([row.get("expected_loss", row["loss"]) for row in rows], repeats)
        entry = {
            **grid.describe(),
            "norm_threshold": self.norm_threshold,
            "interference_threshold": self.interference_threshold,
            "best_instance": [best[r * n_probability : (r + 1) * n_probability] for r in range(n_importance)],
        }
        entry["phase"] = [[learned[i] for i in line] for line in entry["best_instance"]]
        if variant is not None:
            first = [rows[s * repeats] for s in range(n_importance * n_probability)]  # one instance per point
            p = torch.tensor([row["feature_probability"] for row in first], dtype=torch.float64)  # (n_points, n_features)
            importance = torch.tensor([row["importance"] for row in first], dtype=torch.float64)  # (n_points, n_features)
            predicted, loss, _ = phases.theoretical_phases(p, importance, pl_module.model.d_hidden, grid.feature, variant)
            entry["theory_phase"] = [predicted[r * n_probability : (r + 1) * n_probability] for r in range(n_importance)]
            entry["theory_loss"] = loss.view(n_importance, n_probability).tolist()
        report["grid"] = self.grid = entry
        figure = plotting.phase_map(entry)
        figure.savefig(self._run_dir / FIGURE_FILE)
        writer = tensorboard_writer(trainer)
        if writer is not None:
            writer.add_figure(FIGURE_TAG, figure, global_step=trainer.global_step)  # closes the figure
        return self.table(entry)

    @staticmethod
    def table(entry: dict[str, Any]) -> Table:
        """The map as a table: the best fit's phase per point, theory's in parentheses where it differs."""
        table = Table(title=f"phase of feature {entry['feature']} (rows: its importance I; columns: p): · not represented,"
                            " D dedicated, S superposition; (theory's) where it differs")
        table.add_column("I \\ p", justify="right")
        for p in entry["probability"]["values"]:
            table.add_column(f"{p:.3g}", justify="center")
        theory = entry.get("theory_phase")
        for r, importance in enumerate(entry["importance"]["values"]):
            cells = []
            for c, phase in enumerate(entry["phase"][r]):
                cell = _SHORT[phase]
                if theory is not None and theory[r][c] != phase:
                    cell += f"({_SHORT[theory[r][c]]})"
                cells.append(cell)
            table.add_row(f"{importance:.3g}", *cells)
        return table
