"""``lit-superposition compare RUN_DIR RUN_DIR ...``: the same init seeds under different settings, side by side."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentParser
from rich.console import Console
from rich.table import Table

from lit_superposition.analysis.comparison import compare_runs
from lit_superposition.analysis.console import table_console
from lit_superposition.analysis.run_files import Run, check_run_directory, load_run
from lit_superposition.cli.messages import command_parser, written
from lit_superposition.errors import ConfigError

FIGURE = "comparison.png"


def compare_parser() -> ArgumentParser:
    parser = command_parser(
        "compare",
        "Line up runs of the same init seeds: a per-seed geometry table, counts per run, a figure.",
    )
    parser.add_argument("run_dirs", type=str, nargs="+", help="Two or more run directories, or one sweep directory.")
    parser.add_argument("--out", type=str | None, default=None,
                        help=f"Folder for {FIGURE} (default: beside the runs: the sweep directory, or the folder that holds the runs).")
    parser.add_argument("--figure", type=str | None, default=None, help=f"Or the figure's own path (default: OUT/{FIGURE}).")
    parser.add_argument("--json", type=str | None, default=None, help="Also write the comparison to this JSON file.")
    return parser


def _beside(dirs: list[str]) -> Path:
    """The folder the runs share (``runs/pentagon`` for its versions); the working directory if only the root."""
    common = Path(os.path.commonpath([str(Path(d).resolve()) for d in dirs]))
    if common == Path(common.anchor):
        return Path.cwd()
    return Path(os.path.relpath(common)) if common.is_relative_to(Path.cwd()) else common


def run_compare(args: Sequence[str], console: Console | None = None) -> dict[str, Any]:
    """Parse ``args``, print the tables, write the figure (and JSON); returns the comparison."""
    config = compare_parser().parse_args(list(args))
    dirs = list(config.run_dirs)
    points = None
    if len(dirs) == 1:
        # A sweep: every point's headline results, then the per-seed table where its runs line up.
        from lit_superposition.analysis.sweep_report import done_run_directories, is_sweep_directory, load_sweep, table_rows

        if not is_sweep_directory(dirs[0]):
            raise ConfigError("compare needs at least two run directories (or one sweep directory)")
        sweep = load_sweep(dirs[0])
        out = Path(config.out) if config.out else Path(dirs[0])
        header, rows = table_rows(sweep)
        table = Table(title=f"sweep {sweep.get('name', '')}: every point")
        for column in header:
            table.add_column(column, overflow="fold", no_wrap=column == "run")
        for row in rows:
            table.add_row(*row)
        console = console or table_console(table)
        console.print(table)
        points = [dict(zip(header, row)) for row in rows]
        for run in sweep["runs"]:
            if run["state"] == "failed":
                # One line, however narrow the table sized the console: the message stays whole.
                console.print(f"failed: {run['id']} ({run['label']}): {run['last_line']}", soft_wrap=True)
        labels = [run["label"] for run in sweep["runs"] if run["state"] == "done"]
        try:
            comparison = compare_runs([load_run(d) for d in done_run_directories(sweep)], labels)
        except ConfigError as error:
            console.print(f"no per-seed table: {error}")
            _write_json({"points": points}, config.json, console)
            return {"points": points}
        comparison["points"] = points
    else:
        for directory in dirs:
            check_run_directory(directory)  # every missing one said before any is read
        runs: list[Run] = [load_run(d) for d in dirs]
        comparison = compare_runs(runs)
        out = Path(config.out) if config.out else _beside(dirs)
    tables = _tables(comparison)
    console = console or table_console(*tables)
    for table in tables:
        console.print(table)
    console.print("\n".join(f"[{k}] {label}" for k, label in enumerate(comparison["labels"])), highlight=False, markup=False)
    # matplotlib loads only once there is something to draw
    from lit_superposition.analysis.comparison import counts_figure

    figure = Path(config.figure) if config.figure else out / FIGURE
    existed = figure.exists()
    figure.parent.mkdir(parents=True, exist_ok=True)
    counts_figure(comparison).savefig(figure)
    console.print(f"figure: {written(figure, existed)}", highlight=False, markup=False)
    _write_json(comparison, config.json, console)
    return comparison


def _tables(comparison: dict[str, Any]) -> list[Table]:
    """The geometries per run, and the geometry per init seed (runs by number: their labels are long)."""
    labels = comparison["labels"]
    counts = Table(title="geometries per run")
    counts.add_column("run", overflow="fold")
    geometries = sorted({g for c in comparison["counts"].values() for g in c})
    for geometry in geometries:
        counts.add_column(geometry, justify="right")
    for label in labels:
        counts.add_row(label, *(str(comparison["counts"][label].get(g, 0)) for g in geometries))
    seeds = Table(title="geometry per init seed")
    seeds.add_column("seed", justify="right")
    for k, _ in enumerate(labels):
        seeds.add_column(f"[{k}]", overflow="fold")
    for row in comparison["seeds"]:
        seeds.add_row(str(row["init_seed"]), *(row[label] for label in labels))
    return [counts, seeds]


def _write_json(content: dict[str, Any], path: str | None, console: Console) -> None:
    if not path:
        return
    from lit_superposition.analysis.files import atomic_write_text

    existed = Path(path).exists()
    atomic_write_text(json.dumps(content, indent=1), path)
    console.print(f"comparison written to {written(path, existed)}", highlight=False, markup=False)
