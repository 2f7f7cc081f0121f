"""WeightPatching: start instances from patched initial weights and report what the patch changed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from rich.table import Table
from typing_extensions import override

from lit_superposition.analysis.report_schema import PATCH_ROLES, Report
from lit_superposition.errors import ConfigError
from lit_superposition.analysis.patching import (
    Triple,
    apply_initial_state,
    pair_from_scan,
    patched_initial_state,
    summarize_triples,
)


class WeightPatching(Callback):
    """Train (base, patched base, donor) triples side by side, from patched initial weights.

    The patched base starts from the base seed's initial ``W`` with the columns of the chosen
    features replaced by the donor's. Triple ``k`` occupies instances ``3k`` (base), ``3k + 1``
    (patched) and ``3k + 2`` (donor), so ``data.n_instances`` must be three times the number of
    triples; this callback sets every instance's init seed (``model.init_seeds`` is not used).
    In the default shared data mode all three see the same data: only the initialization differs.

    The weights are written in ``on_fit_start``, before the first step and while the optimizer
    state is still empty; a run resumed from a checkpoint keeps its restored weights. At the end,
    :class:`~lit_superposition.callbacks.GeometryReport` asks this callback to add ``triples`` and
    ``flip_rate`` to ``report.json`` and prints its table.

    Args:
        triples: Explicit triples (``base_seed``, ``features``, and ``donor_seed`` or ``donor_file``).
        scan_report: Or the ``report.json`` of a scan (``hexagon_scan.yaml``): every pentagon seed
            becomes a base, patched at its unlearned features from a hexagon seed.
        max_triples: With ``scan_report``: at most this many triples.

    Example::

        experiment:  # beside trainer.callbacks: a config that adds a callback of its own keeps this one
            - class_path: lit_superposition.callbacks.WeightPatching
              init_args:
                triples: [{base_seed: 0, donor_seed: 30, features: [5]}]
    """

    def __init__(self, triples: list[Triple] | None = None, scan_report: str | None = None, max_triples: int = 8) -> None:
        if (triples is None) == (scan_report is None):
            raise ConfigError("WeightPatching needs exactly one of triples and scan_report")
        if max_triples < 1:
            raise ConfigError(f"max_triples must be >= 1, got {max_triples}")
        if scan_report is not None and not Path(scan_report).is_file():
            raise ConfigError(
                f"scan_report {scan_report!r} does not exist: run the scan first"
                " (lit-superposition fit --config hexagon_scan.yaml) or point scan_report at its report.json"
            )
        self.triples = list(triples) if triples is not None else pair_from_scan(scan_report, max_triples)
        self._initial_state: dict[str, Any] | None = None

    @property
    def n_instances(self) -> int:
        """Instances the experiment needs: three per triple."""
        return 3 * len(self.triples)

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        model = pl_module.model
        if model.n_instances != self.n_instances:
            raise ConfigError(
                f"WeightPatching has {len(self.triples)} triples, so data.n_instances must be {self.n_instances}"
                f" (base, patched, donor per triple), got {model.n_instances}"
            )
        self._initial_state = patched_initial_state(self.triples, model.variant_class, model.d_hidden, model.n_features)
        # Labels for every instance from the start; the weights are written in on_fit_start.
        model.init_seeds = list(self._initial_state["init_seeds"])

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A resumed run's weights come from its checkpoint (restored before this hook).
        if trainer.ckpt_path is None and self._initial_state is not None:
            apply_initial_state(pl_module.model, self._initial_state)

    def instance_roles(self) -> list[str]:
        """What each instance of the run is: ``base``, ``patched`` and ``donor`` per triple."""
        return [role for _ in self.triples for role in PATCH_ROLES]

    def extend_report(self, report: Report, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Table:
        """Add ``triples`` and ``flip_rate`` to the end-of-fit report and return their table."""
        geometries = [str(instance["geometry"]) for instance in report["instances"]]
        report.update(summarize_triples(self.triples, geometries))
        table = Table(title=f"Weight patching: flip rate {report['flip_rate']:.2f} over {len(self.triples)} triples")
        for column in ("base seed", "donor", "features", "base", "patched", "donor geometry", "flipped"):
            table.add_column(column)
        for row in report["triples"]:
            donor = str(row["donor_seed"]) if row["donor_seed"] is not None else Path(row["donor_file"]).name
            table.add_row(
                str(row["base_seed"]), donor, ", ".join(map(str, row["features"])), row["base_geometry"],
                row["patched_geometry"], row["donor_geometry"], "yes" if row["flipped"] else "no",
            )
        return table
