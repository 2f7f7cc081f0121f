"""CrossoverReport: the loss of each template family against one feature's density, and where they cross."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from typing_extensions import override

from lit_superposition.analysis.report_schema import Report
from lit_superposition.analysis import plotting
from lit_superposition.analysis.crossover import crossing, switch
from lit_superposition.analysis.learned_vs_theory import optimal_template
from lit_superposition.callbacks.base import tensorboard_writer
from lit_superposition.callbacks.template_start import TemplateStart
from lit_superposition.errors import ConfigError

FIGURE_FILE = "crossover.png"


def _loss(entry: dict[str, Any]) -> float:
    """The exact expected loss where the report has it, else the evaluation batches' loss."""
    return float(entry.get("expected_loss", entry["loss"]))


class CrossoverReport(Callback):
    """Seed 004's loss-curve crossover, measured: template families and Xavier fits over a density sweep.

    Needs :class:`~lit_superposition.callbacks.TemplateStart` with one template per ``repeat`` (the
    families, e.g. a pentagon and two digons with the swept feature at zero) and the settings
    sweeping one feature's density (``SingleFeatureSweep``). At the end of fit it adds to
    ``report.json`` a ``crossover`` entry: per family, the learned expected loss (null where the
    instance left the template's geometry) and theory's loss (the template's optimum) per setting; the densities where the learned and the theory curves
    cross (``crossover_density``, ``theory_crossover_density``, as the swept feature's density
    relative to the others); the geometry of the lowest-loss Xavier repeat of each setting and where
    it switches (``xavier_switch_density``). It draws ``crossover.png`` in the run directory and
    ``theory/crossover`` in TensorBoard.

    Args:
        feature: The feature whose density the settings sweep.

    Example::

        experiment:  # as in pentagon_digon_crossover.yaml
          - class_path: lit_superposition.callbacks.TemplateStart
            init_args: {templates: [{k: 5, repeat: 0}, {k: 4, features: [1, 2, 3, 4], repeat: 1, name: two digons}]}
          - class_path: lit_superposition.callbacks.CrossoverReport
            init_args: {feature: 0}
    """

    def __init__(self, feature: int = 0) -> None:
        if not isinstance(feature, int) or feature < 0:
            raise ConfigError(f"CrossoverReport feature must be a feature index >= 0, got {feature!r}")
        self.feature = feature
        self.crossover: dict[str, Any] | None = None

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._run_dir = Path(trainer.log_dir or trainer.default_root_dir)
        self._templates = next((c for c in trainer.callbacks if isinstance(c, TemplateStart)), None)
        if self._templates is None or not any(t.repeat is not None for t in self._templates.templates):
            raise ConfigError("CrossoverReport needs TemplateStart with templates given by repeat (one family each)")
        if int(getattr(pl_module, "repeats", 1) or 1) < 2:
            raise ConfigError("CrossoverReport needs data.repeats >= 2: one repeat per template family, the rest Xavier")
        if not 0 <= self.feature < pl_module.model.n_features:
            raise ConfigError(f"CrossoverReport feature {self.feature} out of range: features are 0..{pl_module.model.n_features - 1}")

    def extend_report(self, report: Report, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Add ``crossover`` to ``report.json``, and draw the figure."""
        repeats = report["repeats"]
        rows = report["instances"]
        settings = [rows[s * repeats : (s + 1) * repeats] for s in range(len(rows) // repeats)]
        p = torch.tensor([group[0]["feature_probability"] for group in settings], dtype=torch.float64)  # (n_settings, n_features)
        others = [f for f in range(p.shape[1]) if f != self.feature]
        density = (p[:, self.feature] / p[:, others].mean(dim=1)).tolist()  # relative to the others
        order = sorted(range(len(settings)), key=density.__getitem__)
        x = [density[s] for s in order]
        importance = pl_module.importance.detach().cpu().double()
        families: dict[str, dict[str, list[float]]] = {}
        for template in self._templates.templates:
            if template.repeat is None:
                continue
            features = template.features or list(range(template.k))
            # A template instance that left its geometry measures another basin: no point on this curve.
            learned = [_loss(settings[s][template.repeat]) if settings[s][template.repeat]["n_directions"] == template.k
                       else None for s in order]
            optimum = [optimal_template(template.k, tuple(features), tuple(p[s].tolist()),
                                        tuple(importance[s * repeats].tolist())).loss for s in order]
            families[template.name] = {"learned": learned, "theory": optimum}
        template_repeats = {t.repeat for t in self._templates.templates if t.repeat is not None}
        xavier = [r for r in range(repeats) if r not in template_repeats]
        best_xavier = []
        for s in order:
            candidates = [settings[s][r] for r in xavier]
            best = min(candidates, key=_loss) if candidates else None
            best_xavier.append(None if best is None else {"geometry": best["geometry"], "loss": _loss(best)})
        names = list(families)
        entry: dict[str, Any] = {"feature": self.feature, "relative_density": x, "families": families,
                                 "xavier_best": best_xavier}
        if len(names) >= 2:
            a, b = families[names[0]], families[names[1]]
            entry["crossover_density"] = crossing(x, a["learned"], b["learned"])
            entry["theory_crossover_density"] = crossing(x, a["theory"], b["theory"])
        labels = [str(b["geometry"]) for b in best_xavier if b is not None]
        entry["xavier_switch_density"] = switch(x, labels) if len(labels) == len(x) else None
        report["crossover"] = self.crossover = entry
        figure = plotting.crossover(entry)
        figure.savefig(self._run_dir / FIGURE_FILE)
        writer = tensorboard_writer(trainer)
        if writer is not None:
            writer.add_figure("theory/crossover", figure, trainer.global_step)
