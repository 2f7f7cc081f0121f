"""What instance sharding costs: two processes training N instances against one process training N/2.

On a machine with one device per process this is how sharding scales: if two ranks with N
instances step as fast as one rank with N/2, twice the devices train twice the instances per second.
Each run is ``Trainer.fit`` as the CLI builds it from a bundled config (instruments, logger,
checkpointing, progress bar; not the end-of-run report), with one CPU thread per process:

- *one*: one process, ``N/2`` instances;
- *sharded*: ``--trainer.strategy instance_sharded --trainer.devices 2`` (gloo on a CPU), ``N`` instances;
- *two*: two one-process runs of ``N/2`` instances at the same time, no communication: what two busy
  processes cost on this machine (shared memory bandwidth, the OS), which sharding cannot beat.

Each run is a fresh command (Lightning's launcher starts rank 1 as it would for any DDP run). The
step time is timed on rank 0 over ``--steps`` optimizer steps after ``--warmup``. Repeats
alternate the order; the ratio pairs runs made side by side. The last line is::

    scaling shared hexagon=A sweep=B independent hexagon=C sweep=D

the median of sharded step time over one-process step time (1 is perfect scaling; the target is 1.10).
The table also shows sharded over *two*: what the sharding itself costs, beyond two processes.

Usage::

    python benchmarks/scaling.py                              # defaults: about 12 minutes on 2 CPU cores
    python benchmarks/scaling.py --repeats 1 --workloads hexagon --steps 200 --warmup 20   # a smoke test
    python benchmarks/scaling.py --device cuda                # one GPU per process
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from rich.console import Console
from rich.table import Table

from throughput import MODES, WORKLOADS, build_run, chosen_workloads, spread, synchronize

#: Optimizer steps timed per run (after the warm-up), by workload: a few seconds each on a 2-core CPU.
DEFAULT_STEPS = {"hexagon": 8000, "geometry": 300, "sweep": 240}
RESULT = re.compile(r"^step_ms=(\S+)$", re.MULTILINE)


class StepTimer(Callback):
    """Times the optimizer steps after ``warmup``, from call end to call end."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end, self.first, self.last = warmup, None, None, 0, 0

    def next_required_step(self, trainer, step) -> int | None:
        return self.warmup if step < self.warmup else None  # the warm-up ends on a call's end

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step < self.warmup:
            return
        synchronize(pl_module.device)
        now = time.perf_counter()
        if self.start is None:
            self.start, self.first = now, trainer.global_step
        self.end, self.last = now, trainer.global_step

    @property
    def step_ms(self) -> float:
        return 1000 * (self.end - self.start) / (self.last - self.first)


def worker(args: argparse.Namespace) -> None:
    """One run: the sharded one's rank 1 is this same command, started by Lightning's launcher."""
    workload = WORKLOADS[args.workload]
    n_instances = workload.n_instances if args.devices > 1 else workload.n_instances // 2
    sharded = ["--trainer.strategy=instance_sharded", f"--trainer.devices={args.devices}"] if args.devices > 1 else []
    with tempfile.TemporaryDirectory() as runs, contextlib.redirect_stdout(io.StringIO()):
        cli = build_run(
            replace(workload, n_instances=n_instances), args.mode, args.batch_size, torch.device(args.device), args.config, runs,
            extra=[*sharded, f"--trainer.max_steps={args.warmup + args.steps}", "--trainer.enable_progress_bar=false", *args.args.split()],
        )
        cli.trainer.callbacks.append(timer := StepTimer(args.warmup))
        cli.trainer.fit(cli.model, cli.datamodule)
    if cli.trainer.is_global_zero:
        print(f"step_ms={timer.step_ms}", flush=True)


def _command(args: argparse.Namespace, workload: str, mode: str, devices: int) -> list[str]:
    return [
        sys.executable, __file__, "--worker", f"--workload={workload}", f"--mode={mode}", f"--devices={devices}",
        f"--steps={args.steps or DEFAULT_STEPS[workload]}", f"--warmup={args.warmup}", f"--batch_size={args.batch_size}",
        f"--device={args.device}", f"--config={args.config}", f"--args={args.args}",
    ]


