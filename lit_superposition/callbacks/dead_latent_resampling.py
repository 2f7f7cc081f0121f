"""Dead-latent resampling of SAEs (Anthropic's scheme as ARENA 1.3.1 implements it), logged."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from rich.table import Table
from typing_extensions import override

from lit_superposition.analysis.report_schema import Report
from lit_superposition.callbacks.base import MeasurementCallback
from lit_superposition.errors import ConfigError
from lit_superposition.models.sae import resample_dead_latents, resample_seeds, reset_optimizer_state
from lit_superposition.steps import EveryNSteps

#: Step keys of the batches resampling draws its inputs from: apart from training (below 10**9) and
#: evaluation (10**9 + k) keys.
RESAMPLE_STEP = 2 * 10**9


class ResamplingSchedule(EveryNSteps):
    """Every ``every`` steps, but never within ``every`` steps of the end: a resampled latent always gets that long to train.

    Example::

        schedule = ResamplingSchedule(2500, max_steps=10_000)
        [s for s in range(10_001) if schedule.is_due(s)]  # [2500, 5000, 7500]
    """

    def __init__(self, every: int, max_steps: int | None = None) -> None:
        super().__init__(every)
        self.last = None if max_steps is None else max_steps - every

    def is_due(self, step: int) -> bool:
        return step > 0 and super().is_due(step) and (self.last is None or step <= self.last)

    def next_after(self, step: int) -> int | None:
        following = super().next_after(step)
        return following if self.last is None or following <= self.last else None


class DeadLatentResampling(pl.Callback):
    """Every ``every_n_steps`` steps, gives each SAE's dead latents new directions from inputs it reconstructs badly.

    A latent is dead when it has not fired in the last ``window`` training steps (the module records
    the step each latent last fired: ``LitSAE.last_fired``). Per SAE, on a fresh batch of the stream
    (step key ``2·10**9 + step``): inputs are drawn in proportion to their squared reconstruction
    loss, a dead latent's decoder row becomes its input's ``h − b_dec`` at unit norm and its encoder
    that direction at ``encoder_scale`` times the live latents' mean encoder norm, its bias 0
    (:func:`~lit_superposition.models.sae.resample_dead_latents`). Adam's moments of the rewritten
    entries are zeroed (torch's ``optimizer.state``), and the latent gets a fresh window.

    The draws come from each SAE's own seed and the step
    (:func:`~lit_superposition.models.sae.resample_seeds`), so a resumed run resamples exactly as
    the uninterrupted one. No resampling falls within ``every_n_steps`` of ``trainer.max_steps``.

    Logged: ``resampling/n_resampled`` (latents resampled, all SAEs) and ``resampling/n_saes``
    (SAEs with any) at each resampling step; ``report.json`` gets every event
    (``sae.resampling.events``: the step and each SAE's count) and each SAE's total (``n_resampled``).

    Args:
        every_n_steps: Steps between resamplings (ARENA's 2500).
        window: Steps without firing that make a latent dead (ARENA's 500); at most ``every_n_steps``.
        encoder_scale: A resampled encoder's norm relative to the live latents' mean (ARENA's 0.5;
            Anthropic's 0.2).

    Example::

        trainer = pl.Trainer(max_steps=10_000, callbacks=[DeadLatentResampling(every_n_steps=2500, window=500)])
    """

    def __init__(self, every_n_steps: int = 2500, window: int = 500, encoder_scale: float = 0.5) -> None:
        self.schedule = ResamplingSchedule(every_n_steps)
        if not isinstance(window, int) or isinstance(window, bool) or not 1 <= window <= every_n_steps:
            raise ConfigError(f"resampling.window must be an integer in [1, every_n_steps={every_n_steps}], got {window!r}")
        if not isinstance(encoder_scale, (int, float)) or not encoder_scale > 0:
            raise ConfigError(f"resampling.encoder_scale must be > 0, got {encoder_scale!r}")
        self.every_n_steps, self.window, self.encoder_scale = every_n_steps, window, float(encoder_scale)
        self.events: list[dict[str, Any]] = []  # {"step": int, "n_resampled": [per SAE]}

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        max_steps = trainer.max_steps if trainer.max_steps is not None and trainer.max_steps > 0 else None
        self.schedule = ResamplingSchedule(self.every_n_steps, max_steps)

    def next_required_step(self, trainer: pl.Trainer, step: int) -> int | None:
        """The next resampling step: the call ends there (:class:`~lit_superposition.protocols.StepScheduled`)."""
        return self.schedule.next_after(step)

    @override
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.schedule.is_due(trainer.global_step):
            self.resample(trainer, pl_module, trainer.global_step)

    @torch.no_grad()
    def resample(self, trainer: pl.Trainer, pl_module: pl.LightningModule, step: int) -> torch.Tensor:
        """Resample every SAE's dead latents after ``step``; returns the count per SAE ``(n_saes,)``."""
        h = trainer.datamodule.make_batch(RESAMPLE_STEP + step, rank=0, device=pl_module.device)  # (n_sources, batch, d_in)
        inputs = h.index_select(0, pl_module.source_of_sae)  # (n_saes, batch, d_in)
        saes, optimizer = pl_module.saes, trainer.optimizers[0]
        counts = torch.zeros(pl_module.n_saes, dtype=torch.long)
        for g, (sae, part, index) in enumerate(zip(saes.groups, saes.split(inputs), saes.indices)):
            last_fired = pl_module.last_fired(g)  # (n_saes of g, d_latent)
            result = resample_dead_latents(sae, part, last_fired <= step - self.window, resample_seeds(sae.init_seeds, step), self.encoder_scale)
            reset_optimizer_state(optimizer, sae, result.parameter_masks)
            last_fired.masked_fill_(result.latents, step)
            counts[index] = result.n_resampled.cpu()
        self.events.append({"step": step, "n_resampled": counts.tolist()})
        MeasurementCallback.log_scalars(
            trainer, {"resampling/n_resampled": float(counts.sum()), "resampling/n_saes": float((counts > 0).sum())}, step
        )
        return counts

    def extend_report(self, report: Report, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Table | None:
        """Add ``sae.resampling`` (the settings and every event) and each SAE's ``n_resampled``."""
        if "sae" not in report:
            return None
        report["sae"]["resampling"] = {
            "every_n_steps": self.every_n_steps, "window": self.window, "encoder_scale": self.encoder_scale, "events": self.events,
        }
        totals = torch.tensor([event["n_resampled"] for event in self.events]).sum(dim=0).tolist() if self.events else None
        for row in report["instances"]:
            row["n_resampled"] = int(totals[row["index"]]) if totals else 0
        return None

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"events": self.events}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.events = list(state_dict.get("events", []))
