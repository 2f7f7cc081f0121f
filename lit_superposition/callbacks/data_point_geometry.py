"""DataPointGeometry: the hidden vectors of each instance's training points, and their dimensionality."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from typing_extensions import override

from lit_superposition.analysis import geometry
from lit_superposition.analysis.files import atomic_torch_save
from lit_superposition.analysis.report_schema import DATA_POINTS_FILE, Report


class DataPointGeometry(pl.Callback):
    """Where a model with finite training sets stores its data points (Anthropic 2023); nothing on the endless stream.

    At the end of fit, for every instance: the hidden vectors ``h_t = W x_t`` of its training points
    and their dimensionality ``D_t = ‖h_t‖⁴ / Σ_j (h_t · h_j)²``, beside its features'
    (:func:`~lit_superposition.analysis.geometry.data_dimensionality`). A memorizing model stores
    its points in superposition (their dimensionalities are fractions, its features' near 0); a
    generalizing one stores features. ``report.json`` gets ``data_dimensionality`` (mean over the
    points) and ``feature_dimensionality`` (mean over the represented features) per instance, and
    ``data_points.pt`` in the run directory holds the hidden vectors (for the report page's figures).

    Args:
        threshold: Norm above which a feature counts as represented.

    Example::

        trainer = pl.Trainer(callbacks=[DataPointGeometry()])
    """

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold
        self.hidden: list[torch.Tensor] = []  # per instance (d_hidden, T_i), on the CPU

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._run_dir = Path(trainer.log_dir or trainer.default_root_dir)

    @torch.no_grad()
    def extend_report(self, report: Report, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Add ``data_dimensionality`` and ``feature_dimensionality``; write ``data_points.pt``."""
        data = trainer.datamodule
        if getattr(data, "dataset_size", None) is None:
            return
        sets, W = data.training_sets("cpu"), pl_module.model.W.detach().cpu()  # W: (n_instances, d_hidden, n_features)
        features = geometry.dimensionality(W, self.threshold)  # (n_instances, n_features)
        represented = geometry.represented(W, self.threshold)
        self.hidden = []
        for i, entry in enumerate(report["instances"]):  # one Gram matrix per instance: its own number of points
            H = W[i] @ sets.points(i).T  # (d_hidden, T_i)
            self.hidden.append(H)
            entry["data_dimensionality"] = float(geometry.data_dimensionality(H.unsqueeze(0)).mean())
            shown = features[i][represented[i]]
            entry["feature_dimensionality"] = float(shown.mean()) if len(shown) else 0.0
        atomic_torch_save({"hidden": self.hidden, "sizes": sets.sizes.clone(), "W": W}, self._run_dir / DATA_POINTS_FILE)
