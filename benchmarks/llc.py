"""λ̂ of 64 instances in one batched pass against 64 sequential devinterp estimates with the same chains and draws.

The workload is the hexagon scan's shape: 64 ReLU-output instances of 6 features in 2 dimensions
(hexagons, each turned by its own angle and perturbed a little), on one shared sample of Chen et
al.'s data law (one feature active per point). Both sides run the same SGLD (step, localization,
nβ, chains, burn-in, draws, minibatch size) on the same weights and sample:

- *batched*: :func:`lit_superposition.analysis.llc.estimate_llc`, every chain of every instance in one
  instanced model;
- *devinterp*: ``estimate_learning_coeff_with_summary`` (devinterp 1.x, the test extra) once per
  instance, its chains one after the other, through
  :func:`~lit_superposition.analysis.llc.devinterp_estimate` (minibatches fetched whole, not point by
  point, so the loader is not what is measured).

Repeats alternate the order; the table shows medians and the min-max over repeats, and the mean λ̂
of both (the same quantity, so they should agree within the chains' spread). The last line is::

    llc instances=64 speedup=A

``speedup``: devinterp's time over the batched time, the median of the repeats' ratios.

Usage::

    python benchmarks/llc.py                  # 64 instances, 4 chains, 50 burn-in + 100 draws: ~1 minute on 2 cores
    python benchmarks/llc.py --smoke          # a few seconds: 4 instances, 2 chains, 5 + 10 steps
    python benchmarks/llc.py --chains 8 --draws 2000 --burnin 1000   # the estimator's defaults (long)
    python benchmarks/llc.py --device cuda
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time

import torch
from rich.console import Console
from rich.table import Table

from lit_superposition.analysis.llc import LLCSettings, devinterp_estimate, estimate_llc
from lit_superposition.models import ReLUOutputModel


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def chen_sample(n: int, n_features: int, seed: int = 0) -> torch.Tensor:
    """``(1, n, n_features)``: one feature active per point, chosen uniformly, uniform on (0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    which = torch.randint(n_features, (1, n), generator=generator)
    value = 1 - torch.rand(1, n, generator=generator)
    return torch.zeros(1, n, n_features).scatter_(2, which.unsqueeze(2), value.unsqueeze(2))


def hexagons(n_instances: int, device: torch.device) -> ReLUOutputModel:
    """``n_instances`` hexagons of 6 features in 2 dimensions, each turned and perturbed by its seed."""
    generator = torch.Generator().manual_seed(0)
    model = ReLUOutputModel(n_instances, 6, 2)
    turn = torch.rand(n_instances, 1, generator=generator) * 2 * math.pi
    angles = torch.arange(6) * 2 * math.pi / 6 + turn  # (n_instances, 6)
    noise = 0.02 * torch.randn(n_instances, 2, 6, generator=generator)
    with torch.no_grad():
        model.W.copy_(1.3 * torch.stack([angles.cos(), angles.sin()], dim=1) + noise)
        model.b.fill_(-0.6)
    return model.to(device)


def spread(values: list[float], unit: str = "") -> str:
    """``median (min-max)``, or the one value."""
    if len(values) == 1:
        return f"{values[0]:.2f}{unit}"
    return f"{statistics.median(values):.2f}{unit} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=64)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--draws", type=int, default=100)
    parser.add_argument("--burnin", type=int, default=50)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--n", type=int, default=10_000, help="sample size")
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats; medians and min-max are reported")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--smoke", action="store_true", help="a tiny run that only checks the benchmark works")
    args = parser.parse_args()
    if args.smoke:
        args.instances, args.chains, args.draws, args.burnin = 4, 2, 10, 5
        args.n, args.batch_size, args.repeats = 1000, 64, 1
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    settings = LLCSettings(
        n=args.n, n_chains=args.chains, n_draws=args.draws, n_burnin=args.burnin, batch_size=args.batch_size
    )
    model, sample = hexagons(args.instances, device), chen_sample(args.n, 6).to(device)

    def batched() -> tuple[float, float]:
        synchronize(device)
        begin = time.perf_counter()
        estimate = estimate_llc(model, sample, settings)
        synchronize(device)
        return time.perf_counter() - begin, float(estimate.mean.mean())

    def sequential() -> tuple[float, float]:
        synchronize(device)
        begin = time.perf_counter()
        means = [devinterp_estimate(model, i, sample, settings)["llc/mean"] for i in range(args.instances)]
        synchronize(device)
        return time.perf_counter() - begin, statistics.fmean(means)

    warm_up = LLCSettings(n=args.n, n_chains=2, n_draws=2, n_burnin=0, batch_size=args.batch_size)
    estimate_llc(model, sample, warm_up)
    devinterp_estimate(model, 0, sample, warm_up)  # devinterp's imports (pandas, matplotlib) are not timed
    times: dict[str, list[float]] = {"batched": [], "devinterp": []}
    values: dict[str, list[float]] = {"batched": [], "devinterp": []}
    for repeat in range(args.repeats):
        order = [("batched", batched), ("devinterp", sequential)]
        for name, run in order if repeat % 2 == 0 else reversed(order):
            seconds, value = run()
            times[name].append(seconds)
            values[name].append(value)
    ratios = [d / b for d, b in zip(times["devinterp"], times["batched"])]  # repeat k's runs side by side

    resolved = settings.resolved()
    table = Table(title=(
        f"λ̂ of {args.instances} instances (relu_output, 6 features in 2 dimensions), {args.chains} chains,"
        f" {args.burnin} burn-in + {args.draws} draws, batch {args.batch_size}, n = {args.n},"
        f" ε = {resolved.epsilon:.3g}, γ = {resolved.gamma:.3g}, nβ = {resolved.nbeta:.4g}, {device};"
        f" median (min-max) of {args.repeats}"
    ))
    for column in ("estimator", "seconds", "chain-steps per second", "mean λ̂"):
        table.add_column(column, justify="right")
    steps = args.instances * args.chains * settings.n_steps
    for name in ("batched", "devinterp"):
        rate = f"{steps / statistics.median(times[name]):,.0f}"
        table.add_row(name, spread(times[name], " s"), rate, spread(values[name]))
    console = Console()
    console.print(table)
    console.print(
        f"torch {torch.__version__}, Python {platform.python_version()}, {platform.machine()},"
        f" {torch.get_num_threads()} threads"
    )
    print(f"llc instances={args.instances} speedup={statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
