"""``lit-superposition sweep SWEEP.yaml``: the command's options, the printed plan and the progress view.

The engine (planning, packing, executors, resume) is :mod:`lit_superposition.sweeps`; this module is
what the user sees of it.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from lit_superposition.analysis.sweep_report import short_key, short_value
from lit_superposition.cli.configs import bundled_sweeps
from lit_superposition.errors import ConfigError

USAGE = "lit-superposition sweep SWEEP.yaml [--dry-run] [--executor local|slurm|submitit_local] [sweep options] [fit options]"


def run_sweep(args: Sequence[str]) -> None:
    """The ``sweep`` command (the engine is imported when the command runs)."""
    from lit_superposition.sweeps.engine import run_sweep as run

    run(args)


def _bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def sweep_parser() -> argparse.ArgumentParser:
    """The sweep's own options; every other option is a fit option, applied to every run."""
    parser = argparse.ArgumentParser(
        prog="lit-superposition sweep", usage=USAGE, exit_on_error=False, allow_abbrev=False,
        description="Run a sweep: a base config and axes over config keys (grid, zip, seeded random). Axes over "
                    "per-instance settings (feature probability, importance, init seeds) are packed into instances of "
                    "one run. Runs go to sweeps/<name>/; running the same sweep again skips finished runs, reruns failed "
                    "ones and continues interrupted ones. Options not listed here are fit options for every run. "
                    f"Bundled sweeps (by name): {', '.join(bundled_sweeps())}.",
    )
    parser.add_argument("sweep_file", help="A sweep YAML file, or the name of a bundled sweep.")
    parser.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true", help="Print the plan only.")
    parser.add_argument("--executor", default="local", help="local (default: runs as processes here), slurm (submitit job "
                        "arrays), or submitit_local (the slurm path, run here by submitit).")
    parser.add_argument("--max_parallel", type=int, default=None,
                        help="local: runs at a time (default: one per core); each gets OMP_NUM_THREADS=max(1, cores // N) "
                             "unless the environment sets it.")
    parser.add_argument("--sweep_dir", default=None, help="The sweep directory (default: sweeps/<sweep name>).")
    parser.add_argument("--pack", type=_bool, default=True, metavar="true|false", help="Pack per-instance axes into one run's instances (default true).")
    parser.add_argument("--partition", default=None, help="slurm: the partition.")
    parser.add_argument("--time", type=int, default=None, help="slurm: time limit per run, in minutes.")
    parser.add_argument("--gpus_per_run", type=int, default=None,
                        help="slurm: GPUs per run (also pass --trainer.accelerator gpu --trainer.devices N).")
    parser.add_argument("--cpus_per_run", type=int, default=None, help="slurm: CPU cores per run (also its OMP_NUM_THREADS).")
    parser.add_argument("--array_parallelism", type=int, default=None, help="slurm: at most this many runs at once.")
    return parser


def parse_sweep_args(args: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """Split the command line into the sweep's options and the fit options for every run."""
    args = list(args)
    parser = sweep_parser()
    if args and args[0] in ("-h", "--help"):
        parser.print_help()
        raise SystemExit(0)
    if not args or args[0].startswith("-"):
        raise ConfigError(f"sweep needs a sweep file first: {USAGE}")
    try:
        options, fit_options = parser.parse_known_args(args)
    except argparse.ArgumentError as error:
        raise ConfigError(str(error)) from None
    return options, fit_options


def print_plan(plan: Any, actions: dict[str, tuple[str, str]], directory: Any, console: Console) -> None:
    """The plan, before anything runs: the axes (packed or not, and why), then each run and what will happen to it."""
    runs = plan.runs
    instances = sorted({run.n_instances for run in runs})
    counts = Counter(action for action, _ in actions.values())
    console.print(
        f"[bold]sweep {plan.sweep.name}[/bold]: {len(runs)} run{'s' * (len(runs) != 1)} "
        f"({sum(len(r.points) for r in runs)} points), {' or '.join(map(str, instances))} instances each; "
        f"to run {counts['run']}, to resume {counts['resume']}, done {counts['skip']} · {directory.root}"
    )
    axes = Table(title="axes")
    for column in ("axis", "kind", "values", "packed", "why"):
        axes.add_column(column, overflow="fold")
    for entry in plan.axes:
        values = ", ".join(" ".join(short_value(v, 24) for v in point.values()) for point in entry.axis.values)
        axes.add_row(" + ".join(short_key(k) for k in entry.axis.keys), entry.axis.kind, values,
                     "yes" if entry.packed else "no", entry.why)
    if plan.axes:
        console.print(axes)
    table = Table(title="runs")
    for column, justify in (("run", "left"), ("what", "left"), ("instances", "right"), ("points", "right"), ("action", "left")):
        table.add_column(column, justify=justify, overflow="fold")
    for run in runs:
        action, why = actions[run.id]
        table.add_row(run.id, run.label, str(run.n_instances), str(len(run.points)), f"{action} ({why})")
    console.print(table)


class RunProgress:
    """A live view of the runs of this invocation: done, running and failed."""

    def __init__(self, console: Console, run_ids: list[str]) -> None:
        self.run_ids = run_ids
        self.progress = Progress(SpinnerColumn(), TextColumn("[bold]runs"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[states]}"), TimeElapsedColumn(), console=console)
        self.task = self.progress.add_task("runs", total=len(run_ids), states="")
        self._reported: set[str] = set()

    def __enter__(self) -> RunProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def update(self, record: dict[str, Any]) -> None:
        """Show the states of this invocation's runs, and say once when each one ends."""
        runs = [run for run in record["runs"] if run["id"] in self.run_ids]
        states = Counter(run["state"] for run in runs)
        ended = states["done"] + states["failed"] + states["interrupted"]
        text = f"running {states['running']} · done {states['done']} · failed {states['failed']}"
        if states["interrupted"]:
            text += f" · stopped {states['interrupted']}"
        self.progress.update(self.task, completed=ended, states=text)
        for run in runs:
            if run["state"] in ("done", "failed", "interrupted") and run["id"] not in self._reported:
                self._reported.add(run["id"])
                detail = f" ({run['seconds']:.1f} s)" if run.get("seconds") is not None else ""
                if run["state"] != "done":
                    detail += f": {run.get('last_line') or 'no output'}"
                self.progress.console.print(f"{run['state']:<11} {run['id']}  {run['label']}{detail}")

    def note(self, text: str) -> None:
        self.progress.console.print(text)
