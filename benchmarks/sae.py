"""Many SAEs in one tensor against ARENA's training step run once per SAE, and padding against grouping.

Per workload, 64 ReLU + L1 SAEs (``--n_saes``) on the activations ``h = W x`` of toy sources (each SAE its own source
instance and data), trained with Adam, each loop timed for ``--seconds`` after a warm-up:

- *loop*: ARENA 1.3.1's ``ToySAE`` training step written out plainly and run for one SAE at a time
  (its own parameters and Adam): per SAE and step, the toy model's two ``torch.rand`` calls and
  ``einsum`` for ``h``, the einsum forward pass through ``W_dec / ‖W_dec‖``, ``backward``, the Adam step
  and the decoder's renormalization;
- *batched*: lit-superposition's :class:`~lit_superposition.models.ReLUSAE` holding all 64: one draw
  for all, the forward pass, ``backward``, ``remove_parallel_gradient``, the Adam step,
  ``normalize_decoder``.

Then SAEs of mixed dictionary sizes (a quarter of them each of four sizes): *padded* (one tensor as wide as the
largest dictionary, latents beyond an SAE's own masked to 0) against *grouped*
(:class:`~lit_superposition.models.SAEGroups`: one module per size), the choice the SAE models make.

Repeats are interleaved; the table shows medians and min-max. The last two lines are::

    padded/grouped pentagon=A geometry=B
    sae batched/loop pentagon=C geometry=D

Usage::

    python benchmarks/sae.py                 # defaults: 24 timed runs of 2 s and their warm-ups
    python benchmarks/sae.py --smoke         # a few seconds, numbers meaningless
    python benchmarks/sae.py --threads 1     # steadier ratios on a busy machine
    python benchmarks/sae.py --device cuda
"""

from __future__ import annotations

import argparse
import itertools
import platform
import statistics
from collections.abc import Callable
from dataclasses import dataclass, replace

import einops
import torch
from rich.console import Console
from rich.table import Table
from throughput import Clock, add_timing_arguments, chosen_workloads, spread

from lit_superposition.models import ReLUSAE, SAEGroups

@dataclass(frozen=True)
class Workload:
    n_saes: int
    n_features: int
    d_in: int
    d_latent: int
    mixed_sizes: tuple[int, ...]  # four dictionary sizes, 16 SAEs each, for padded/grouped
    feature_probability: float = 0.025
    sparsity_coefficient: float = 0.2  # ARENA's default


WORKLOADS = {
    # ARENA's setting: 5 features in 2 dimensions, 5 latents.
    "pentagon": Workload(n_saes=64, n_features=5, d_in=2, d_latent=5, mixed_sizes=(3, 5, 8, 10)),
    # 20-dimensional sources (feature_geometry.yaml's d_hidden), several dictionary sizes.
    "geometry": Workload(n_saes=64, n_features=40, d_in=20, d_latent=40, mixed_sizes=(10, 20, 40, 80)),
}


def sources(workload: Workload, device: torch.device) -> torch.Tensor:
    """One toy source's ``W`` per SAE, ``(n_saes, d_in, n_features)``, features at unit norm."""
    generator = torch.Generator().manual_seed(0)
    W = torch.randn(workload.n_saes, workload.d_in, workload.n_features, generator=generator)
    return (W / W.norm(dim=1, keepdim=True)).to(device)


