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
from lit_superposition.cli.messages import command_parser


def compare_parser() -> ArgumentParser:
    parser = command_parser(
        "compare",
        "Line up runs of the same init seeds: a per-seed geometry table, counts per run, a figure.",
    )
    parser.add_argument("run_dirs", type=str, nargs="+", help="Two or more run directories.")
    parser.add_argument("--json", type=str | None, default=None, help="Also write the comparison to this JSON file.")
    parser.add_argument("--figure", type=str, default="comparison.png", help="Where to draw the counts per run.")
    return parser


def run_compare(args: Sequence[str], console: Console | None = None) -> dict[str, Any]:
    """Parse ``args``, print the tables, write the figure (and JSON); returns the comparison."""
    config = compare_parser().parse_args(list(args))
    dirs = list(config.run_dirs)
    comparison = compare_runs([load_run(d) for d in dirs])
    console = console or Console()
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
