"""``lit-superposition theory``: the symmetric k-gon solutions for a setting, beside a run's learned losses."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentParser
from rich.console import Console
from rich.table import Table

from lit_superposition.analysis.console import table_console
from lit_superposition.analysis.report_schema import REPORT_FILE
from lit_superposition.cli.messages import command_parser, written
from lit_superposition.errors import ConfigError


def theory_parser() -> ArgumentParser:
    parser = command_parser(
        "theory",
        (
            "Expected loss of the symmetric k-gon solutions (k features on a regular polygon in 2 hidden "
            "dimensions, one norm and bias optimized for each k, the rest at their best constant) for "
            "n_features features of equal probability and importance."
        ),
    )
    parser.add_argument("--n_features", type=int, required=True, help="Features per model.")
    parser.add_argument("--feature_probability", type=float, required=True, help="p: each feature's probability of being active.")
    parser.add_argument("--d_hidden", type=int, default=2, help="Hidden dimensions (the k-gon family needs 2).")
    parser.add_argument("--importance", type=float, default=1.0, help="Every feature's importance.")
    parser.add_argument("--json", type=str | None, default=None, help="Also write the solutions to this JSON file.")
    parser.add_argument("--run", type=str | None, default=None, help="A run directory whose learned losses to overlay.")
    parser.add_argument("--out", type=str | None, default=None,
                        help="Folder for the figure, kgon_losses_n{N}_p{P}.png (default: the --run directory, else the working directory).")
    parser.add_argument("--figure", type=str | None, default=None, help="Or the figure's own path (default: OUT/kgon_losses_n{N}_p{P}.png).")
    return parser


def _learned(run: str | None) -> list[dict[str, Any]]:
    """The run's instances (k = their directions, loss = their expected loss), or nothing."""
    if run is None:
        return []
    path = Path(run) / REPORT_FILE
    if not Path(run).is_dir():
        raise ConfigError(f"--run {run!r} is not a run directory")
    if not path.is_file():
        raise ConfigError(f"--run {run!r} has no report.json: the run has not finished (or had no GeometryReport)")
    report = json.loads(path.read_text())
    return [
        {"k": entry["n_directions"], "loss": entry.get("expected_loss", entry["loss"]), "geometry": entry["geometry"]}
        for entry in report["instances"]
    ]


def run_theory(args: Sequence[str], console: Console | None = None) -> dict[str, Any]:
    """Parse ``args``, print the table, write the JSON and the figure; returns the JSON content."""
    config = theory_parser().parse_args(list(args))
    n, p, importance = config.n_features, config.feature_probability, config.importance
    if n < 1:
        raise ConfigError(f"n_features must be a positive integer, got {n}")
    if not 0 < p <= 1:
        raise ConfigError(f"feature_probability must be in (0, 1], got {p}")
    if not importance > 0:
        raise ConfigError(f"importance must be > 0, got {importance}")
    if config.d_hidden != 2:
        raise ConfigError(f"the k-gon family lives in 2 hidden dimensions: d_hidden must be 2, got {config.d_hidden}")
    learned = _learned(config.run)
    # torch and matplotlib load once the input is known to be good: bad input is answered without them
    from lit_superposition.analysis import plotting, theory
    from lit_superposition.analysis.files import atomic_write_text
    from lit_superposition.analysis.geometry import polygon_name

    solutions = theory.kgon_solutions(n, p, importance)
    best = theory.best_kgon(solutions)
    content = {
        "n_features": n, "feature_probability": p, "importance": importance, "d_hidden": 2,
        "solutions": [{"k": s.k, "loss": s.loss, "norm": s.norm, "bias": s.bias} for s in solutions],
        "best_k": best.k,
    }
    table = Table(title=f"k-gon solutions: {n} features, p = {p:g}, importance {importance:g}",
                  caption="loss: the expected per-instance loss (mean over features), as training measures it")
    for column in ("k", "geometry", "loss", "norm", "bias", ""):
        table.add_column(column, justify="right" if column in ("k", "loss", "norm", "bias") else "left")
    for s in solutions:
        table.add_row(str(s.k), polygon_name(s.k), f"{s.loss:.6f}", f"{s.norm:.4f}", f"{s.bias:.4f}", "← best" if s.k == best.k else "")
    console = console or table_console(table)
    console.print(table)
    if config.json:
        existed = Path(config.json).exists()
        atomic_write_text(json.dumps(content, indent=1), config.json)
        console.print(f"solutions written to {written(config.json, existed)}", highlight=False, markup=False)
    # Named by its setting: figures of other settings in the same folder stay.
    name = f"kgon_losses_n{n}_p{p:g}" + (f"_importance{importance:g}" if importance != 1 else "") + ".png"
    path = Path(config.figure) if config.figure else Path(config.out or config.run or ".") / name
    existed = path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    plotting.kgon_losses(solutions, learned, title=f"{n} features in 2 dimensions, p = {p:g}").savefig(path)
    console.print(f"figure: {written(path, existed)}", highlight=False, markup=False)
    return content