def loop_run(workload: Workload, clock: Clock, batch_size: int, device: torch.device) -> float:
    """ARENA's step, one SAE at a time; returns timed rounds (every SAE one step) per second."""
    W = sources(workload, device)
    d_in, d_sae, p, coefficient = workload.d_in, workload.d_latent, workload.feature_probability, workload.sparsity_coefficient
    saes = []
    for _ in range(workload.n_saes):  # ARENA's ToySAE with n_inst = 1
        W_enc = torch.nn.Parameter(torch.nn.init.kaiming_uniform_(torch.empty(1, d_in, d_sae, device=device)))
        W_dec = torch.nn.Parameter(torch.nn.init.kaiming_uniform_(torch.empty(1, d_sae, d_in, device=device)))
        b_enc = torch.nn.Parameter(torch.zeros(1, d_sae, device=device))
        b_dec = torch.nn.Parameter(torch.zeros(1, d_in, device=device))
        params = [W_enc, W_dec, b_enc, b_dec]
        saes.append((params, torch.optim.Adam(params, lr=1e-3)))

    def step_one(i: int) -> None:
        (W_enc, W_dec, b_enc, b_dec), optimizer = saes[i]
        feature_magnitude = torch.rand((batch_size, 1, workload.n_features), device=device)
        feature_seed = torch.rand((batch_size, 1, workload.n_features), device=device)
        x = torch.where(feature_seed <= p, feature_magnitude, torch.zeros((), device=device))
        h = einops.einsum(x, W[i : i + 1], "batch inst feats, inst d_in feats -> batch inst d_in")
        W_dec_normalized = W_dec / (W_dec.norm(dim=-1, keepdim=True) + 1e-8)
        acts_pre = einops.einsum(W_enc, h - b_dec, "inst d_in d_sae, batch inst d_in -> batch inst d_sae") + b_enc
        acts_post = torch.relu(acts_pre)
        h_reconstructed = einops.einsum(W_dec_normalized, acts_post, "inst d_sae d_in, batch inst d_sae -> batch inst d_in") + b_dec
        loss = (h_reconstructed - h).pow(2).mean(-1) + coefficient * acts_post.abs().sum(-1)
        loss.mean(0).sum().backward()
        optimizer.step()
        optimizer.zero_grad()
        W_dec.data = W_dec.data / (W_dec.data.norm(dim=-1, keepdim=True) + 1e-8)

    def step_all(step: int) -> None:
        for i in range(workload.n_saes):
            step_one(i)

    return _run_until(clock, step_all)


