"""The end-of-fit report of an SAE run: every SAE scored against the true features in ``report.json``, and a table."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from rich.console import Console
from rich.table import Table
from typing_extensions import override

from lit_superposition.analysis.files import atomic_write_text
from lit_superposition.analysis.report_schema import REPORT_FILE, Report, SAEInstanceReport
from lit_superposition.analysis.sae_metrics import RECOVERED, REPRESENTED
from lit_superposition.analysis.sae_scores import recovery_label, represented_l0, setting_label
from lit_superposition.data.datamodule import EVALUATION_STEP
from lit_superposition.errors import ConfigError
from lit_superposition.protocols import ReportExtension


def _number(value: float) -> float | None:
    """A float for JSON: NaN (nothing to score) as null."""
    return None if math.isnan(value) else value


class SAEReport(pl.Callback):
    """At the end of fit, scores every SAE and writes ``report.json`` (:class:`~lit_superposition.analysis.report_schema.Report`).

    ``instances`` has one row per SAE (:class:`~lit_superposition.analysis.report_schema.SAEInstanceReport`):
    its setting (source instance, dictionary size, sparsity, seed), its loss terms, recovery of the
    source's true directions (MMCS, Hungarian-matched cosine, features recovered at a matched cosine
    of ``recovered_above`` or more, features split over latents, latents that mix features; live
    latents only), its L0 beside the source's true L0 (``Σ p`` over all features, and over the
    represented ones: what an ideal dictionary's L0 is), dead latents, explained variance and
    shrinkage; ``geometry`` says ``"k/n recovered"`` (what ``compare`` and the page count). ``sae``
    holds the run: source, architecture, thresholds, and for a 2-D source the true directions and
    every decoder (for the page's figure). Every score is on ``n_eval_batches`` fresh batches (step
    keys ``10**9 + k``: never a training batch; the same for every run of one source and data seed).

    Other callbacks add to it as to the toy models' report
    (:class:`~lit_superposition.protocols.ReportExtension`), e.g. the resampling events.

    Args:
        n_eval_batches: Batches scored (a dead latent fires on none of them).
        recovered_above: The matched cosine from which a feature counts as recovered.
        represented_above: The norm above which a true direction counts (the geometry's threshold).
        max_rows: Settings in the printed table.
        print_table: Print the table at all.

    Example::

        trainer = pl.Trainer(callbacks=[SAEReport(n_eval_batches=8)])
    """

    def __init__(self, n_eval_batches: int = 8, recovered_above: float = RECOVERED, represented_above: float = REPRESENTED,
                 max_rows: int = 32, print_table: bool = True) -> None:
        if not isinstance(n_eval_batches, int) or n_eval_batches < 1:
            raise ConfigError(f"n_eval_batches must be an integer >= 1, got {n_eval_batches!r}")
        if not 0 < recovered_above <= 1:
            raise ConfigError(f"recovered_above must be a cosine in (0, 1], got {recovered_above!r}")
        if not isinstance(max_rows, int) or max_rows < 1:
            raise ConfigError(f"max_rows must be a positive integer, got {max_rows!r}")
        self.n_eval_batches, self.recovered_above, self.represented_above = n_eval_batches, recovered_above, represented_above
        self.max_rows, self.print_table = max_rows, print_table
        self.report: Report | None = None

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._run_dir = Path(trainer.log_dir or trainer.default_root_dir)

    def build(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Report:
        """The report as a JSON-ready dict."""
        data = trainer.datamodule
        features = data.true_directions()  # (n_sources, d_in, n_truth)
        h = data.activations_of(data.evaluation_features(self.n_eval_batches, device=pl_module.device))
        scores = pl_module.score(h, features, self.recovered_above)
        true_l0 = data.true_l0()  # (n_sources,)
        seen_l0 = represented_l0(data.features.feature_probability[data.instances], features, self.represented_above)
        represented = features.norm(dim=1) > self.represented_above  # (n_sources, n_truth)
        two_d = data.d_in == 2
        name = pl_module.sparsity_name
        rows: list[SAEInstanceReport] = []
        for i, setting in enumerate(pl_module.settings):
            row = setting["source_row"]
            entry: dict[str, Any] = {
                "index": i, "init_seed": setting["seed"], "source_instance": setting["source_instance"],
                "d_latent": setting["d_latent"], name: setting[name],
                "setting_label": setting_label(setting["d_latent"], name, setting[name]),
                "loss": float(scores["loss"][i]), "reconstruction_loss": float(scores["reconstruction_loss"][i]),
                "sparsity_loss": float(scores["sparsity_loss"][i]),
                "mmcs": _number(float(scores["mmcs"][i])), "matched_cosine": _number(float(scores["matched_cosine"][i])),
                "n_recovered": int(scores["n_recovered"][i]), "n_represented": int(scores["n_represented"][i]),
                "n_split": int(scores["n_split"][i]), "n_mixed": int(scores["n_mixed"][i]),
                "l0": float(scores["l0"][i]), "true_l0": float(true_l0[row]), "represented_l0": float(seen_l0[row]),
                "dead_latents": int(scores["dead_latents"][i]), "explained_variance": float(scores["explained_variance"][i]),
                "l2_ratio": _number(float(scores["l2_ratio"][i])),
                "relative_reconstruction_bias": _number(float(scores["relative_reconstruction_bias"][i])),
                "geometry": recovery_label(int(scores["n_recovered"][i]), int(scores["n_represented"][i])),
                "represented": torch.nonzero(represented[row]).flatten().tolist(),
                "max_cosine": [_number(c) for c in scores["max_cosine"][i].tolist()],
                "matched_latent": scores["matched_latent"][i].tolist(),
                "dead": torch.nonzero(scores["dead"][i]).flatten().tolist(),
            }
            if two_d:
                entry["decoder"] = scores["decoder"][i].tolist()  # (d_latent, 2)
            rows.append(entry)  # type: ignore[arg-type]
        return {
            "step": trainer.global_step, "n_instances": pl_module.n_saes, "n_features": data.n_features, "d_hidden": data.d_in,
            "variant": type(pl_module.saes.groups[0]).__name__, "threshold": self.represented_above, "repeats": 1,
            "loss_definition": f"each SAE's loss (reconstruction + weighted sparsity) on {self.n_eval_batches} fresh batches "
                               f"(step keys {EVALUATION_STEP}..)",
            "instances": rows,
            "sae": {
                "architecture": pl_module.architecture, "sparsity_name": name, "source": str(data.checkpoint_path),
                "source_step": data.source_step, "source_variant": type(data.model).__name__, "activations": data.activations,
                "source_instances": list(data.instances), "recovered_above": self.recovered_above,
                "true_l0": true_l0.tolist(), "represented_l0": seen_l0.tolist(),
                **({"features": features.tolist()} if two_d else {}),
            },
        }

    def table(self, report: Report) -> Table:
        """One row per setting: means over its SAEs (source instances × seeds)."""
        rows = report["instances"]
        settings: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            settings.setdefault(row["setting_label"], []).append(row)
        table = Table(title=f"{len(rows)} SAEs at step {report['step']}", caption=(
            f"means over each setting's SAEs; recovered: matched cosine >= {report['sae']['recovered_above']:g}; "
            f"true L0 {sum(report['sae']['represented_l0']) / len(report['sae']['represented_l0']):.3g} (represented features)"))

        def mean(key: str, group: list[dict[str, Any]]) -> float:
            values = [r[key] for r in group if r[key] is not None]
            return sum(values) / len(values) if values else float("nan")

        body = [
            [label, str(len(group)), f"{mean('n_recovered', group):.2f}/{mean('n_represented', group):.0f}",
             f"{mean('mmcs', group):.3f}", f"{mean('l0', group):.3f}", f"{mean('dead_latents', group):.2f}",
             f"{mean('explained_variance', group):.3f}", f"{mean('l2_ratio', group):.3f}"]
            for label, group in list(settings.items())[: self.max_rows]
        ]
        for k, column in enumerate(("setting", "SAEs", "recovered", "MMCS", "L0", "dead", "expl. var.", "‖ĥ‖/‖h‖")):
            # Every number keeps its full width; on a narrow console the setting gives way.
            width = None if k == 0 else max([len(column), *(len(cells[k]) for cells in body)])
            table.add_column(column, justify="left" if k == 0 else "right", no_wrap=True, min_width=width, overflow="ellipsis")
        for cells in body:
            table.add_row(*cells)
        return table

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        report = self.build(trainer, pl_module)
        extra = [table for callback in trainer.callbacks if callback is not self and isinstance(callback, ReportExtension)
                 if (table := callback.extend_report(report, trainer, pl_module)) is not None]
        self.report = report
        atomic_write_text(json.dumps(report, indent=1), self._run_dir / REPORT_FILE)
        if self.print_table:
            console = Console()
            console.print(self.table(report))
            for table in extra:
                console.print(table)
