"""The end-of-fit report: per-instance loss and geometry in ``report.json``, and a table on the console."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from rich.console import Console
from rich.table import Table
from torch import Tensor
from typing_extensions import override

from lit_superposition.analysis import geometry, neurons
from lit_superposition.analysis.learned_vs_theory import compare_with_kgons
from lit_superposition.analysis.theory_scope import kgons_apply
from lit_superposition.analysis.files import atomic_write_text
from lit_superposition.analysis.console import natural_width, table_console
from lit_superposition.analysis.report_schema import REPORT_FILE, InstanceReport, Report
from lit_superposition.data.datamodule import EVALUATION_STEP
from lit_superposition.errors import ConfigError
from lit_superposition.models.computation import COMPUTED_THRESHOLD, ComputationModel
from lit_superposition.protocols import CallOutputs, ReportExtension



def _theory_applies(trainer: pl.Trainer, pl_module: pl.LightningModule) -> bool:
    """The k-gon theory's setting: the 2-D ReLU-output model reconstructing magnitudes uniform on (0, 1]."""
    data = trainer.datamodule
    return kgons_apply(pl_module.model, data.values, pl_module.target, data.scale_points)


def _probability_text(p: list[float]) -> str:
    """One ``p`` when the features share it, else the first feature's and a ``…``."""
    return f"{p[0]:.3g}" if len(set(p)) == 1 else f"{p[0]:.3g}…"


def _relative(loss: float | None, reference: float | None) -> str:
    """``+1.2%``: how far a learned loss sits above a theory loss."""
    if loss is None or reference is None:
        return "-"
    return f"{100 * (loss / reference - 1):+.1f}%"


def _cells(row: InstanceReport, many: bool) -> dict[str, str]:
    """An instance's table cells, by column."""
    if isinstance(row["geometry"], str):
        geometry_text = f"regular {row['geometry']}" if row.get("regular") else row["geometry"]
    elif many:
        geometry_text = " ".join(f"{n}×{label}" for label, n in Counter(row["geometry"]).most_common())
    else:
        geometry_text = " ".join(row["geometry"])
    cells = {
        "inst": str(row["index"]), "seed": str(row["init_seed"]), "loss": f"{row['loss']:.5f}",
        "repr": f"{len(row['represented'])}/{len(row['feature_norms'])}", "dirs": str(row["n_directions"]),
        "geometry": geometry_text, "‖W_f‖": " ".join(f"{x:.2f}" for x in row["feature_norms"]),
        "vs k-gon": _relative(row.get("expected_loss"), row.get("kgon_loss")),
        "vs best": _relative(row.get("expected_loss"), row.get("best_kgon_loss")),
    }
    if "setting" in row:
        cells.update({"set": str(row["setting"]), "rep": f"{row['repeat']}{'*' if row['best_repeat'] else ''}"})
    if "feature_probability" in row:
        cells["p"] = _probability_text(row["feature_probability"])
    if "computed" in row:
        # Every computed feature has one or both of its sign-halves: the surplus is the features with both.
        cells.update({"computed": str(len(row["computed"])), "both signs": str(row["computed_signs"] - len(row["computed"]))})
    return cells


#: What a console too narrow for the whole table leaves out, in this order (all of it is in report.json).
NARROW_CONSOLE_LEAVES_OUT = ("‖W_f‖", "vs best", "vs k-gon", "dirs")


#: What picks the best repeat of a setting, first present first: on finite data the fit to its own
#: training set (as the paper and ARENA keep it); else the exact expected loss where theory gave one
#: (the evaluation batches' loss is noisier than the gaps between repeats); else that loss.
BEST_REPEAT_BY = ("train_loss", "expected_loss", "loss")


def mark_best_repeats(report: Report) -> None:
    """Flag ``best_repeat`` on every instance of a report with repeats (instances carrying ``setting``)."""
    instances = report["instances"]
    if not instances or "setting" not in instances[0]:
        return
    key = next(k for k in BEST_REPEAT_BY if all(entry.get(k) is not None for entry in instances))
    best: dict[int, InstanceReport] = {}
    for entry in instances:
        if entry["setting"] not in best or entry[key] < best[entry["setting"]][key]:
            best[entry["setting"]] = entry
    for entry in instances:
        entry["best_repeat"] = best[entry["setting"]] is entry