def _batch(workload: Workload, W: torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    """``h = W x`` for every SAE at once, ``(n_saes, batch, d_in)``."""
    shape = (workload.n_saes, batch_size, workload.n_features)
    magnitude, seed = torch.rand(shape, device=device), torch.rand(shape, device=device)
    x = torch.where(seed <= workload.feature_probability, magnitude, torch.zeros((), device=device))
    return torch.bmm(x, W.transpose(1, 2))


def _train(model, parameters, loss_of: Callable[[torch.Tensor], torch.Tensor], workload, clock, batch_size, device) -> float:
    W = sources(workload, device)
    optimizer = torch.optim.Adam(parameters, lr=1e-3)

    def step(_: int) -> None:
        optimizer.zero_grad()
        loss_of(_batch(workload, W, batch_size, device)).backward()
        model.remove_parallel_gradient()
        optimizer.step()
        model.normalize_decoder()

    return _run_until(clock, step)


def batched_run(workload: Workload, clock: Clock, batch_size: int, device: torch.device) -> float:
    """All SAEs in one :class:`ReLUSAE`; returns timed steps per second."""
    sae = ReLUSAE(workload.n_saes, workload.d_in, workload.d_latent, workload.sparsity_coefficient).to(device)
    return _train(sae, sae.parameters(), lambda h: sae(h).loss.sum(), workload, clock, batch_size, device)


class PaddedReLUSAE(ReLUSAE):
    """One tensor as wide as the largest dictionary; latents beyond an SAE's own are masked to 0."""

    def __init__(self, sizes: list[int], d_in: int, sparsity_coefficient: float) -> None:
        super().__init__(len(sizes), d_in, max(sizes), sparsity_coefficient)
        self.register_buffer("latent_mask", (torch.arange(self.d_latent) < torch.tensor(sizes).unsqueeze(1)).float())
        with torch.no_grad():  # padded latents: no encoder, no decoder
            self.W_enc.mul_(self.latent_mask.unsqueeze(1))
            self.W_dec.mul_(self.latent_mask.unsqueeze(2))

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        return pre.relu() * self.latent_mask.unsqueeze(1)


def mixed_sizes(workload: Workload) -> list[int]:
    return [size for size in workload.mixed_sizes for _ in range(workload.n_saes // len(workload.mixed_sizes))]


def padded_run(workload: Workload, clock: Clock, batch_size: int, device: torch.device) -> float:
    sae = PaddedReLUSAE(mixed_sizes(workload), workload.d_in, workload.sparsity_coefficient).to(device)
    return _train(sae, sae.parameters(), lambda h: sae(h).loss.sum(), workload, clock, batch_size, device)


def grouped_run(workload: Workload, clock: Clock, batch_size: int, device: torch.device) -> float:
    saes = SAEGroups(ReLUSAE, len(mixed_sizes(workload)), workload.d_in, mixed_sizes(workload), sparsity_coefficient=workload.sparsity_coefficient)
    saes = saes.to(device)
    return _train(saes, saes.parameters(), lambda h: saes.collect(saes(h), "loss").sum(), workload, clock, batch_size, device)


def _run_until(clock: Clock, step: Callable[[int], None]) -> float:
    for index in itertools.count():
        step(index)
        if clock.tick(index):
            return clock.rate
    raise AssertionError("unreachable")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_timing_arguments(parser, warmup=10, warmup_seconds=0.5)
    parser.add_argument("--workloads", default="pentagon,geometry", help="comma-separated: " + ",".join(WORKLOADS))
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--n_saes", type=int, default=64, help="SAEs per workload (a multiple of 4)")
    parser.add_argument("--smoke", action="store_true", help="a tiny run that checks the script works (8 SAEs, 1 thread)")
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.warmup, args.warmup_seconds, args.repeats, args.batch_size = 0.01, 1, 0.0, 1, 64
        args.n_saes, args.threads = 8, 1
    if args.n_saes < 4 or args.n_saes % 4:
        parser.error(f"--n_saes must be a positive multiple of 4 (four dictionary sizes), got {args.n_saes}")
    names = chosen_workloads(parser, args.workloads, WORKLOADS)
    workloads = {name: replace(WORKLOADS[name], n_saes=args.n_saes) for name in names}
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    runs = {"loop": loop_run, "batched": batched_run, "padded": padded_run, "grouped": grouped_run}
    rates: dict[tuple[str, str], list[float]] = {}
    for repeat in range(args.repeats):
        for name in names:
            order = list(runs) if repeat % 2 == 0 else list(reversed(runs))
            for label in order:
                clock = Clock(args.seconds, args.warmup, args.warmup_seconds, device)
                rates.setdefault((name, label), []).append(runs[label](workloads[name], clock, args.batch_size, device) * args.n_saes)

    def ratio(name: str, a: str, b: str) -> list[float]:
        # Repeat k's ratio pairs runs made side by side, so slow phases of the machine cancel.
        return [x / y for x, y in zip(rates[(name, a)], rates[(name, b)])]

    table = Table(title=f"SAE-steps per second ({args.n_saes} SAEs; median of {args.repeats}, ratios median (min-max)), "
                        f"batch {args.batch_size}, {device}, {args.seconds:g} s per run")
    for column in ("workload", "loop (ARENA)", "batched", "batched/loop", "padded", "grouped", "padded/grouped"):
        table.add_column(column, justify="right")
    for name in names:
        median = {label: f"{statistics.median(rates[(name, label)]):,.0f}" for label in runs}
        table.add_row(name, median["loop"], median["batched"], spread(ratio(name, "batched", "loop")),
                      median["padded"], median["grouped"], spread(ratio(name, "padded", "grouped")))
    console = Console(width=120)  # the whole table, also when the output is not a terminal
    console.print(table)
    console.print("; ".join(f"{name}: d_in {w.d_in}, {w.d_latent} latents, mixed sizes {list(w.mixed_sizes)}" for name, w in workloads.items()))
    console.print(f"torch {torch.__version__}, Python {platform.python_version()}, {platform.machine()}, {torch.get_num_threads()} threads")
    print("padded/grouped " + " ".join(f"{name}={statistics.median(ratio(name, 'padded', 'grouped')):.2f}" for name in names))
    print("sae batched/loop " + " ".join(f"{name}={statistics.median(ratio(name, 'batched', 'loop')):.2f}" for name in names))


if __name__ == "__main__":
    main()
