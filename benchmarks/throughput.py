"""Throughput of lit-superposition against the plain PyTorch loop it replaces, and against the machine's limit.

Three loops per workload, each timed for ``--seconds`` after a warm-up (time, not a step count, so
a slow workload is timed as long as a fast one):

- *reference*: ARENA's training loop, written out here: per step two ``torch.rand`` calls of shape
  ``(batch, n_instances, n_features)``, an einsum forward pass and an Adam step;
- *bare*: the math lit-superposition runs (the step-keyed data draw, the model's fused loss and
  backward, the module's AdamW: PyTorch's standard one on a CPU) in a plain Python loop, no
  Lightning, timed in a fresh process under each thread setting (one thread, all cores spinning,
  all cores sleeping) and the fastest kept: the limit this machine and this math allow, which no
  thread setting of the framework's can move;
- *lightning*: ``Trainer.fit`` of LitToyModel + SparseFeatureDataModule as the CLI builds it from a
  bundled config (logger, progress bar, checkpointing, the thread policy and the config's callbacks
  included, except the end-of-run geometry report, which does nothing during training), in this
  process, which bounds OpenMP's spin as the command does.

Bare and Lightning run in both data modes. Repeats are interleaved; the table shows medians and the
min-max over the repeats. The last two lines are::

    ratios shared hexagon=A geometry=B sweep=C independent hexagon=D geometry=E sweep=F
    vs_limit shared hexagon=A geometry=B sweep=C independent hexagon=D geometry=E sweep=F

``ratios``: Lightning over ARENA's loop; ``vs_limit``: Lightning over the bare loop (1 is the limit).

Usage::

    python benchmarks/throughput.py                       # defaults: about 3.5 minutes on 2 CPU cores
    python benchmarks/throughput.py --seconds 0.2 --repeats 1 --workloads hexagon   # a smoke test
    python benchmarks/throughput.py --threads 1           # steadier ratios on a busy machine
    python benchmarks/throughput.py --device cuda
"""

from __future__ import annotations

import os

from lit_superposition.threads import set_spin_policy

set_spin_policy(os.environ)  # as the command does, before torch loads OpenMP

import argparse  # noqa: E402
import contextlib
import io
import itertools
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass

import einops
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from rich.console import Console
from rich.table import Table

from lit_superposition.cli import build_cli

MODES = ("shared", "independent")


@dataclass(frozen=True)
class Workload:
    n_instances: int
    n_features: int
    d_hidden: int
    feature_probability: float | str  # a number, or "sweep": 20 ** -linspace(0, 1, n_instances)


WORKLOADS = {
    "hexagon": Workload(16, 6, 2, 0.057),
    "geometry": Workload(20, 200, 20, "sweep"),
    "sweep": Workload(1024, 6, 2, 0.057),
}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Clock:
    """Warm-up (``warmup`` steps and ``warmup_seconds``), then timed steps until ``seconds`` have passed.

    The warm-up is timed too: the allocator and the thread pools settle over the first second or so,
    which is many steps for a small workload and few for a large one.
    """

    def __init__(self, seconds: float, warmup: int, warmup_seconds: float, device: torch.device) -> None:
        self.seconds, self.warmup, self.warmup_seconds, self.device = seconds, warmup, warmup_seconds, device
        self.steps, self.ticks, self.first, self.start, self.elapsed = 0, 0, None, None, 0.0

    def tick(self, step: int, n_steps: int = 1) -> bool:
        """Call after step ``step`` (0-based) ends, the last of ``n_steps``; True once the timed window is over."""
        if self.start is None:
            now = time.perf_counter()
            self.first = now if self.first is None else self.first
            if step + 1 >= self.warmup and now - self.first >= self.warmup_seconds:
                synchronize(self.device)
                self.start = time.perf_counter()
            return False
        self.steps += n_steps
        self.ticks += 1
        if self.ticks % 8 == 0:  # look at the clock now and then: a sync costs on a GPU
            synchronize(self.device)
            self.elapsed = time.perf_counter() - self.start
            return self.elapsed >= self.seconds
        return False

    @property
    def rate(self) -> float:
        return self.steps / self.elapsed


