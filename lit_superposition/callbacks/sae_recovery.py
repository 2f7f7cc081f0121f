"""SAE curves in TensorBoard: recovery of the true features and the usual SAE metrics, per SAE, over training."""

from __future__ import annotations

from collections.abc import Sequence

import pytorch_lightning as pl
import torch
from typing_extensions import override

from lit_superposition.analysis.sae_metrics import RECOVERED
from lit_superposition.analysis.sae_scores import setting_label
from lit_superposition.callbacks.base import MeasurementCallback, add_custom_scalars, run_label
from lit_superposition.errors import ConfigError

#: The curves, by tag prefix: ``sae_<name>/sae_NNN``.
CURVES = ("mmcs", "matched_cosine", "n_recovered", "l0", "dead_latents", "explained_variance", "l2_ratio")


class SAERecovery(MeasurementCallback):
    """Scores every SAE on fresh inputs every ``every_n_steps`` steps and logs each score per SAE.

    Tags ``sae_<score>/sae_NNN`` for the scores in :data:`CURVES` (MMCS, matched cosine, features
    recovered, L0, dead latents, explained variance, shrinkage ``l2_ratio``; see
    :mod:`lit_superposition.analysis.sae_scores`), on ``n_eval_batches`` batches that no training step
    draws (the same ones at every measurement, so the curves move only with the weights). Custom
    Scalars gets one chart per score and setting, a line per SAE (source instance × seed).

    Args:
        every_n_steps: Steps between measurements (default: ``trainer.log_every_n_steps``).
        n_eval_batches: Batches scored each time (a dead latent is one that fires on none of them).
        recovered_above: The matched cosine from which a feature counts as recovered.
        saes: The SAEs to log (default: all).

    Example::

        trainer = pl.Trainer(callbacks=[SAERecovery(every_n_steps=200)])
    """

    def __init__(self, every_n_steps: int | None = None, n_eval_batches: int = 1, recovered_above: float = RECOVERED,
                 saes: Sequence[int] | None = None) -> None:
        super().__init__(every_n_steps)
        if not isinstance(n_eval_batches, int) or n_eval_batches < 1:
            raise ConfigError(f"n_eval_batches must be an integer >= 1, got {n_eval_batches!r}")
        if not 0 < recovered_above <= 1:
            raise ConfigError(f"recovered_above must be a cosine in (0, 1], got {recovered_above!r}")
        self.n_eval_batches, self.recovered_above, self.saes = n_eval_batches, recovered_above, saes

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.schedule = self.make_schedule(trainer)

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        n_saes = pl_module.n_saes
        self.chosen = list(range(n_saes)) if self.saes is None else list(self.saes)
        bad = [i for i in self.chosen if not 0 <= i < n_saes]
        if bad:
            raise ConfigError(f"saes {bad} out of range: the run has SAEs 0..{n_saes - 1}")
        writer = self.writer(trainer)
        if writer is None:
            return
        by_setting: dict[str, list[int]] = {}
        for i in self.chosen:
            s = pl_module.settings[i]
            by_setting.setdefault(setting_label(s["d_latent"], pl_module.sparsity_name, s[pl_module.sparsity_name]), []).append(i)
        add_custom_scalars(writer, {
            f"{run_label(trainer)} · SAE {name}": {
                label: [rf"^sae_{name}/sae_({'|'.join(f'{i:03d}' for i in saes)})$"] for label, saes in by_setting.items()
            }
            for name in CURVES
        })

    def measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule, step: int) -> None:
        data = trainer.datamodule
        h = data.activations_of(data.evaluation_features(self.n_eval_batches, device=pl_module.device))
        scores = pl_module.score(h, data.true_directions(), self.recovered_above)
        values = torch.stack([scores[name].double() for name in CURVES])[:, self.chosen].tolist()  # (n_curves, n_chosen)
        metrics = {f"sae_{name}/sae_{i:03d}": value for name, row in zip(CURVES, values) for i, value in zip(self.chosen, row)}
        self.log_scalars(trainer, metrics, step)
