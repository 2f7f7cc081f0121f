"""``lit-superposition compare RUN_DIR RUN_DIR ...``: the same init seeds under different settings, side by side."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentParser
from rich.console import Console
from rich.table import Table

from lit_superposition.analysis.comparison import compare_runs, counts_figure
from lit_superposition.analysis.files import atomic_write_text
from lit_superposition.analysis.run_files import load_run
from lit_superposition.analysis.sweep_report import done_run_directories, is_sweep_directory, load_sweep, table_rows
from lit_superposition.cli.messages import command_parser
from lit_superposition.errors import ConfigError


def compare_parser() -> ArgumentParser:
    parser = command_parser(
        "compare",
        "Line up runs of the same init seeds: a per-seed geometry table, counts per run, a figure.",
    )
    parser.add_argument("run_dirs", type=str, nargs="+", help="Two or more run directories, or one sweep directory.")
    parser.add_argument("--json", type=str | None, default=None, help="Also write the comparison to this JSON file.")
    parser.add_argument("--figure", type=str, default="comparison.png", help="Where to draw the counts per run.")
    return parser


def run_compare(args: Sequence[str], console: Console | None = None) -> dict[str, Any]:
    """Parse ``args``, print the tables, write the figure (and JSON); returns the comparison."""
    config = compare_parser().parse_args(list(args))
    dirs = list(config.run_dirs)
    console = console or Console()
    points = None
    if len(dirs) == 1 and is_sweep_directory(dirs[0]):
        # A sweep: every point's headline results, then the per-seed table where its runs line up.
        sweep = load_sweep(dirs[0])
        header, rows = table_rows(sweep)
        table = Table(title=f"sweep {sweep.get('name', '')}: every point")
        for column in header:
            table.add_column(column, overflow="fold", no_wrap=column == "run")
        for row in rows:
            table.add_row(*row)
        console.print(table)
        points = [dict(zip(header, row)) for row in rows]
        for run in sweep["runs"]:
            if run["state"] == "failed":
                console.print(f"failed: {run['id']} ({run['label']}): {run['last_line']}")
        dirs = [str(d) for d in done_run_directories(sweep)]
        labels = [run["label"] for run in sweep["runs"] if run["state"] == "done"]
        try:
            comparison = compare_runs([load_run(d) for d in dirs], labels)
        except ConfigError as error:
            console.print(f"no per-seed table: {error}")
            if config.json:
                atomic_write_text(json.dumps({"points": points}, indent=1), config.json)
                console.print(f"comparison written to {config.json}")
            return {"points": points}
        comparison["points"] = points
    else:
        comparison = compare_runs([load_run(d) for d in dirs])
    labels = comparison["labels"]
    counts = Table(title="geometries per run")
    counts.add_column("run")
    geometries = sorted({g for c in comparison["counts"].values() for g in c})
    for geometry in geometries:
        counts.add_column(geometry, justify="right")
    for label in labels:
        counts.add_row(label, *(str(comparison["counts"][label].get(g, 0)) for g in geometries))
    console.print(counts)
    seeds = Table(title="geometry per init seed")
    seeds.add_column("seed", justify="right")
    for k, label in enumerate(labels):
        seeds.add_column(f"[{k}]", overflow="ellipsis")
    for row in comparison["seeds"]:
        seeds.add_row(str(row["init_seed"]), *(row[label] for label in labels))
    console.print(seeds)
    console.print("\n".join(f"[{k}] {label}" for k, label in enumerate(labels)))
    figure = counts_figure(comparison)
    Path(config.figure).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(config.figure)
    console.print(f"figure: {config.figure}")
    if config.json:
        atomic_write_text(json.dumps(comparison, indent=1), config.json)
        console.print(f"comparison written to {config.json}")
    return comparison