def reference_loop(workload: Workload, clock: Clock, batch_size: int, device: torch.device) -> float:
    """ARENA's loop; returns timed steps per second."""
    i, f, h = workload.n_instances, workload.n_features, workload.d_hidden
    if workload.feature_probability == "sweep":
        p = (20 ** -torch.linspace(0, 1, i, device=device))[:, None]  # (n_instances, 1)
    else:
        p = torch.full((i, 1), float(workload.feature_probability), device=device)
    importance = torch.ones(i, f, device=device)
    W = torch.nn.Parameter(torch.nn.init.xavier_normal_(torch.empty(i, h, f, device=device)))
    b = torch.nn.Parameter(torch.zeros(i, f, device=device))
    optimizer = torch.optim.Adam([W, b], lr=1e-3)

    def loss_of(step: int) -> torch.Tensor:
        feature_magnitude = torch.rand((batch_size, i, f), device=device)
        feature_seed = torch.rand((batch_size, i, f), device=device)
        x = torch.where(feature_seed <= p, feature_magnitude, torch.zeros((), device=device))
        hidden = einops.einsum(W, x, "inst hidden feats, batch inst feats -> batch inst hidden")
        out = einops.einsum(hidden, W, "batch inst hidden, inst hidden feats -> batch inst feats")
        out = torch.relu(out + b)
        return (importance * (x - out) ** 2).mean(dim=(0, 2)).sum()

    return _optimize_until(clock, loss_of, optimizer)


