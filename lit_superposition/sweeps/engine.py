"""The sweep command's engine: plan, print, run what is not done, record, report."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from lit_superposition.analysis.files import atomic_write_text
from lit_superposition.analysis.sweep_report import write_sweep_report
from lit_superposition.cli.sweep import RunProgress, parse_sweep_args, print_plan
from lit_superposition.sweeps.executors import (
    LocalPool,
    RunJob,
    SubmititPool,
    check_executor,
    fair_threads,
    thread_env,
    write_state,
)
from lit_superposition.sweeps.plan import Plan, PlannedRun, make_plan, write_override
from lit_superposition.sweeps.state import (
    LAST_CHECKPOINT,
    PLAN_FILE,
    SweepDirectory,
    SweepRecord,
    clear_run,
    next_action,
    plan_record,
)
from lit_superposition.sweeps.sweep_file import load_sweep_file

#: How each run is started: the ``lit-superposition`` entry point, in this Python.
FIT = [sys.executable, "-c", "from lit_superposition.cli import main; main()", "fit"]
POLL_SECONDS = 0.25


def fit_command(plan: Plan, run: PlannedRun, directory: SweepDirectory) -> list[str]:
    """The run's ``fit`` command: bases, options, its override file, and its place in the sweep directory."""
    root = directory.root.resolve()
    save_dir = os.path.relpath(root) if root.is_relative_to(Path.cwd()) else str(root)  # as a resumed run writes it
    return [*FIT, *plan.config_args(directory.override(run.id).resolve()),
            f"--trainer.logger.init_args.save_dir={save_dir}", "--trainer.logger.init_args.name=runs",
            f"--trainer.logger.init_args.version={run.id}"]


def run_sweep(args: Sequence[str], console: Console | None = None) -> None:
    """``lit-superposition sweep SWEEP.yaml [sweep options] [fit options]``.

    Bad input (the sweep file, an unknown key, an empty axis, zip axes of different lengths, an
    executor that is not installed) raises a one-line ConfigError before any run starts. Exits with
    code 1 when a run failed (after all the others finished), 130 when stopped by Ctrl-C or SIGTERM.
    """
    options, fit_options = parse_sweep_args(args)
    check_executor(options.executor)
    sweep = load_sweep_file(options.sweep_file)
    console = console or Console()
    plan = make_plan(sweep, fit_options, pack=options.pack)
    directory = SweepDirectory(Path(options.sweep_dir) if options.sweep_dir else Path("sweeps") / sweep.name)
    actions = {run.id: next_action(directory.read_state(run.id), directory.run_dir(run.id)) for run in plan.runs}
    print_plan(plan, actions, directory, console)
    if options.dry_run:
        return
    pool = _pool(options, directory)
    todo = [run for run in plan.runs if actions[run.id][0] != "skip"]
    # Made before any run starts: a run that fails on bad input removes the directories it created,
    # and must find only its own to remove.
    (directory.root / "runs").mkdir(parents=True, exist_ok=True)
    commands = {run.id: fit_command(plan, run, directory) for run in plan.runs}
    for run in plan.runs:
        write_override(run.overrides, directory.override(run.id))
    atomic_write_text(json.dumps(plan_record(plan, commands), indent=1, default=repr), directory.root / PLAN_FILE)
    threads = pool.threads(len(todo))
    jobs = []
    for run in todo:
        resume = actions[run.id][0] == "resume"
        if not resume:
            clear_run(directory, run.id)
        command = commands[run.id] + ([f"--ckpt_path={directory.run_dir(run.id).resolve() / LAST_CHECKPOINT}"] if resume else [])
        write_state(directory.state_file(run.id), {"state": "pending", "resumed": resume})
        out, err = directory.logs(run.id)
        jobs.append(RunJob(run.id, command, os.getcwd(), str(directory.state_file(run.id).resolve()),
                           str(out.resolve()), str(err.resolve()), thread_env(threads), resume))
    record = SweepRecord(plan, directory)
    record.write()
    stopped = _execute(pool, jobs, record, console) if jobs else False
    final = record.write()
    index = directory.root / "report" / "index.html"
    if any(run["state"] == "done" for run in final["runs"]) and (jobs or not index.is_file()):
        write_sweep_report({**final, "directory": str(directory.root)}, index.parent)
    if index.is_file():
        console.print(f"sweep report: {index}")
    console.print(f"sweep directory: {directory.root}   (lit-superposition compare {directory.root})")
    failed = [run for run in final["runs"] if run["state"] == "failed"]
    from lit_superposition.cli.main import fail  # the command's one-line exit (main imports commands lazily)

    if stopped:
        fail(f"sweep stopped: run the same command again to continue (interrupted runs resume from {LAST_CHECKPOINT})", 130)
    if failed:
        why = str(failed[0]["last_line"]).removeprefix("lit-superposition: ")
        fail(f"sweep: {len(failed)} of {len(final['runs'])} runs failed ({failed[0]['id']}: {why}); see {directory.root / 'sweep.json'}", 1)


def _pool(options: Any, directory: SweepDirectory) -> LocalPool | SubmititPool:
    if options.executor == "local":
        return LocalPool(options.max_parallel or fair_threads(1))  # default: one run per core
    cluster = "slurm" if options.executor == "slurm" else "local"
    return SubmititPool(directory.root / "submitit", cluster, partition=options.partition, time_min=options.time,
                        gpus_per_run=options.gpus_per_run, cpus_per_run=options.cpus_per_run,
                        array_parallelism=options.array_parallelism)


def _execute(pool: LocalPool | SubmititPool, jobs: list[RunJob], record: SweepRecord, console: Console) -> bool:
    """Run the jobs, keeping sweep.json and the progress view current; returns whether Ctrl-C or SIGTERM stopped the sweep."""
    stopped = False
    previous = _stop_on_sigterm()
    try:
        with RunProgress(console, [job.run_id for job in jobs]) as view:
            pool.submit(jobs)
            states = None
            while True:
                try:
                    while pool.pending():
                        time.sleep(POLL_SECONDS)
                        states = _refresh(pool, record, view, states)
                    break
                except KeyboardInterrupt:
                    if not stopped:
                        view.note("stopping: each running run saves last.ckpt (Ctrl-C again aborts them)")
                    stopped = True
                    pool.interrupt()  # a run's first Ctrl-C stops it cleanly, a second one at once
            _refresh(pool, record, view, states)
    finally:
        pool.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return stopped


def _refresh(pool: LocalPool | SubmititPool, record: SweepRecord, view: RunProgress, states: tuple | None) -> tuple:
    """Bring sweep.json and the view up to date; returns the states now."""
    for run_id, ended in pool.finished().items():
        # A job that died before recording its end (a node lost, a process that could not start).
        if (record.directory.read_state(run_id) or {}).get("state") in (None, "pending", "running"):
            write_state(record.directory.state_file(run_id), ended)
    built = record.build()
    now = tuple(run["state"] for run in built["runs"])
    if now != states:
        record.write(built)
    view.update(built)
    return now


def _stop_on_sigterm() -> Any:
    """SIGTERM (a cluster's time limit, kill) stops the sweep as Ctrl-C does: the runs save last.ckpt."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, stop)
