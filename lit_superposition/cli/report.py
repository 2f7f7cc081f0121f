"""``lit-superposition report RUN_DIR``: a page of figures for a finished run (or a sweep), from its files alone."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from jsonargparse import ArgumentParser
from rich.console import Console

from lit_superposition.analysis.report_schema import PAGE_DIR, SWEEP_FILE
from lit_superposition.analysis.run_files import load_run
from lit_superposition.cli.messages import command_parser


def report_parser() -> ArgumentParser:
    parser = command_parser(
        "report",
        "Draw a run's figures and write RUN_DIR/report/index.html (readable offline); a sweep directory gets its sweep page.",
    )
    parser.add_argument("run_dir", type=str, help="A run directory, e.g. runs/hexagon_patch/version_0, or a sweep directory, e.g. sweeps/optimizer_study.")
    parser.add_argument("--out", type=str | None, default=None, help="Where to write the page (default: RUN_DIR/report).")
    return parser


def run_report(args: Sequence[str], console: Console | None = None) -> Path:
    """Parse ``args``, write the page, print where it is; returns the path of ``index.html``."""
    config = report_parser().parse_args(list(args))
    console = console or Console(soft_wrap=True)  # a long path stays on its line, also in a log file
    if (Path(config.run_dir) / SWEEP_FILE).is_file():
        from lit_superposition.analysis.sweep_report import load_sweep, write_sweep_report

        out = Path(config.out) if config.out else Path(config.run_dir) / PAGE_DIR
        with console.status(f"drawing the figures of the sweep {config.run_dir}"):
            index = write_sweep_report(load_sweep(config.run_dir), out)
        console.print(f"sweep report: {index}")
        return index
    run = load_run(config.run_dir)
    # matplotlib and torch load only for a run that is there: bad input is answered without them
    from lit_superposition.analysis.report_page import write_report

    out = Path(config.out) if config.out else run.directory / PAGE_DIR
    with console.status(f"drawing the figures of {run.directory}"):
        index = write_report(run, out)
    console.print(f"report page: {index}")
    return index