def _optimize_until(clock: Clock, loss_of, optimizer: torch.optim.Optimizer) -> float:
    """Optimizer steps on ``loss_of(step)`` until ``clock`` says stop; returns timed steps per second."""
    for step in itertools.count():
        loss = loss_of(step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if clock.tick(step):
            return clock.rate
    raise AssertionError("unreachable")


def build_run(workload: Workload, mode: str, batch_size: int, device: torch.device, config: str, runs: str,
              steps_per_call: int | None = None, extra: Sequence[str] = ()):
    """The CLI of ``workload`` on ``config``, not yet fitted; ``extra`` arguments come last (and win)."""
    p = workload.feature_probability
    k = [] if steps_per_call is None else [f"--model.steps_per_call={steps_per_call}"]
    probability = (
        ["--data.feature_probability=lit_superposition.data.LogSweep",
         "--data.feature_probability.start=1.0", "--data.feature_probability.end=0.05"]
        if p == "sweep" else [f"--data.feature_probability={p}"]
    )
    return build_cli(
        [
            "--config", config,
            f"--data.n_instances={workload.n_instances}", f"--data.n_features={workload.n_features}",
            f"--model.d_hidden={workload.d_hidden}", *probability,
            f"--data.batch_size={batch_size}", f"--data.instance_data={mode}",
            f"--trainer.max_steps={10**9}", f"--trainer.logger.init_args.save_dir={runs}",
            f"--trainer.accelerator={device.type}", "--trainer.devices=1", *k,
            # It runs once, after the timed window (theory for every instance): only the benchmark's own time.
            "--instruments.geometry_report=null",
            *extra,
        ],
        run=False,
    )


def bare_loop(workload: Workload, mode: str, clock: Clock, batch_size: int, device: torch.device, config: str) -> float:
    """lit-superposition's own data draw, loss and optimizer in a plain loop; returns timed steps per second."""
    with tempfile.TemporaryDirectory() as runs, contextlib.redirect_stdout(io.StringIO()):
        cli = build_run(workload, mode, batch_size, device, config, runs)
    module, data = cli.model.to(device), cli.datamodule
    optimizer = module.configure_optimizers()
    optimizer = optimizer[0] if isinstance(optimizer, (list, tuple)) else optimizer
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    return _optimize_until(clock, lambda step: module.objective(data.make_batch(step, device=device))[0], optimizer)


class StopOnClock(Callback):
    """Times Lightning's steps with a :class:`Clock` and stops the fit when it says so (a scheduled callback: once per call)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def next_required_step(self, trainer, step) -> None:
        return None  # it counts every step of a call, so the call may hold many

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.clock.tick(trainer.global_step - 1, n_steps=len(outputs["step_losses"])):
            trainer.should_stop = True


def lightning_run(
    workload: Workload, mode: str, clock: Clock, batch_size: int, device: torch.device, config: str,
    steps_per_call: int | None = None,
) -> float:
    """``Trainer.fit`` as the CLI builds it from ``config``; returns timed steps per second."""
    with tempfile.TemporaryDirectory() as runs, contextlib.redirect_stdout(io.StringIO()):
        cli = build_run(workload, mode, batch_size, device, config, runs, steps_per_call)
        cli.trainer.callbacks.append(StopOnClock(clock))
        cli.trainer.fit(cli.model, cli.datamodule)
    return clock.rate


def spread(values: list[float]) -> str:
    """``median (min-max)``, or the one value."""
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def chosen_workloads(parser: argparse.ArgumentParser, text: str, known, what: str = "workloads") -> list[str]:
    """The comma-separated names of ``text``; a parser error names any not in ``known``."""
    names = [name.strip() for name in text.split(",")]
    unknown = [name for name in names if name not in known]
    if unknown:
        parser.error(f"unknown {what} {unknown}; choose from {', '.join(known)}")
    return names


#: The thread settings the bare loop is timed under, each in a fresh process: its fastest is the limit.
BARE_SETTINGS = {
    "one thread": {"OMP_NUM_THREADS": "1"},
    "all cores spinning": {"OMP_NUM_THREADS": str(os.cpu_count()), "OMP_WAIT_POLICY": "ACTIVE"},
    "all cores sleeping": {"OMP_NUM_THREADS": str(os.cpu_count()), "OMP_WAIT_POLICY": "PASSIVE"},
}


def bare_limit(name: str, mode: str, args: argparse.Namespace) -> tuple[float, str]:
    """The bare loop's rate (steps per second) at its fastest thread setting, and that setting's name."""
    if torch.device(args.device).type != "cpu":  # host threads do not move a GPU's limit
        clock = Clock(args.seconds, args.warmup, args.warmup_seconds, torch.device(args.device))
        return bare_loop(WORKLOADS[name], mode, clock, args.batch_size, torch.device(args.device), args.config), "device"
    rates = {}
    for setting in args.limit_settings.split(","):
        variables = BARE_SETTINGS[setting]
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
        result = subprocess.run(
            [sys.executable, __file__, "--bare_only", f"{name}:{mode}", "--seconds", str(args.seconds), "--warmup", str(args.warmup),
             "--warmup_seconds", str(args.warmup_seconds), "--batch_size", str(args.batch_size), "--config", args.config],
            env={**env, **variables}, capture_output=True, text=True,
        )
        if result.returncode:
            raise SystemExit(f"the bare loop failed under {setting}: {result.stderr[-2000:]}")
        rates[setting] = float(result.stdout.strip().splitlines()[-1])
    best = max(rates, key=rates.get)
    return rates[best], best


def add_timing_arguments(parser: argparse.ArgumentParser, warmup: int, warmup_seconds: float) -> None:
    """The options every timed benchmark shares: how long, how often, how large a batch, where."""
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per run, after the warm-up")
    parser.add_argument("--warmup", type=int, default=warmup, help="untimed steps before timing (at least)")
    parser.add_argument("--warmup_seconds", type=float, default=warmup_seconds, help="untimed seconds before timing (at least)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats, whose medians are reported")
    parser.add_argument("--batch_size", type=int, default=1024)
    parser.add_argument("--device", default="cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_timing_arguments(parser, warmup=20, warmup_seconds=0.5)
    parser.add_argument("--workloads", default="hexagon,geometry,sweep", help="comma-separated: " + ",".join(WORKLOADS))
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: lit-superposition's choice)")
    parser.add_argument("--config", default="hexagon_scan.yaml", help="config whose callbacks lit-superposition runs with")
    parser.add_argument("--limit_settings", default=",".join(BARE_SETTINGS),
                        help="comma-separated thread settings the bare loop is timed under: " + ",".join(BARE_SETTINGS))
    parser.add_argument("--bare_only", default=None, help=argparse.SUPPRESS)  # WORKLOAD:MODE: one bare run, its rate printed
    args = parser.parse_args()
    if args.bare_only:
        name, mode = args.bare_only.split(":")
        clock = Clock(args.seconds, args.warmup, args.warmup_seconds, torch.device("cpu"))
        print(bare_loop(WORKLOADS[name], mode, clock, args.batch_size, torch.device("cpu"), args.config))
        return
    names = chosen_workloads(parser, args.workloads, WORKLOADS)
    chosen_workloads(parser, args.limit_settings, BARE_SETTINGS, "limit settings")
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    pl.seed_everything(0, verbose=False)

    def clock() -> Clock:
        return Clock(args.seconds, args.warmup, args.warmup_seconds, device)

    rates: dict[tuple[str, str], list[float]] = {}
    limits_at: dict[tuple[str, str], str] = {}
    for name in names:
        for mode in MODES:
            rate, setting = bare_limit(name, mode, args)
            rates[(name, f"bare {mode}")], limits_at[(name, mode)] = [rate * WORKLOADS[name].n_instances], setting
    for repeat in range(args.repeats):
        for name in names:
            workload = WORKLOADS[name]
            runs = {"reference": lambda: reference_loop(workload, clock(), args.batch_size, device)}
            for mode in MODES:
                runs[mode] = lambda mode=mode: lightning_run(workload, mode, clock(), args.batch_size, device, args.config)
            order = list(runs) if repeat % 2 == 0 else list(reversed(runs))
            for label in order:
                rates.setdefault((name, label), []).append(runs[label]() * workload.n_instances)

    console = Console() if sys.stdout.isatty() else Console(width=200)  # a log keeps the table's columns whole
    table = Table(title=f"Instance-steps per second (median of {args.repeats}; ratios: median (min-max)), "
                        f"batch {args.batch_size}, {device}, {args.seconds:g} s per run; bare: the fastest thread setting")
    for column in ("workload", "reference", "mode", "bare", "bare's setting", "lightning", "ratio", "vs_limit"):
        table.add_column(column, justify="right")
    ratios: dict[tuple[str, str], float] = {}
    limits: dict[tuple[str, str], float] = {}
    for name in names:
        reference = rates[(name, "reference")]
        for mode in MODES:
            lightning, bare = rates[(name, mode)], rates[(name, f"bare {mode}")]
            # Repeat k's ratios pair runs made side by side, so slow phases of the machine cancel.
            ratio = [a / b for a, b in zip(lightning, reference)]
            limit = [a / bare[0] for a in lightning]  # the limit is measured once, at its best setting
            ratios[(mode, name)], limits[(mode, name)] = statistics.median(ratio), statistics.median(limit)
            table.add_row(name if mode == MODES[0] else "", f"{statistics.median(reference):,.0f}" if mode == MODES[0] else "",
                          mode, f"{statistics.median(bare):,.0f}", limits_at[(name, mode)], f"{statistics.median(lightning):,.0f}",
                          spread(ratio), spread(limit))
    console.print(table)
    console.print(
        f"torch {torch.__version__}, pytorch-lightning {pl.__version__}, Python {platform.python_version()},"
        f" {platform.machine()}, {torch.get_num_threads()} threads"
    )
    for label, values in (("ratios", ratios), ("vs_limit", limits)):
        parts = [label]
        for mode in MODES:
            parts.append(mode)
            parts += [f"{name}={values[(mode, name)]:.2f}" for name in names]
        print(" ".join(parts))


if __name__ == "__main__":
    main()
