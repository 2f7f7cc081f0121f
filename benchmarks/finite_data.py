"""The finite-data step against ARENA 1.3.1's double-descent loop on the same training-set sizes.

ARENA trains one model per training-set size (its ``DoubleDescentModel``: ``n_instances`` repeats of
one size side by side), full batch, AdamW: for every size a separate loop. lit-superposition trains
every size in one set of tensors, each instance's set packed in chunks (cost: the points that exist).
Both draw their sets once (not timed) and time ``--steps`` full-batch AdamW steps after a warm-up:

- *arena*: per size, ARENA's model written out: ``h = einsum(W, x)``, ``x' = ReLU(einsum(W, h) + b)``,
  the mean squared error per instance, ``backward``, AdamW; the time is the sum over the sizes;
- *lit-superposition*: :class:`~lit_superposition.module.LitToyModel`'s objective on the packed sets of
  every size (:class:`~lit_superposition.data.PackedSets`), ``backward``, the module's AdamW.

Repeats are interleaved; the table shows medians and min-max. The last line is::

    finite_data arena/lit=R

Usage::

    python benchmarks/finite_data.py              # ARENA's grid: sizes 3..2000, 5 repeats, 1000 features
    python benchmarks/finite_data.py --smoke      # a few seconds, numbers meaningless
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import einops
import torch
from rich.console import Console
from rich.table import Table
from throughput import spread

from lit_superposition import LitToyModel, SparseFeatureDataModule

ARENA_SIZES = [3, 5, 6, 8, 10, 15, 30, 50, 100, 200, 500, 1000, 2000]


def arena_seconds(sets: list[torch.Tensor], n_features: int, d_hidden: int, steps: int, warmup: int) -> float:
    """ARENA's loop, one model per size; returns the seconds of ``steps`` steps summed over the sizes."""
    total = 0.0
    for x in sets:  # (batch, n_instances, n_features): ARENA's layout
        n_instances = x.shape[1]
        W = torch.nn.Parameter(torch.nn.init.xavier_normal_(torch.empty(n_instances, d_hidden, n_features)))
        b = torch.nn.Parameter(torch.zeros(n_instances, n_features))
        optimizer = torch.optim.AdamW([W, b], lr=1e-3, weight_decay=1e-2)
        for step in range(warmup + steps):
            if step == warmup:
                start = time.perf_counter()
            h = einops.einsum(W, x, "inst hidden feats, batch inst feats -> batch inst hidden")
            out = torch.relu(einops.einsum(W, h, "inst hidden feats, batch inst hidden -> batch inst feats") + b)
            loss = (x - out).square().mean(dim=(0, 2)).sum()  # mean over points and features, summed over instances
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        total += time.perf_counter() - start
    return total


def lit_seconds(data: SparseFeatureDataModule, module: LitToyModel, steps: int, warmup: int) -> float:
    """Every size in one set of tensors; returns the seconds of ``steps`` steps."""
    sets = data.training_sets()
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3, weight_decay=1e-2)
    for step in range(warmup + steps):
        if step == warmup:
            start = time.perf_counter()
        loss, _ = module.objective(sets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="timed full-batch steps per size")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n_features", type=int, default=1000)
    parser.add_argument("--n_repeats", type=int, default=5, help="instances per size (ARENA's N_INSTANCES)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and few steps: a few seconds, numbers meaningless")
    args = parser.parse_args()
    sizes = ARENA_SIZES[:5] if args.smoke else ARENA_SIZES
    steps, warmup, repeats = (2, 1, 1) if args.smoke else (args.steps, args.warmup, args.repeats)
    n_features = 50 if args.smoke else args.n_features
    torch.set_num_threads(args.threads)

    n_instances = len(sizes) * args.n_repeats
    data = SparseFeatureDataModule(n_instances, n_features, feature_probability=0.01, dataset_size=sizes,
                                   repeats=args.n_repeats, instance_data="independent", scale_points="unit_norm")
    packed = data.training_sets()
    # ARENA's sets: the same points, one (size, n_repeats, n_features) tensor per size.
    arena_sets = [torch.stack([packed.points(k * args.n_repeats + r) for r in range(args.n_repeats)], dim=1)
                  for k in range(len(sizes))]
    times: dict[str, list[float]] = {"arena": [], "lit": []}
    for repeat in range(repeats):
        order = ("arena", "lit") if repeat % 2 == 0 else ("lit", "arena")
        for name in order:
            if name == "arena":
                times[name].append(arena_seconds(arena_sets, n_features, 2, steps, warmup))
            else:
                times[name].append(lit_seconds(data, LitToyModel(n_instances, n_features, 2), steps, warmup))
    ratios = [a / b for a, b in zip(times["arena"], times["lit"])]
    table = Table(title=f"{steps} full-batch steps of every size (sizes {sizes[0]}..{sizes[-1]}, {args.n_repeats} repeats, "
                        f"{n_features} features, {torch.get_num_threads()} threads): seconds, median (min-max)")
    for column in ("loop", "seconds", "ms per step of every size"):
        table.add_column(column, justify="right")
    for name, label in (("arena", "ARENA (one loop per size)"), ("lit", "lit-superposition (one packed tensor)")):
        table.add_row(label, spread(times[name]), f"{1000 * statistics.median(times[name]) / steps:.1f}")
    Console().print(table)
    print(f"points per step {sum(sizes) * args.n_repeats:,}; torch {torch.__version__}, Python {platform.python_version()}, {platform.machine()}")
    print(f"finite_data arena/lit={statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