class GeometryReport(pl.Callback):
    """At the end of fit, writes ``report.json`` to the run directory and prints a table.

    Per instance: ``index``, ``init_seed``, ``loss``, ``per_feature_loss``, ``represented`` (feature
    indices with ``‖W_f‖ > threshold``), ``n_directions``, ``geometry`` (the polygon name when
    ``d_hidden = 2``, else the nearest dimensionality fraction of each feature, e.g. ``"3/4"``),
    ``regular`` (2-D only), ``feature_norms``, ``dimensionality``, ``bias``, when the datamodule
    has one, ``feature_probability``, and for a model with a privileged basis ``neurons``: per
    neuron its ``top_feature``, ``top_share`` (of its squared weight) and ``weights``. With repeats (``pl_module.repeats > 1``: instance ``i`` is
    repeat ``i % repeats`` of setting ``i // repeats``) also ``setting``, ``repeat`` and
    ``best_repeat`` (the lowest of its setting by :data:`BEST_REPEAT_BY`: ``train_loss`` on finite data,
    else the exact ``expected_loss`` where the report has it, else ``loss``).

    For the 2-D ReLU-output model, theory stands beside practice: ``expected_loss`` (the exact
    expected loss of the learned weights under the run's own distribution, with
    ``expected_loss_error`` its stated bound) and, for an instance with one ``p`` and importance over
    its features, ``kgon_loss`` (the optimal symmetric k-gon with the instance's own number of
    directions), ``best_k`` and ``best_kgon_loss``. The table shows the learned loss against both.

    ``loss`` is the instance's loss (mean over features, importance-weighted) on ``n_eval_batches``
    fresh batches drawn with step keys ``10**9 + k``, which training never reaches: the same batches
    for every instance and every run with the same ``data_seed``, and no noise from the last steps.

    Other callbacks can add to the report: before the file is written, every
    :class:`~lit_superposition.protocols.ReportExtension` in ``trainer.callbacks`` is called (rank
    zero); it may add keys to ``report`` and may return a ``rich.table.Table`` to print after this one.

    Args:
        threshold: Norm above which a feature counts as represented.
        angle_tolerance: Degrees within which features share a direction.
        n_eval_batches: Fresh batches the loss is averaged over (0: the last training step's loss).
            The datamodule draws them (:class:`~lit_superposition.protocols.StepData`).
        max_rows: Rows of the printed table (the file always has every instance).
        print_table: Print the table at all.

    Example::

        trainer = pl.Trainer(callbacks=[GeometryReport(n_eval_batches=4)])
        trainer.fit(module, data)
        report = json.loads((Path(trainer.log_dir) / REPORT_FILE).read_text())
    """

    def __init__(
        self,
        threshold: float = 0.5,
        angle_tolerance: float = 10.0,
        n_eval_batches: int = 8,
        max_rows: int = 32,
        print_table: bool = True,
    ) -> None:
        if not isinstance(n_eval_batches, int) or n_eval_batches < 0:
            raise ConfigError(f"n_eval_batches must be an integer >= 0, got {n_eval_batches!r}")
        if not 0 < angle_tolerance < 90:
            raise ConfigError(f"angle_tolerance must be in (0, 90) degrees, got {angle_tolerance!r}")
        if not isinstance(max_rows, int) or max_rows < 1:
            raise ConfigError(f"max_rows must be a positive integer, got {max_rows!r}")
        self.threshold, self.angle_tolerance = threshold, angle_tolerance
        self.n_eval_batches, self.max_rows, self.print_table = n_eval_batches, max_rows, print_table
        self.report: Report | None = None
        self._last_losses: Tensor | None = None

    @torch.no_grad()
    def evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Tensor:
        """The per-feature loss of every instance, ``(n_instances, n_features)``, on the CPU."""
        data = trainer.datamodule
        if self.n_eval_batches:
            total = 0
            for k in range(self.n_eval_batches):
                x = data.make_batch(EVALUATION_STEP + k, device=pl_module.device)  # (n_instances, batch, n_features)
                total = total + pl_module.objective(x)[1]
            return (total / self.n_eval_batches).cpu()
        return self._last_losses.cpu()

    def build(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Report:
        """The report as a JSON-ready dict."""
        model = pl_module.model
        W, b = model.W.detach().cpu(), model.b.detach().cpu()  # (n_instances, d_hidden, n_features), (n_instances, n_features)
        per_feature_loss = self.evaluate(trainer, pl_module)  # (n_instances, n_features)
        loss = per_feature_loss.mean(dim=1)  # (n_instances,)
        norms = geometry.feature_norms(W)
        D = geometry.dimensionality(W, self.threshold)
        rep = geometry.represented(W, self.threshold)
        if model.d_hidden == 2:
            shapes = geometry.classify_2d(W, self.threshold, self.angle_tolerance)
            n_directions = [s.n_directions for s in shapes]
            names: list[Any] = [s.name for s in shapes]
        else:
            shapes = None
            n_directions = geometry.count_directions(W, self.threshold, self.angle_tolerance)
            names = geometry.nearest_fraction(D)
        p = getattr(trainer.datamodule, "feature_probability", None) if trainer.datamodule is not None else None
        importance = pl_module.importance.detach().cpu()  # (n_instances, n_features)
        neuron_share = neuron_top = None
        # The computation variant's result: which features' |x| it computes, and for which signs.
        computed_signs = model.computed_signs().cpu() if issubclass(model.variant_class, ComputationModel) else None  # (2, n_instances, n_features)
        if model.privileged_basis:
            neuron_share, neuron_top = neurons.top_feature_share(W), neurons.top_feature(W)  # (n_instances, d_hidden) each
        instances = []
        for i in range(model.n_instances):
            entry = {
                "index": i,
                "init_seed": int(model.init_seeds[i]),
                "loss": float(loss[i]),
                "per_feature_loss": per_feature_loss[i].tolist(),
                "represented": torch.nonzero(rep[i]).flatten().tolist(),
                "n_directions": int(n_directions[i]),
                "geometry": names[i],
                "feature_norms": norms[i].tolist(),
                "dimensionality": D[i].tolist(),
                "bias": b[i].tolist(),
            }
            if shapes is not None:
                entry["regular"] = shapes[i].regular
            if isinstance(p, Tensor):
                entry["feature_probability"] = p[i].tolist()
            entry["importance"] = importance[i].tolist()
            if computed_signs is not None:
                entry["computed"] = torch.nonzero(computed_signs[:, i].any(dim=0)).flatten().tolist()
                entry["computed_signs"] = int(computed_signs[:, i].sum())
            if neuron_share is not None:
                entry["neurons"] = [
                    {"top_feature": int(f), "top_share": float(s), "weights": w}
                    for f, s, w in zip(neuron_top[i], neuron_share[i], W[i].tolist())
                ]
            instances.append(entry)
        if _theory_applies(trainer, pl_module) and isinstance(p, Tensor):
            sets = getattr(trainer.datamodule, "feature_sets", None)
            beside = compare_with_kgons(
                W.double(), b.double(), p.double(), importance.double(), n_directions,
                correlated_sets=getattr(sets, "correlated_sets", None), anticorrelated_sets=getattr(sets, "anticorrelated_sets", None),
            )
            for entry, extra in zip(instances, beside):
                entry.update(extra)
        repeats = int(getattr(pl_module, "repeats", 1) or 1)
        if repeats > 1:
            if model.n_instances % repeats:
                raise ConfigError(f"repeats ({repeats}) must divide n_instances ({model.n_instances})")
            for entry in instances:
                setting, repeat = divmod(entry["index"], repeats)
                entry.update(setting=setting, repeat=repeat)
        return {
            "step": trainer.global_step,
            "n_instances": model.n_instances,
            "n_features": model.n_features,
            "d_hidden": model.d_hidden,
            "variant": model.variant_class.__name__,
            "threshold": self.threshold,
            "repeats": repeats,
            "loss_definition": (
                f"mean over features of the importance-weighted per-feature loss on {self.n_eval_batches} fresh "
                f"batches (step keys {EVALUATION_STEP}..)" if self.n_eval_batches else "the last training step's loss"
            ),
            "instances": instances,
        }

    def table(self, report: Report, leave_out: Collection[str] = ()) -> Table:
        """The report as a rich table (the first ``max_rows`` instances).

        The swept quantity gets a column; with more than 8 features, the geometry column counts the
        features at each dimensionality label instead of listing them, and the norms are left out.
        The computation variant gets its computed features and sign-halves. On a narrow console the
        geometry and the norms wrap (never cut); the other columns keep their width.

        Args:
            report: The report.
            leave_out: Columns to leave out (of :data:`NARROW_CONSOLE_LEAVES_OUT`, for a narrow console).
        """
        rows = report["instances"]
        repeats = report["repeats"] > 1
        swept = len({tuple(row.get("feature_probability") or ()) for row in rows}) > 1
        many = report["n_features"] > 8
        theory = any("kgon_loss" in row for row in rows)
        computed = all("computed" in row for row in rows)
        columns = [
            "inst", "seed", *(("set", "rep") if repeats else ()), *(("p",) if swept else ()), "loss",
            *(("vs k-gon", "vs best") if theory else ()), *(("computed", "both signs") if computed else ()),
            "repr", *(("dirs",) if report["d_hidden"] == 2 else ()), "geometry", *(() if many else ("‖W_f‖",)),
        ]
        left_out = [column for column in columns if column in leave_out]
        columns = [column for column in columns if column not in leave_out]
        notes = [f"{len(rows) - self.max_rows} more instances in {REPORT_FILE}"] if len(rows) > self.max_rows else []
        notes.append("loss: each instance's own (mean over features; train/loss sums the instances)")
        best_ks = sorted({row["best_k"] for row in rows if "best_k" in row})
        if "vs k-gon" in columns or "vs best" in columns:
            notes.append("vs k-gon / vs best: expected loss above the optimal k-gon of the instance's own k / of the "
                         f"best k ({', '.join(map(str, best_ks))})")
        if computed:
            notes.append(f"computed: features whose |x| the model computes (gain above {COMPUTED_THRESHOLD} for a lone "
                         "positive or negative x_f); both signs: how many of those for both signs")
        if left_out:
            notes.append(f"left out for the console's width: {', '.join(left_out)} (all in {REPORT_FILE})")
        table = Table(title=f"geometry at step {report['step']}", caption="; ".join(notes))
        for column in columns:
            wraps = column in ("geometry", "‖W_f‖")
            # The short columns keep their full width; on a narrow console the geometry and the norms
            # wrap between words and numbers, so no name or number is ever cut.
            table.add_column(column, justify="left" if wraps or column == "repr" else "right", no_wrap=not wraps, overflow="fold")
        for row in rows[: self.max_rows]:
            cells = _cells(row, many)
            table.add_row(*(cells[column] for column in columns))
        return table

    def next_required_step(self, trainer: pl.Trainer, step: int) -> int | None:
        return None  # it only keeps a reference to each call's last losses

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: CallOutputs, batch: Any, batch_idx: int
    ) -> None:
        self._last_losses = outputs["per_feature_loss"]  # (n_instances, n_features): for n_eval_batches=0

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # trainer.log_dir is a collective under DDP: read it here, on every rank, not in rank 0's write.
        self._run_dir = Path(trainer.log_dir or trainer.default_root_dir)

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        report = self.build(trainer, pl_module)
        extra_tables = []
        for callback in trainer.callbacks:
            if callback is not self and isinstance(callback, ReportExtension):
                table = callback.extend_report(report, trainer, pl_module)
                if table is not None:
                    extra_tables.append(table)
        mark_best_repeats(report)  # after the extensions: a training loss they add decides
        self.report = report
        atomic_write_text(json.dumps(report, indent=1), self._run_dir / REPORT_FILE)
        if self.print_table:
            self.print_tables(report, extra_tables)

    def print_tables(self, report: Report, extra_tables: Sequence[Table] = (), console: Console | None = None) -> None:
        """Print the report's table and the extensions' tables, none of them cut.

        Args:
            report: The report.
            extra_tables: The report extensions' tables, printed after this one.
            console: Where to print (default: :func:`~lit_superposition.analysis.console.table_console`:
                the terminal's width, or the tables' own when the output is redirected).
        """
        tables = [self.table(report), *extra_tables]
        console = console or table_console(*tables)
        for k in range(1, len(NARROW_CONSOLE_LEAVES_OUT) + 1):  # a narrow terminal: fewer columns, rather than cut ones
            if natural_width(console, tables[0]) <= console.width:
                break
            tables[0] = self.table(report, leave_out=NARROW_CONSOLE_LEAVES_OUT[:k])
        for table in tables:
            console.print(table)
