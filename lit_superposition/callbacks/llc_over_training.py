"""λ̂ of every instance at chosen steps of training: loss, λ̂ and geometry on one timeline."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
from rich.table import Table
from typing_extensions import override

from lit_superposition.analysis.files import atomic_torch_save
from lit_superposition.analysis.llc import LLCSettings
from lit_superposition.analysis.llc_page import llc_value, trace_figure
from lit_superposition.analysis.llc_results import DEFAULT_N, LLCResult, Sample, draw_samples, estimate_run
from lit_superposition.analysis.report_schema import LLC_FILE, Report
from lit_superposition.callbacks.base import (
    MeasurementCallback,
    add_custom_scalars,
    instance_category,
    instance_labels,
    run_label,
)
from lit_superposition.callbacks.geometry_snapshots import snapshot_schedule
from lit_superposition.errors import ConfigError
from lit_superposition.protocols import InstanceSplit
from lit_superposition.steps import AtSteps


def estimate_steps(last_step: int, spacing: str, n_estimates: int, every_n_steps: int, first_step: int = 0) -> list[int]:
    """The steps to estimate at: from ``first_step`` to ``last_step``, ``n_estimates`` log-spaced ones (step 0
    and the snapshots' spacing when ``first_step`` is 0) or every ``every_n_steps``; none when the run ends first."""
    if last_step < first_step:
        return []
    if spacing == "log" and first_step > 0:
        spaced = np.rint(np.logspace(np.log10(first_step), np.log10(last_step), n_estimates))
        return sorted({int(s) for s in spaced} | {last_step})
    return [s for s in snapshot_schedule(last_step, spacing, n_estimates, every_n_steps) if s >= first_step]


class LLCOverTraining(MeasurementCallback):
    """Estimates λ̂ of every instance at log-spaced (or chosen) steps, on a copy of the weights.

    Each estimate is :func:`~lit_superposition.analysis.llc_results.estimate_run`: batched SGLD over
    every instance and chain, on the run's data law (its training sets, or ``n`` points of its stream
    from ``sample_seed``, drawn once), with the sampler's own counter-based randomness. The sampler
    copies the weights and never touches the model, the optimizer, the data stream or the global
    random state, so the run trains bitwise as it would without this callback (tested).

    Writes, at every estimated step: ``llc/instance_NNN`` scalars for every instance (beside the
    loss curves; a "λ̂ (LLC)" chart in each chosen instance's Custom Scalars category, and one of
    every instance), the chosen instances' per-chain loss traces as the ``llc/traces`` figure, and
    ``llc.pt`` (the latest estimate's traces, for the report page). At the end of fit each instance's
    ``llc`` (the last estimate's record: mean, std, per chain, hyperparameters, warnings) and
    ``llc_over_training`` (step, mean, std, warning kinds per estimate) go into ``report.json``.

    Costs about 3 s per thousand SGLD steps for 64 instances × 8 chains on one CPU thread (measured
    on the project's 2-core VM): the defaults (3000 steps) take about 9 s per estimate there.

    The SGLD hyperparameters ``nbeta``, ``epsilon``, ``gamma``, ``n_chains``, ``n_draws``, ``n_burnin``,
    ``batch_size`` and ``seed`` are :class:`~lit_superposition.analysis.llc.LLCSettings`'s (null: the
    defaults computed from ``n``).

    Args:
        n_estimates: Estimates of a ``"log"`` schedule: ``first_step`` (0: step 0 and then from step 1), the last
            step and log-spaced steps between.
        spacing: ``"log"`` (up to ``trainer.max_steps``) or ``"linear"`` (every ``every_n_steps``).
        every_n_steps: Steps between estimates of a linear schedule (default ``trainer.log_every_n_steps``).
        first_step: No estimate before this step (a run that ends sooner gets none).
        steps: Estimate exactly at these steps instead (e.g. ``[0]``: only the starting weights).
        n: Points of the stream sample (default 10 000); unset with finite training sets (their size).
        sample_seed: Seeds the stream sample.
        instances: Instances whose traces are drawn and that get a λ̂ chart (default: the first 8).
            Every instance is estimated.

    Example::

        experiment:
          - class_path: lit_superposition.callbacks.LLCOverTraining
            init_args: {n_estimates: 10, n_draws: 1000}
    """

    def __init__(
        self,
        n_estimates: int = 8,
        spacing: Literal["log", "linear"] = "log",
        every_n_steps: int | None = None,
        first_step: int = 0,
        steps: list[int] | None = None,
        n: int | None = None,
        nbeta: float | None = None,
        epsilon: float | None = None,
        gamma: float | None = None,
        n_chains: int = 8,
        n_draws: int = 2000,
        n_burnin: int = 1000,
        batch_size: int = 256,
        seed: int = 0,
        sample_seed: int = 0,
        instances: Sequence[int] | None = None,
    ) -> None:
        super().__init__(every_n_steps, instances)
        if spacing not in ("log", "linear"):
            raise ConfigError(f"LLCOverTraining spacing must be 'log' or 'linear', got {spacing!r}")
        if isinstance(n_estimates, bool) or not isinstance(n_estimates, int) or n_estimates < 1:
            raise ConfigError(f"LLCOverTraining n_estimates must be an integer >= 1, got {n_estimates!r}")
        if isinstance(first_step, bool) or not isinstance(first_step, int) or first_step < 0:
            raise ConfigError(f"LLCOverTraining first_step must be an integer >= 0, got {first_step!r}")
        if steps is not None and (not steps or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in steps)):
            raise ConfigError(f"LLCOverTraining steps must be a non-empty list of steps >= 0, got {steps!r}")
        if isinstance(sample_seed, bool) or not isinstance(sample_seed, int) or not 0 <= sample_seed < 2**63:
            raise ConfigError(f"llc.sample_seed must be an integer in [0, 2**63), got {sample_seed!r}")
        # Checked now, with the stream's n: a finite set's size replaces it when the sample is drawn.
        self.settings = LLCSettings(n=DEFAULT_N if n is None else n, nbeta=nbeta, epsilon=epsilon, gamma=gamma,
                                    n_chains=n_chains, n_draws=n_draws, n_burnin=n_burnin, batch_size=batch_size, seed=seed)
        self.n, self.sample_seed = n, sample_seed
        self.spacing, self.n_estimates, self.first_step, self.steps = spacing, n_estimates, first_step, steps
        self.samples: list[Sample] = []
        self.history: dict[int, list[dict[str, Any]]] = {}  # instance -> llc_over_training
        self.latest: dict[int, dict[str, Any]] = {}  # instance -> llc record
        self._run_dir: Path | None = None

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if isinstance(trainer.strategy, InstanceSplit):
            raise ConfigError("LLCOverTraining needs every instance in one process: estimate a sharded run afterwards with lit-superposition llc")
        super().setup(trainer, pl_module, stage)
        self._run_dir = Path(trainer.log_dir or trainer.default_root_dir)  # a collective under DDP: every rank asks
        if trainer.is_global_zero:  # drawn once, before fit starts: a sample that cannot be drawn is bad input
            self.samples = draw_samples(trainer.datamodule, self.n, self.sample_seed, trainer.strategy.root_device)

    @override
    def make_schedule(self, trainer: pl.Trainer) -> AtSteps:
        if self.steps is not None:
            return AtSteps(self.steps)
        spacing, last = self.spacing, trainer.max_steps
        if last is None or last < 0:
            spacing, last = "linear", 2**62  # no end to space up to
        return AtSteps(estimate_steps(last, spacing, self.n_estimates, self.every_n_steps or trainer.log_every_n_steps, self.first_step))

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        writer = self.writer(trainer)
        if writer is not None:
            labels = instance_labels(trainer, pl_module)
            charts = {instance_category(trainer, pl_module, i, labels): {"λ̂ (LLC)": [rf"^llc/instance_{i:03d}$"]} for i in self.chosen}
            add_custom_scalars(writer, {**charts, f"{run_label(trainer)} · LLC": {"λ̂ of every instance": [r"^llc/instance_\d+$"]}})
        if trainer.global_step == 0 and self.schedule.is_due(0):  # before the first step: the starting weights
            self.measure(trainer, pl_module, 0)

    @override
    def measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule, step: int) -> None:
        if not trainer.is_global_zero or any(points and points[-1]["step"] == step for points in self.history.values()):
            return
        result = estimate_run(pl_module.model, self.samples, self.settings, step, pl_module.importance, pl_module.target)
        self._keep(result)
        means = result.column("mean").tolist()
        self.log_scalars(trainer, {f"llc/instance_{i:03d}": m for i, m in zip(result.instances, means) if m == m}, step)
        atomic_torch_save(result.trace_file(), self._run_dir / LLC_FILE)
        writer = self.writer(trainer)
        if writer is not None:
            traces, draws = result.traces()
            rows = [result.instances.index(i) for i in self.chosen]
            titles = [f"{i} (seed {pl_module.model.init_seeds[i]}): {llc_value(result.record(r))}" for i, r in zip(self.chosen, rows)]
            writer.add_figure("llc/traces", trace_figure(traces[rows], draws, result.nbeta[rows],
                                                         result.column("init_loss")[rows], titles), step)

    def _keep(self, result: LLCResult) -> None:
        for position, instance in enumerate(result.instances):
            record = result.record(position)
            estimate, row = result.estimates[position]
            kinds = sorted({w.kind for w in estimate.warnings if w.instance == row})
            self.latest[instance] = record
            self.history.setdefault(instance, []).append(
                {"step": result.step, "mean": record["mean"], "std": record["std"], "warnings": kinds})

    def extend_report(self, report: Report, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Table | None:
        """Add each instance's ``llc`` (the last estimate) and ``llc_over_training`` to ``report.json``."""
        for entry in report["instances"]:
            if entry["index"] in self.latest:
                entry["llc"] = self.latest[entry["index"]]
                entry["llc_over_training"] = self.history[entry["index"]]
        return None

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"history": {str(i): points for i, points in self.history.items()},
                "latest": {str(i): record for i, record in self.latest.items()}}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = {int(i): points for i, points in state_dict.get("history", {}).items()}
        self.latest = {int(i): record for i, record in state_dict.get("latest", {}).items()}