def _step_ms(process: subprocess.Popen, what: str) -> float:
    stdout, stderr = process.communicate(timeout=1800)
    found = RESULT.findall(stdout)
    if process.returncode != 0 or not found:
        raise SystemExit(f"scaling: the {what} run failed:\n{stderr[-3000:]}")
    return float(found[-1])


def _run(args: argparse.Namespace, workload: str, mode: str, kind: str) -> float:
    """Step time in ms of fresh runs (subprocesses of this script in worker mode): ``one``, ``sharded``,
    or ``two``, two one-process runs of N/2 at once, whose mean step time is returned."""
    # One thread per process: the machine's cores are the devices this stands in for.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    start = lambda devices: subprocess.Popen(  # noqa: E731
        _command(args, workload, mode, devices), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    what = f"{workload} {mode} {kind}"
    if kind == "two":
        first, second = start(1), start(1)
        return (_step_ms(first, what) + _step_ms(second, what)) / 2
    return _step_ms(start(2 if kind == "sharded" else 1), what)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default="hexagon,sweep", help="comma-separated: " + ",".join(WORKLOADS))
    parser.add_argument("--modes", default="shared,independent", help="comma-separated data modes: " + ",".join(MODES))
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats; medians and min-max are reported")
    parser.add_argument("--steps", type=int, default=None, help=f"timed steps per run (default by workload: {DEFAULT_STEPS})")
    parser.add_argument("--warmup", type=int, default=200, help="untimed steps first")
    parser.add_argument("--batch_size", type=int, default=1024)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--config", default="hexagon_scan.yaml", help="config whose callbacks the runs have")
    parser.add_argument("--args", default="", help="more lit-superposition arguments for every run, e.g. '--instruments.feature_geometry=null'")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workload", default="hexagon", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="shared", help=argparse.SUPPRESS)
    parser.add_argument("--devices", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    names = chosen_workloads(parser, args.workloads, WORKLOADS)
    modes = chosen_workloads(parser, args.modes, MODES, what="modes")
    kinds = ("one", "sharded", "two")
    times: dict[tuple[str, str, str], list[float]] = {}
    for repeat in range(args.repeats):
        for name in names:
            for mode in modes:
                for kind in kinds if repeat % 2 == 0 else kinds[::-1]:
                    times.setdefault((name, mode, kind), []).append(_run(args, name, mode, kind))

    table = Table(title=f"Step time (ms; median of {args.repeats}), one thread per process, batch {args.batch_size}, {args.device}")
    for column in ("workload", "mode", "one: N/2", "sharded: N on 2", "two: 2 × N/2 at once", "sharded / one", "sharded / two"):
        table.add_column(column, justify="right")
    ratios: dict[tuple[str, str], float] = {}
    for name in names:
        n = WORKLOADS[name].n_instances
        for mode in modes:
            one, sharded, two = (times[(name, mode, kind)] for kind in kinds)
            # Repeat k's ratios pair runs made side by side, so slow phases of the machine cancel.
            ratio = [b / a for a, b in zip(one, sharded)]
            ratios[(mode, name)] = statistics.median(ratio)
            table.add_row(f"{name} (N={n})" if mode == modes[0] else "", mode, *(f"{statistics.median(t):.3f}" for t in (one, sharded, two)),
                          spread(ratio), spread([b / c for b, c in zip(sharded, two)]))
    console = Console(width=max(Console().width, 130))  # the min-max columns, untruncated
    console.print(table)
    console.print(f"torch {torch.__version__}, pytorch-lightning {pl.__version__}, Python {platform.python_version()}, {platform.machine()}")
    parts = ["scaling"]
    for mode in modes:
        parts += [mode, *(f"{name}={ratios[(mode, name)]:.2f}" for name in names)]
    print(" ".join(parts))


if __name__ == "__main__":
    main()
