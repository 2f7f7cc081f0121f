"""Throughput of lit-superposition against the plain PyTorch loop it replaces.

The reference is ARENA's training loop, written out here: per step two ``torch.rand`` calls of shape
``(batch, n_instances, n_features)``, an einsum forward pass and an Adam step. lit-superposition runs
``Trainer.fit`` of LitToyModel + SparseFeatureDataModule, built by the CLI from a bundled config
(logger, progress bar, checkpointing and the config's callbacks included), in both data modes.
Repeats are interleaved and medians reported. The last line is::

    ratios shared hexagon=A geometry=B sweep=C independent hexagon=D geometry=E sweep=F

Usage::

    python benchmarks/throughput.py                       # defaults: under 3 minutes on 2 CPU cores
    python benchmarks/throughput.py --steps 50 --repeats 1 --workloads hexagon   # a smoke test
    python benchmarks/throughput.py --threads 1           # steadier ratios on a busy machine
    python benchmarks/throughput.py --device cuda
"""

from __future__ import annotations

import argparse
import contextlib
import io
import platform
import statistics
import tempfile
import time
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
    step_fraction: float  # of --steps and --warmup: the large workloads' steps are ~50x longer

    def steps(self, steps: int, warmup: int) -> tuple[int, int]:
        """Timed and warm-up steps of this workload."""
        return max(1, round(steps * self.step_fraction)), max(1, round(warmup * self.step_fraction))


WORKLOADS = {
    "hexagon": Workload(16, 6, 2, 0.057, 1.0),
    "geometry": Workload(20, 200, 20, "sweep", 0.1),
    "sweep": Workload(1024, 6, 2, 0.057, 0.1),
}


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reference_loop(workload: Workload, steps: int, warmup: int, batch_size: int, device: torch.device) -> float:
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
    start = 0.0
    for step in range(warmup + steps):
        if step == warmup:
            _synchronize(device)
            start = time.perf_counter()
        feature_magnitude = torch.rand((batch_size, i, f), device=device)
        feature_seed = torch.rand((batch_size, i, f), device=device)
        x = torch.where(feature_seed <= p, feature_magnitude, torch.zeros((), device=device))
        hidden = einops.einsum(W, x, "inst hidden feats, batch inst feats -> batch inst hidden")
        out = einops.einsum(hidden, W, "batch inst hidden, inst hidden feats -> batch inst feats")
        out = torch.relu(out + b)
        loss = (importance * (x - out) ** 2).mean(dim=(0, 2)).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    _synchronize(device)
    return steps / (time.perf_counter() - start)


class StepTimer(Callback):
    """Times the ``steps`` steps after the first ``warmup``, like the reference loop."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.steps, self.start, self.end = warmup, steps, 0.0, 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step in (self.warmup, self.warmup + self.steps):
            _synchronize(pl_module.device)
            now = time.perf_counter()
            if trainer.global_step == self.warmup:
                self.start = now
            else:
                self.end = now


def lightning_run(
    workload: Workload, mode: str, steps: int, warmup: int, batch_size: int, device: torch.device, config: str
) -> float:
    """``Trainer.fit`` as the CLI builds it from ``config``; returns timed steps per second."""
    p = workload.feature_probability
    probability = (
        ["--data.feature_probability=lit_superposition.data.LogSweep",
         "--data.feature_probability.start=1.0", "--data.feature_probability.end=0.05"]
        if p == "sweep" else [f"--data.feature_probability={p}"]
    )
    with tempfile.TemporaryDirectory() as runs, contextlib.redirect_stdout(io.StringIO()):
        cli = build_cli(
            [
                "--config", config,
                f"--data.n_instances={workload.n_instances}", f"--data.n_features={workload.n_features}",
                f"--model.d_hidden={workload.d_hidden}", *probability,
                f"--data.batch_size={batch_size}", f"--data.instance_data={mode}",
                f"--trainer.max_steps={warmup + steps}", f"--trainer.logger.init_args.save_dir={runs}",
                f"--trainer.accelerator={device.type}", "--trainer.devices=1",
            ],
            run=False,
        )
        timer = StepTimer(warmup, steps)
        cli.trainer.callbacks.append(timer)
        cli.trainer.fit(cli.model, cli.datamodule)
    return steps / (timer.end - timer.start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400, help="timed steps per run (geometry and sweep: a tenth)")
    parser.add_argument("--warmup", type=int, default=50, help="untimed steps before timing (geometry and sweep: a tenth)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats; medians are reported")
    parser.add_argument("--workloads", default="hexagon,geometry,sweep", help="comma-separated: " + ",".join(WORKLOADS))
    parser.add_argument("--batch_size", type=int, default=1024)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own, one per core)")
    parser.add_argument("--config", default="hexagon_scan.yaml", help="config whose callbacks lit-superposition runs with")
    args = parser.parse_args()
    names = [name.strip() for name in args.workloads.split(",")]
    unknown = [name for name in names if name not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workloads {unknown}; choose from {', '.join(WORKLOADS)}")
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    pl.seed_everything(0, verbose=False)

    rates: dict[tuple[str, str], list[float]] = {}
    for repeat in range(args.repeats):
        for name in names:
            workload = WORKLOADS[name]
            steps, warmup = workload.steps(args.steps, args.warmup)
            runs = {"reference": lambda: reference_loop(workload, steps, warmup, args.batch_size, device)}
            for mode in MODES:
                runs[mode] = lambda mode=mode: lightning_run(
                    workload, mode, steps, warmup, args.batch_size, device, args.config
                )
            order = list(runs) if repeat % 2 == 0 else list(reversed(runs))
            for label in order:
                rates.setdefault((name, label), []).append(runs[label]() * workload.n_instances)

    console = Console()
    table = Table(title=f"Instance-steps per second (median of {args.repeats}), batch {args.batch_size}, {device}")
    for column in ("workload", "reference", "shared", "ratio", "independent", "ratio"):
        table.add_column(column, justify="right")
    ratios: dict[tuple[str, str], float] = {}
    for name in names:
        reference = statistics.median(rates[(name, "reference")])
        row = [name, f"{reference:,.0f}"]
        for mode in MODES:
            rate = statistics.median(rates[(name, mode)])
            ratios[(mode, name)] = rate / reference
            row += [f"{rate:,.0f}", f"{ratios[(mode, name)]:.2f}"]
        table.add_row(*row)
    console.print(table)
    console.print(
        f"torch {torch.__version__}, pytorch-lightning {pl.__version__}, Python {platform.python_version()},"
        f" {platform.machine()}, {torch.get_num_threads()} threads"
    )
    parts = ["ratios"]
    for mode in MODES:
        parts.append(mode)
        parts += [f"{name}={ratios[(mode, name)]:.2f}" for name in names]
    print(" ".join(parts))


if __name__ == "__main__":
    main()
