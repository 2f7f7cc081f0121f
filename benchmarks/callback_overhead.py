"""What the default instruments cost: `trainer.fit` on the hexagon config (hexagon_scan.yaml, 16 seeds) with and without them.

Runs are interleaved (with, without, with, …) so that load on a shared machine hits both alike, and
the medians are compared. Usage::

    python benchmarks/callback_overhead.py                 # 10000 steps (the config), 3 repeats each
    python benchmarks/callback_overhead.py --repeats 5     # steadier: the figure in docs/performance.md
    python benchmarks/callback_overhead.py --steps 2000 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch

from lit_superposition.callbacks import (
    FeatureGeometry,
    FeatureGradNorms,
    FeatureLosses,
    GeometryReport,
    GeometrySnapshots,
)
from lit_superposition.cli import build_cli

INSTRUMENTS = (FeatureGradNorms, FeatureLosses, FeatureGeometry, GeometrySnapshots, GeometryReport)


def fit_seconds(steps: int, instruments: bool) -> tuple[float, float]:
    """Wall and CPU seconds of ``trainer.fit`` on hexagon_scan.yaml (16 seeds), in a fresh temporary directory.

    CPU time (all threads of this process) is the steadier figure on a shared machine: other
    people's load stretches the wall time of both variants by different amounts.
    """
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            cli = build_cli(
                ["--config", "hexagon_scan.yaml", "--data.n_instances=16", f"--trainer.max_steps={steps}",
                 "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"],
                run=False,
            )
            if not instruments:
                cli.trainer.callbacks = [c for c in cli.trainer.callbacks if not isinstance(c, INSTRUMENTS)]
            assert any(isinstance(c, GeometryReport) for c in cli.trainer.callbacks) == instruments
            start, cpu = time.perf_counter(), time.process_time()
            cli.trainer.fit(cli.model, cli.datamodule)
            return time.perf_counter() - start, time.process_time() - cpu
        finally:
            os.chdir(cwd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    fit_seconds(50, True)  # warm-up: imports, matplotlib font cache, first TensorBoard writer
    times: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for _ in range(args.repeats):
        for instruments in (True, False):
            wall, cpu = fit_seconds(args.steps, instruments)
            times[instruments].append((wall, cpu))
            print(f"{'with' if instruments else 'without'} instruments: {wall:.2f} s wall, {cpu:.2f} s CPU", flush=True)
    print(f"hexagon_scan.yaml (16 seeds), {args.steps} steps, torch {torch.__version__}, {torch.get_num_threads()} threads")
    for k, kind in enumerate(("wall", "CPU")):
        on = statistics.median(t[k] for t in times[True])
        off = statistics.median(t[k] for t in times[False])
        print(f"median {kind} time of fit: {off:.2f} s without, {on:.2f} s with the default instruments: "
              f"overhead {100 * (on / off - 1):+.1f}% ({1e3 * (on - off) / args.steps:.3f} ms per step "
              f"on {1e3 * off / args.steps:.3f} ms)")


if __name__ == "__main__":
    main()
