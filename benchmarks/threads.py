"""What users run, as they run it, against the best thread setting this machine allows.

Part 1, end to end: the installed ``lit-superposition fit`` of the main job (``hexagon_patch.yaml``) and
of ``pentagon.yaml``, each as a subprocess in the default environment (lit-superposition's thread
policy) and under each fixed setting: one thread (``OMP_NUM_THREADS=1``), all cores spinning
(``OMP_NUM_THREADS`` = the cores, ``OMP_WAIT_POLICY=ACTIVE``) and all cores sleeping (``PASSIVE``). Wall time of the
whole command; repeats interleaved, medians. ``default/best`` is the default's time over the fastest
setting's (1.00: the default is the best; the target is at most 1.10).

Part 2, the policy's threshold: the bare step (lit-superposition's data draw, fused loss and AdamW,
no Lightning) of workloads from tiny to large, timed in a subprocess under each setting, so the size
from which several threads pay off is measured, not guessed (``lit_superposition.threads.ONE_THREAD_BELOW``).

It prints the fastest setting of each workload's bare step, then, last, the end-to-end ratios::

    threads end_to_end main_job=A pentagon=B          (default/best)

Usage::

    python benchmarks/threads.py                       # about 10 minutes on 2 cores
    python benchmarks/threads.py --smoke               # a few seconds per run, numbers meaningless
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

CORES = str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
SETTINGS = {
    "default": {},
    "one thread": {"OMP_NUM_THREADS": "1"},
    "all cores, spinning": {"OMP_NUM_THREADS": CORES, "OMP_WAIT_POLICY": "ACTIVE"},
    "all cores, sleeping": {"OMP_NUM_THREADS": CORES, "OMP_WAIT_POLICY": "PASSIVE"},
}
RUNS = {
    "main_job": ["--config", "hexagon_patch.yaml"],
    "pentagon": ["--config", "pentagon.yaml", "--trainer.max_steps=20000"],
}
#: (n_instances, n_features, d_hidden): from the hexagon to the feature-geometry workload.
WORKLOADS = {
    "pentagon (8, 5, 2)": (8, 5, 2),
    "hexagon (16, 6, 2)": (16, 6, 2),
    "mid (64, 20, 5)": (64, 20, 5),
    "sweep (1024, 6, 2)": (1024, 6, 2),
    "wide (32, 100, 10)": (32, 100, 10),
    "geometry (20, 200, 20)": (20, 200, 20),
}
BARE = """
import json, sys, time, torch
from lit_superposition.data import SparseFeatureDataModule
from lit_superposition.models import ReLUOutputModel
i, f, h, seconds = json.loads(sys.argv[1])
model, data = ReLUOutputModel(i, f, h, 0), SparseFeatureDataModule(i, f, feature_probability=0.05, batch_size=1024)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
def step(k):
    x = data.make_batch(k)
    optimizer.zero_grad()
    model.per_feature_loss(x).mean(1).sum().backward()
    optimizer.step()
k, start = 0, time.perf_counter()
while time.perf_counter() - start < seconds / 4:  # warm-up
    step(k); k += 1
n, start = 0, time.perf_counter()
while time.perf_counter() - start < seconds:
    step(k); k += 1; n += 1
print(n / (time.perf_counter() - start))
"""


def command() -> list[str]:
    script = Path(sys.executable).with_name("lit-superposition")
    return [str(script)] if script.exists() else ["lit-superposition"]


def environment(setting: dict[str, str]) -> dict[str, str]:
    """The default environment (the user's, without any thread variable) with ``setting`` on top."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MKL_NUM_THREADS")}
    env.pop("LIT_SUPERPOSITION_USER_THREADS", None)
    return {**env, **setting}


def end_to_end(args: list[str], setting: dict[str, str], folder: Path) -> float:
    """Wall seconds of the installed command."""
    folder.mkdir(parents=True, exist_ok=True)
    begin = time.perf_counter()
    result = subprocess.run([*command(), "fit", *args, "--report_page=false", "--trainer.enable_progress_bar=false"],
                            cwd=folder, env=environment(setting), capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"the run failed: {result.stderr[-2000:]}")
    return time.perf_counter() - begin


def bare_rate(workload: tuple[int, int, int], setting: dict[str, str], seconds: float) -> float:
    """Steps per second of the bare step, in a fresh process under ``setting``."""
    result = subprocess.run([sys.executable, "-c", BARE, json.dumps([*workload, seconds])], env=environment(setting),
                            capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"the bare step failed: {result.stderr[-2000:]}")
    return float(result.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds of each bare step")
    parser.add_argument("--smoke", action="store_true", help="tiny runs: a few seconds each, numbers meaningless")
    args = parser.parse_args()
    runs = {name: [*run, *(["--trainer.max_steps=20", "--data.n_instances=6"] if args.smoke else [])]
            for name, run in RUNS.items()}
    if args.smoke:
        runs["main_job"] = ["--config", "hexagon_patch.yaml", "--trainer.max_steps=20"]
    workloads = dict(list(WORKLOADS.items())[:1]) if args.smoke else WORKLOADS
    repeats, seconds = (1, 0.2) if args.smoke else (args.repeats, args.seconds)
    settings = {name: SETTINGS[name] for name in ("default", "one thread")} if args.smoke else SETTINGS
    console = Console()

    times: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(repeats):
            order = list(settings) if repeat % 2 == 0 else list(reversed(settings))
            for name, run in runs.items():
                for setting in order:
                    times.setdefault((name, setting), []).append(end_to_end(run, settings[setting], Path(tmp) / f"{name}{repeat}{setting}"))
    table = Table(title=f"The installed command, wall seconds (median of {repeats})")
    table.add_column("run")
    for setting in settings:
        table.add_column(setting, justify="right")
    table.add_column("default/best", justify="right")
    ratios = {}
    for name in runs:
        medians = {setting: statistics.median(times[(name, setting)]) for setting in settings}
        ratios[name] = medians["default"] / min(medians[s] for s in settings if s != "default")
        table.add_row(name, *(f"{medians[s]:.1f}" for s in settings), f"{ratios[name]:.2f}")
    console.print(table)

    rates: dict[tuple[str, str], list[float]] = {}
    fixed = [s for s in settings if s != "default"]
    for repeat in range(repeats):
        for name, workload in workloads.items():
            for setting in fixed if repeat % 2 == 0 else list(reversed(fixed)):
                rates.setdefault((name, setting), []).append(bare_rate(workload, settings[setting], seconds))
    table = Table(title=f"The bare step (no Lightning), steps per second (median of {repeats})")
    table.add_column("workload (instances, features, hidden)")
    table.add_column("multiply-adds per step", justify="right")
    for setting in fixed:
        table.add_column(setting, justify="right")
    best = {}
    for name, (i, f, h) in workloads.items():
        medians = {setting: statistics.median(rates[(name, setting)]) for setting in fixed}
        best[name] = max(medians, key=medians.get)
        table.add_row(name, f"{i * 1024 * f * h:,}", *(f"{medians[s]:,.0f}" for s in fixed))
    console.print(table)
    print(f"{os.cpu_count()} cores; " + "; ".join(f"{name}: {best[name]}" for name in workloads))
    print("threads end_to_end " + " ".join(f"{name}={ratio:.2f}" for name, ratio in ratios.items()))


if __name__ == "__main__":
    main()
