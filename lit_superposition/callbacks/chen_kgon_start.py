"""ChenKGonStart: every instance starts at a k-gon critical point of Chen et al.'s (2023) loss."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from typing_extensions import override

from lit_superposition.analysis.chen_kgons import CriticalKGon, chen_kgon_critical_points
from lit_superposition.analysis.geometry import polygon_name
from lit_superposition.analysis.report_schema import Report
from lit_superposition.analysis.theory_scope import kgons_apply
from lit_superposition.errors import ConfigError


class ChenKGonStart(Callback):
    """Start instance ``i`` at the k-gon critical point ``ks[i mod len(ks)]`` of Chen et al.'s loss.

    The points are :func:`~lit_superposition.analysis.chen_kgons.chen_kgon_critical_points`: features
    ``0 … k−1`` on a regular k-gon with the critical norm and bias, the others at ``W_f = 0`` and their
    best constant bias ``1/(2c)``. The start is recorded as the model's initial state (checkpoints and
    ``snapshots.pt`` step 0 carry it), so an LLC estimate at step 0
    (:class:`~lit_superposition.callbacks.LLCOverTraining` with ``steps: [0]``) is taken at the exact
    critical point; each instance's ``start`` (``"<name> critical point"``) goes into ``report.json``.

    Needs Chen et al.'s setting: ``data.exactly_one_active: true``, the 2-D ``relu_output`` model,
    uniform values, ``target: identity`` and one importance for all features of an instance (it
    scales the loss, which moves no critical point).

    Args:
        ks: The polygon of each instance in turn, repeating when the instances outnumber them
            (default: ``n_features``, ``n_features − 1``, …, 2). Each ``k`` in ``[2, n_features]``.
    """

    def __init__(self, ks: list[int] | None = None) -> None:
        if ks is not None and (not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 2 for k in ks)):
            raise ConfigError(f"ChenKGonStart ks must be a non-empty list of integers >= 2 (a lone feature is no critical point), got {ks!r}")
        self.ks = ks
        self.points: list[CriticalKGon] = []
        self._state: dict[str, torch.Tensor] | None = None

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        model, data = pl_module.model, trainer.datamodule
        if not getattr(data, "exactly_one_active", False):
            raise ConfigError("ChenKGonStart needs Chen et al.'s data law: set data.exactly_one_active: true")
        if not kgons_apply(model, data.values, pl_module.target):
            raise ConfigError(
                "ChenKGonStart needs the 2-D relu_output model on uniform values with target 'identity', got"
                f" {model.variant_class.__name__} with d_hidden={model.d_hidden}"
            )
        importance = pl_module.importance.detach().cpu()  # (n_instances, n_features)
        if bool((importance != importance[:, :1]).any()):
            raise ConfigError("ChenKGonStart needs one importance for all features of an instance (Chen et al.'s loss is unweighted)")
        c = model.n_features
        ks = self.ks or list(range(c, 1, -1))
        chosen = [ks[i % len(ks)] for i in range(model.n_instances)]
        by_k = {point.k: point for point in chen_kgon_critical_points(c, sorted(set(ks)))}  # ConfigError for k > c
        self.points = [by_k[k] for k in chosen]
        state = model.initial_state()
        for i, point in enumerate(self.points):
            W, b = point.weights(c)  # (2, c), (c,)
            state["W"][i], state["b"][i] = W.to(state["W"].dtype), b.to(state["b"].dtype)
        self._state = state

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A resumed run's weights come from its checkpoint (restored before this hook).
        if trainer.ckpt_path is None and self._state is not None:
            pl_module.model.set_initial_state(self._state, init_seeds=[-1] * pl_module.model.n_instances)

    def extend_report(self, report: Report, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Add each instance's ``start`` (``"<name> critical point"``) to ``report.json``."""
        for entry, point in zip(report["instances"], self.points):
            entry["start"] = f"{polygon_name(point.k)} critical point"
