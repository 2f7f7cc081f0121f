"""Cost of the signed-values stream against the uniform one: ``make_batch`` alone, per step.

``SparseFeatureDataModule.make_batch`` is timed for ``values: uniform`` and ``values: signed`` on
the workloads of ``benchmarks/throughput.py`` (hexagon: 16 instances x 6 features; sweep: 1024 x 6;
geometry: 20 x 200; batch 1024), in both data modes, without sets and with a correlated set
(features 0, 1) and an anticorrelated set (features 2, 3). The two values of one setting run side by
side, in alternating order, in short runs repeated many times over all settings, so slow phases of a
shared machine hit both alike; each repeat gives one signed/uniform ratio and the table shows their
median (min-max). The cheapest setting runs ``--steps`` steps per run, the others as many as take
about as long (from a short timing of each first). The last line is::

    ratios signed/uniform shared=A independent=B sets=C

each the largest median ratio over the workloads (``sets``: over the workloads and both modes).

Usage::

    python benchmarks/stream_cost.py                        # defaults: about 4 minutes on 2 CPU cores
    python benchmarks/stream_cost.py --steps 5 --repeats 1   # a smoke test
    python benchmarks/stream_cost.py --device cuda
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from dataclasses import dataclass

import torch
from rich.console import Console
from rich.table import Table

from lit_superposition.data import SparseFeatureDataModule
from throughput import chosen_workloads, spread, synchronize

MODES = ("shared", "independent")
VALUES = ("uniform", "signed")
SETS = {"correlated_sets": [[0, 1]], "anticorrelated_sets": [[2, 3]]}


@dataclass(frozen=True)
class Workload:
    n_instances: int
    n_features: int
    sweep: bool  # p = 0.5 * 20 ** -linspace(0, 1, n_instances) per instance, else 0.057 everywhere

    def probability(self) -> torch.Tensor:
        """``(n_instances, n_features)``: equal within each instance, so any set is valid."""
        if self.sweep:
            p = 0.5 * 20 ** -torch.linspace(0, 1, self.n_instances)
        else:
            p = torch.full((self.n_instances,), 0.057)
        return p[:, None].expand(self.n_instances, self.n_features).contiguous()


WORKLOADS = {
    "hexagon": Workload(16, 6, False),
    "sweep": Workload(1024, 6, False),
    "geometry": Workload(20, 200, True),
}


def time_stream(data: SparseFeatureDataModule, steps: int, device: torch.device, warmup: int = 2) -> float:
    """Seconds per ``make_batch`` over ``steps`` consecutive steps, after ``warmup`` untimed ones."""
    for step in range(warmup):
        data.make_batch(step, device=device)
    synchronize(device)
    start = time.perf_counter()
    for step in range(steps):
        data.make_batch(warmup + step, device=device)
    synchronize(device)
    return (time.perf_counter() - start) / steps


def step_cost(data: SparseFeatureDataModule, device: torch.device, seconds: float = 0.1) -> float:
    """Seconds per ``make_batch``, timed for about ``seconds`` (at least 2 steps), after a warm-up."""
    time_stream(data, 1, device, warmup=3)
    steps, start = 0, time.perf_counter()
    while steps < 2 or time.perf_counter() - start < seconds:
        data.make_batch(steps, device=device)
        steps += 1
    synchronize(device)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000, help="timed steps per run of the cheapest setting")
    parser.add_argument("--repeats", type=int, default=11, help="interleaved repeats; medians and min-max are reported")
    parser.add_argument("--workloads", default="hexagon,sweep,geometry", help="comma-separated: " + ",".join(WORKLOADS))
    parser.add_argument("--batch_size", type=int, default=1024)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    args = parser.parse_args()
    names = chosen_workloads(parser, args.workloads, WORKLOADS)
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    settings = [(name, mode, sets) for name in names for sets in (False, True) for mode in MODES]
    streams = {}
    for name, mode, sets in settings:
        workload = WORKLOADS[name]
        for values in VALUES:
            streams[(name, mode, sets, values)] = SparseFeatureDataModule(
                workload.n_instances, workload.n_features, workload.probability(), batch_size=args.batch_size,
                instance_data=mode, values=values, **(SETS if sets else {}),
            )
    # A short timing of each setting's uniform stream sets its steps: every run lasts about as long.
    cost = {setting: step_cost(streams[(*setting, "uniform")], device) for setting in settings}
    steps_of = {setting: max(2, round(args.steps * min(cost.values()) / cost[setting])) for setting in settings}
    seconds: dict[tuple, list[float]] = {key: [] for key in streams}
    ratios: dict[tuple, list[float]] = {setting: [] for setting in settings}
    for repeat in range(args.repeats):
        for name, mode, sets in settings:
            steps = steps_of[(name, mode, sets)]
            order = VALUES if repeat % 2 == 0 else tuple(reversed(VALUES))
            for values in order:
                seconds[(name, mode, sets, values)].append(time_stream(streams[(name, mode, sets, values)], steps, device))
            ratios[(name, mode, sets)].append(seconds[(name, mode, sets, "signed")][-1] / seconds[(name, mode, sets, "uniform")][-1])

    console = Console()
    table = Table(title=f"make_batch, µs per step (median of {args.repeats}; ratio: median (min-max)), "
                        f"batch {args.batch_size}, {device}")
    for column in ("workload", "mode", "sets", "steps", "uniform", "signed"):
        table.add_column(column, justify="right")
    table.add_column("signed/uniform", justify="right", no_wrap=True)
    for name, mode, sets in settings:
        median = {values: statistics.median(seconds[(name, mode, sets, values)]) * 1e6 for values in VALUES}
        table.add_row(name, mode, "corr+anti" if sets else "-", str(steps_of[(name, mode, sets)]), f"{median['uniform']:,.1f}",
                      f"{median['signed']:,.1f}", spread(ratios[(name, mode, sets)]))
    console.print(table)
    console.print(f"torch {torch.__version__}, Python {platform.python_version()}, {platform.machine()},"
                  f" {torch.get_num_threads()} threads")

    def worst(keep) -> float:
        return max(statistics.median(ratios[setting]) for setting in settings if keep(*setting))

    shared = worst(lambda name, mode, sets: mode == "shared" and not sets)
    independent = worst(lambda name, mode, sets: mode == "independent" and not sets)
    with_sets = worst(lambda name, mode, sets: sets)
    print(f"ratios signed/uniform shared={shared:.2f} independent={independent:.2f} sets={with_sets:.2f}")


if __name__ == "__main__":
    main()
