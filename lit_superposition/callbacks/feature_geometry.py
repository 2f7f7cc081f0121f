"""Feature norms, total norm, Frobenius norm, dimensions per feature, dimensionality and interference over training."""

from __future__ import annotations

from collections.abc import Sequence
import pytorch_lightning as pl
import torch
from typing_extensions import override

from lit_superposition.analysis import geometry, neurons
from lit_superposition.callbacks.base import MeasurementCallback, add_custom_scalars, instance_category, instance_labels, run_label

PER_FEATURE = {"feature norm ‖W_f‖": "feature_norm", "dimensionality D_f": "dimensionality", "interference": "interference"}
PER_INSTANCE = {
    "total norm ‖W‖_F": "total_norm",
    "Frobenius ‖W‖²_F": "frobenius_sq",
    "dimensions per feature": "dimensions_per_feature",
}


class FeatureGeometry(MeasurementCallback):
    """Logs the geometry of the chosen instances' features as training goes (seed 000, fig. 4).

    Per feature (one multi-line chart per instance): ``feature_norm``, ``dimensionality`` and
    ``interference`` as ``QUANTITY/instance_NNN/feature_FF``. Per instance (one multi-line chart per
    quantity, one line per instance): ``total_norm`` (``‖W‖_F``), ``frobenius_sq`` (``‖W‖²_F``) and
    ``dimensions_per_feature`` (``d_hidden / ‖W‖²_F``) as ``QUANTITY/instance_NNN``. Step 0 is the
    initialization. For a model with a privileged basis (``hidden_relu``) also, per neuron,
    ``neuron_top_share/instance_NNN/neuron_NN``: the share of the neuron's squared weight on its top
    feature (1: monosemantic; below: polysemantic).

    Args:
        every_n_steps: Steps between measurements (default: ``trainer.log_every_n_steps``).
        instances: Instances to log (default: the first 8).
        threshold: Features with ``‖W_f‖`` at most this count as not represented (dimensionality 0).

    Example::

        trainer = pl.Trainer(callbacks=[FeatureGeometry(every_n_steps=100, instances=[0, 1])])
    """

    def __init__(
        self, every_n_steps: int | None = None, instances: Sequence[int] | None = None, threshold: float = 0.5
    ) -> None:
        super().__init__(every_n_steps, instances)
        self.threshold = threshold
        self._tags: list[str] = []
        self._neurons = False

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        n_features = pl_module.model.n_features
        self._tags = [tag for q in PER_FEATURE.values() for tag in self.feature_tags(q, n_features)]
        self._tags += [f"{q}/instance_{i:03d}" for q in PER_INSTANCE.values() for i in self.chosen]
        self._neurons = pl_module.model.privileged_basis
        if self._neurons:
            d_hidden = pl_module.model.d_hidden
            self._tags += [f"neuron_top_share/instance_{i:03d}/neuron_{n:02d}" for i in self.chosen for n in range(d_hidden)]

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.register_feature_charts(trainer, pl_module, PER_FEATURE)
        writer = self.writer(trainer)
        if writer is not None and self._neurons:
            labels = instance_labels(trainer, pl_module)
            add_custom_scalars(writer, {
                instance_category(trainer, pl_module, i, labels): {
                    "neuron top-feature share": [rf"^neuron_top_share/instance_{i:03d}/neuron_\d+$"]
                } for i in self.chosen
            })
        if writer is not None:
            index = "|".join(f"{i:03d}" for i in self.chosen)
            add_custom_scalars(
                writer, {f"{run_label(trainer)} · geometry (per instance)": {t: [rf"^{q}/instance_({index})$"] for t, q in PER_INSTANCE.items()}}
            )
        if trainer.global_step == 0:
            self.measure(trainer, pl_module, 0)

    @override
    @torch.no_grad()
    def measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule, step: int) -> None:
        if not trainer.is_global_zero:
            return
        W = pl_module.model.W.detach()[self.chosen_index]  # (k, d_hidden, n_features)
        frobenius = geometry.frobenius_sq(W)  # (k,)
        values = torch.cat([
            geometry.feature_norms(W).flatten(),
            geometry.dimensionality(W, self.threshold).flatten(),
            geometry.interference(W).flatten(),
            frobenius.sqrt(),
            frobenius,
            geometry.dimensions_per_feature(W),
            *([neurons.top_feature_share(W).flatten()] if self._neurons else []),
        ]).cpu().tolist()  # syncs the device
        self.log_scalars(trainer, dict(zip(self._tags, values)), step)
