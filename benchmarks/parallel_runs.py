"""Several runs on one machine: N hexagon runs at once against the same runs one after the other.

Each run is a real ``lit-superposition fit`` of hexagon_scan.yaml (16 seeds) in its own process, as a
user starting the optimizer study's runs side by side would do. Prints one line per N and, last,
``parallel N=2 ratio=A N=3 ratio=B``: the time of the N runs at once divided by the time of the same
runs in sequence (at most 1.0 means running them together costs nothing). Usage::

    python benchmarks/parallel_runs.py                      # 3000 steps, N = 2 and 3
    python benchmarks/parallel_runs.py --steps 1000 --runs 2
    OMP_NUM_THREADS=2 OMP_WAIT_POLICY=ACTIVE python benchmarks/parallel_runs.py   # two spinning threads each, for comparison
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def command() -> list[str]:
    script = Path(sys.executable).with_name("lit-superposition")
    return [str(script)] if script.exists() else ["lit-superposition"]


def start(steps: int, folder: Path) -> subprocess.Popen:
    args = ["fit", "--config", "hexagon_scan.yaml", "--data.n_instances=16", f"--trainer.max_steps={steps}",
            "--trainer.enable_progress_bar=false", "--instruments.geometry_snapshots=null", "--report_page=false"]
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([*command(), *args], cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        _, stderr = process.communicate()
        if process.returncode:
            raise SystemExit(f"a run failed: {stderr[-2000:]}")


def seconds(steps: int, n: int, together: bool, root: Path) -> float:
    shutil.rmtree(root, ignore_errors=True)
    begin = time.perf_counter()
    if together:
        wait([start(steps, root / f"run{k}") for k in range(n)])
    else:
        for k in range(n):
            wait([start(steps, root / f"run{k}")])
    return time.perf_counter() - begin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--runs", type=int, nargs="+", default=[2, 3], help="N: runs at once")
    args = parser.parse_args()
    policy = os.environ.get("OMP_WAIT_POLICY", "unset (lit-superposition's thread policy: one thread for this size)")
    print(f"hexagon_scan.yaml (16 seeds), {args.steps} steps, {os.cpu_count()} cores, OMP_WAIT_POLICY={policy}")
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.runs:
            sequence = seconds(args.steps, n, False, Path(tmp) / "sequence")
            together = seconds(args.steps, n, True, Path(tmp) / "together")
            ratios.append(f"N={n} ratio={together / sequence:.2f}")
            print(f"N={n}: {sequence:.1f} s one after the other, {together:.1f} s at once", flush=True)
    print("parallel " + " ".join(ratios))


if __name__ == "__main__":
    main()
