"""What several optimizer steps per Lightning call buy: step rate against ``model.steps_per_call``.

The hexagon workload of ``benchmarks/throughput.py`` (16 instances x 6 features, batch 1024, shared
data, the ``hexagon_scan.yaml`` callbacks) is trained by ``Trainer.fit`` with K = 1, 2, 4, ... steps
per call, beside the bare loop (the same math, no Lightning), each for ``--seconds`` after a warm-up,
repeats interleaved. Lightning's fixed cost per call is ``c = t(1) - t_bare`` (seconds per step);
at K its share of a call is ``c / (K t_bare + c)``. The last line is::

    steps_per_call K=vs_limit ...

Usage::

    python benchmarks/steps_per_call.py                   # defaults: about 2 minutes on 2 CPU cores
    python benchmarks/steps_per_call.py --seconds 0.1 --repeats 1 --values 1,8   # a smoke test
"""

from __future__ import annotations

import argparse
import statistics

import pytorch_lightning as pl
import torch
from rich.console import Console
from rich.table import Table

from throughput import WORKLOADS, Clock, add_timing_arguments, bare_loop, lightning_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--values", default="1,2,4,8,16,32,64", help="comma-separated steps per call")
    parser.add_argument("--workload", default="hexagon", choices=list(WORKLOADS))
    add_timing_arguments(parser, warmup=64, warmup_seconds=1.0)
    parser.add_argument("--config", default="hexagon_scan.yaml", help="config whose callbacks lit-superposition runs with")
    args = parser.parse_args()
    values = [int(k) for k in args.values.split(",")]
    device, workload = torch.device(args.device), WORKLOADS[args.workload]
    pl.seed_everything(0, verbose=False)

    def clock() -> Clock:
        return Clock(args.seconds, args.warmup, args.warmup_seconds, device)

    rates: dict[str, list[float]] = {}
    for repeat in range(args.repeats):
        runs = {"bare": lambda: bare_loop(workload, "shared", clock(), args.batch_size, device, args.config)}
        for k in values:
            runs[str(k)] = lambda k=k: lightning_run(workload, "shared", clock(), args.batch_size, device, args.config,
                                                     steps_per_call=k)
        for label in list(runs) if repeat % 2 == 0 else list(reversed(runs)):
            rates.setdefault(label, []).append(runs[label]())

    bare = statistics.median(rates["bare"])
    per_call = 1 / statistics.median(rates[str(values[0])]) - 1 / bare if values[0] == 1 else None
    table = Table(title=f"{args.workload} on {device}: steps per second (median of {args.repeats}), batch {args.batch_size}")
    for column in ("steps_per_call", "steps/s", "vs_limit", "Lightning's share of a call"):
        table.add_column(column, justify="right")
    table.add_row("bare loop", f"{bare:,.0f}", "1.00", "")
    limits = {}
    for k in values:
        rate = statistics.median(rates[str(k)])
        limits[k] = statistics.median(a / b for a, b in zip(rates[str(k)], rates["bare"]))
        share = "" if per_call is None else f"{per_call / (k / bare + per_call):.0%}"
        table.add_row(str(k), f"{rate:,.0f}", f"{limits[k]:.2f}", share)
    Console().print(table)
    if per_call is not None:
        print(f"Lightning's fixed cost per call: {per_call * 1e6:.0f} us; one bare step: {1e6 / bare:.0f} us")
    print("steps_per_call " + " ".join(f"{k}={limits[k]:.2f}" for k in values))


if __name__ == "__main__":
    main()
