"""TemplateStart: chosen instances start from a named k-gon, with theory's norm and bias, instead of Xavier."""

from __future__ import annotations

from dataclasses import dataclass

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from typing_extensions import override

from lit_superposition.analysis.report_schema import Report
from lit_superposition.analysis import theory
from lit_superposition.analysis.geometry import polygon_name
from lit_superposition.analysis.learned_vs_theory import optimal_template
from lit_superposition.analysis.theory_scope import kgons_apply
from lit_superposition.errors import ConfigError


@dataclass
class Template:
    """A regular polygon to start from.

    Args:
        k: Directions of the regular polygon (5: pentagon; 4 on four features: two digons at 90°).
        features: The features on the polygon, in angular order (default: the first ``k``); the others
            start at zero weight and their best constant output.
        repeat: Which repeat of every setting starts here (with ``data.repeats``) ...
        instances: ... or which instances, by index (give exactly one of the two).
        jitter: Standard deviation of seeded Gaussian noise added to ``W`` (seeded by the instance's init seed).
        name: A label for the report and figures (default: the polygon's name).
    """

    k: int
    features: list[int] | None = None
    repeat: int | None = None
    instances: list[int] | None = None
    jitter: float = 0.0
    name: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.k, int) or self.k < 1:
            raise ConfigError(f"template k must be a positive integer, got {self.k!r}")
        if (self.repeat is None) == (self.instances is None):
            raise ConfigError(f"template k={self.k}: give exactly one of repeat and instances")
        if self.features is not None and len(self.features) != self.k:
            raise ConfigError(f"template k={self.k} lists {len(self.features)} features; it needs {self.k}")
        if self.jitter < 0:
            raise ConfigError(f"template jitter must be >= 0, got {self.jitter}")
        self.name = self.name or polygon_name(self.k)


class TemplateStart(Callback):
    """Start chosen instances from k-gon templates whose norm and bias are theory's optimum.

    Each template instance gets ``W``: the template's features on a regular ``k``-gon with the norm and
    bias that minimize the expected loss under the instance's own ``p`` and importance
    (:func:`lit_superposition.analysis.theory.optimize_template`); the other features zero weight and
    their best constant bias. Training from there measures the loss of that geometry's basin, which
    Xavier starts may never reach. The start is recorded as the model's initial state (checkpoints
    and ``snapshots.pt`` step 0 carry it) and each instance's ``start`` is added to ``report.json``.

    Only for the 2-D ReLU-output model, the model the k-gon theory is about.

    Args:
        templates: The templates; instances that none names keep their Xavier start.

    Example::

        experiment:  # beside trainer.callbacks: a config that adds a callback of its own keeps this one
          - class_path: lit_superposition.callbacks.TemplateStart
            init_args:
              templates: [{k: 5, repeat: 0}, {k: 4, features: [1, 2, 3, 4], repeat: 1, name: two digons}]
    """

    def __init__(self, templates: list[Template]) -> None:
        if not templates:
            raise ConfigError("TemplateStart needs at least one template")
        self.templates = [t if isinstance(t, Template) else Template(**t) for t in templates]
        self.starts: list[str] = []
        self._state: dict[str, torch.Tensor] | None = None

    def assignments(self, n_instances: int, repeats: int) -> list[Template | None]:
        """The template of every instance (None: Xavier)."""
        chosen: list[Template | None] = [None] * n_instances
        for template in self.templates:
            if template.repeat is not None:
                if not 0 <= template.repeat < repeats:
                    raise ConfigError(f"template {template.name!r}: repeat {template.repeat} out of range: repeats are 0..{repeats - 1}")
                indices = range(template.repeat, n_instances, repeats)
            else:
                indices = template.instances
            for i in indices:
                if not 0 <= i < n_instances:
                    raise ConfigError(f"template {template.name!r}: instance {i} out of range: instances are 0..{n_instances - 1}")
                if chosen[i] is not None:
                    raise ConfigError(f"instance {i} has two templates ({chosen[i].name!r} and {template.name!r})")
                chosen[i] = template
        return chosen

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        model = pl_module.model
        if not kgons_apply(model, trainer.datamodule.values, pl_module.target, trainer.datamodule.scale_points):
            raise ConfigError(
                "TemplateStart needs the 2-D relu_output model on uniform values with target 'identity' (the k-gon"
                f" theory's), got {model.variant_class.__name__} with d_hidden={model.d_hidden}"
            )
        p = getattr(trainer.datamodule, "feature_probability", None)
        if p is None:
            raise ConfigError("TemplateStart needs a datamodule with feature_probability")
        importance = pl_module.importance.detach().cpu()  # (n_instances, n_features)
        chosen = self.assignments(model.n_instances, pl_module.repeats)
        state = model.initial_state()
        for i, template in enumerate(chosen):
            if template is None:
                continue
            features = template.features or list(range(template.k))
            bad = [f for f in features if not 0 <= f < model.n_features]
            if bad:
                raise ConfigError(f"template {template.name!r}: features {bad} out of range: features are 0..{model.n_features - 1}")
            solution = optimal_template(template.k, tuple(features), tuple(p[i].tolist()), tuple(importance[i].tolist()))
            W, b = theory.kgon_weights(template.k, model.n_features, solution.norm, solution.bias, p[i].double() / 2,
                                       features=features)  # (2, n_features), (n_features,)
            if template.jitter:
                generator = torch.Generator().manual_seed(int(model.init_seeds[i]))
                W = W + template.jitter * torch.randn(W.shape, generator=generator, dtype=W.dtype)
            state["W"][i], state["b"][i] = W.float(), b.float()
        self._state = state
        self.starts = ["xavier" if t is None else f"{t.name} template" for t in chosen]

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A resumed run's weights come from its checkpoint (restored before this hook).
        if trainer.ckpt_path is None and self._state is not None:
            pl_module.model.set_initial_state(self._state)

    def extend_report(self, report: Report, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Add each instance's ``start`` (``"xavier"`` or ``"<name> template"``) to ``report.json``."""
        for entry, start in zip(report["instances"], self.starts):
            entry["start"] = start
