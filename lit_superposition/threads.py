"""How many CPU threads a run's steps get, and how their OpenMP workers wait: chosen per run, not once for all.

A toy model's step is a few small matrix products. With one thread there is no OpenMP barrier at
all; with several, the workers must meet after every kernel, and how they wait decides the speed:
spinning (OpenMP's default) keeps a core each busy, so a second busy process on the machine stalls
every barrier (measured on 2 cores: 0.35 ms a hexagon step alone with one thread, 25 to 120 ms with
two spinning threads beside one busy process); sleeping (``OMP_WAIT_POLICY=PASSIVE``) costs a wake-up
at every barrier. So small steps get one thread, and large ones every free core with a short bounded
spin (``GOMP_SPINCOUNT``), which spins through a quick kernel and then sleeps instead of stalling.
``benchmarks/threads.py`` measures the choice against the alternatives.

A user's setting always wins: ``OMP_NUM_THREADS`` (or ``MKL_NUM_THREADS``) in the environment, or
``torch.set_num_threads`` called before the run, keep the threads; ``OMP_WAIT_POLICY`` or
``GOMP_SPINCOUNT`` keep the waiting. Everything here but :func:`free_cores` is pure.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import asdict, dataclass

#: Multiply-adds of ``h = W x`` per step (instances × batch × features × hidden) below which one thread
#: is faster on a CPU. The bare step on the 2-core VM (2026-12-06, docs/performance.md): at 0.2 million
#: one thread beat two with the bounded spin by 13%; from 1 million on two threads were 5% to 50% faster.
ONE_THREAD_BELOW = 500_000
#: Spins before an OpenMP worker sleeps: long enough for a quick kernel's barrier, short enough that a
#: core taken by another process costs microseconds, not milliseconds.
SPIN_COUNT = "1000"
USER_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
USER_WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
#: The user's thread variables as the command found them, for its processes: Lightning sets
#: ``OMP_NUM_THREADS`` for the processes it launches, which is its choice, not the user's.
USER_ENVIRONMENT = "LIT_SUPERPOSITION_USER_THREADS"


@dataclass(frozen=True)
class ThreadChoice:
    """The threads a run uses, and why.

    Attributes:
        threads: Intra-op threads (``torch.set_num_threads``), or None to leave them as they are.
        reason: One line, for the report.
        source: ``"user"`` (the user's setting wins), ``"policy"`` (chosen here) or ``"device"`` (not the CPU's business).
    """

    threads: int | None
    reason: str
    source: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def step_work(n_instances: int, batch_size: int, n_features: int, d_hidden: int) -> int:
    """Multiply-adds of one step's ``h = W x``: the size the choice goes by."""
    return n_instances * batch_size * n_features * d_hidden


def choose_threads(
    work: int, free: int, environ: Mapping[str, str], current: int, default: int, device: str = "cpu"
) -> ThreadChoice:
    """The threads a run's steps get.

    Args:
        work: :func:`step_work` of the run.
        free: CPU cores not busy with other work (:func:`free_cores`), at least 1.
        environ: The environment (``os.environ``).
        current: ``torch.get_num_threads()`` now.
        default: What torch would use untouched (its cores); ``current != default`` means the user set it.
        device: The training device's type.

    Example::

        choose_threads(196_608, free=2, environ={}, current=2, default=2).threads  # 1: a small step
    """
    if device != "cpu":
        return ThreadChoice(None, f"training on {device}: the host's threads are left as they are", "device")
    for name in USER_THREAD_VARIABLES:
        if environ.get(name):
            return ThreadChoice(None, f"{name}={environ[name]} in the environment", "user")
    if current != default:
        return ThreadChoice(None, f"torch.set_num_threads({current}) before the run", "user")
    if work < ONE_THREAD_BELOW:
        return ThreadChoice(1, f"a small step ({work:,} multiply-adds, below {ONE_THREAD_BELOW:,}): one thread, no barriers", "policy")
    threads = max(1, min(free, default))
    return ThreadChoice(threads, f"a large step ({work:,} multiply-adds): {threads} of {default} cores free", "policy")


def record_user_threads(environ: MutableMapping[str, str]) -> None:
    """Keep the user's thread variables where the command's other processes find them (first call wins)."""
    if USER_ENVIRONMENT not in environ:
        environ[USER_ENVIRONMENT] = ";".join(f"{name}={environ[name]}" for name in USER_THREAD_VARIABLES if environ.get(name))


def user_threads(environ: Mapping[str, str]) -> dict[str, str] | None:
    """The user's thread variables as the command found them, or None outside the command."""
    if USER_ENVIRONMENT not in environ:
        return None
    return dict(item.split("=", 1) for item in environ[USER_ENVIRONMENT].split(";") if item)


def set_spin_policy(environ: MutableMapping[str, str]) -> str:
    """Bound OpenMP's spin before torch loads it (a process's first ``import torch``); returns what holds.

    Unless the user chose how workers wait (``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT``).
    """
    chosen = [f"{name}={environ[name]}" for name in USER_WAIT_VARIABLES if environ.get(name)]
    if chosen:
        return f"{', '.join(chosen)} (the user's)"
    environ["GOMP_SPINCOUNT"] = SPIN_COUNT
    return f"GOMP_SPINCOUNT={SPIN_COUNT} (bounded spin)"


def free_cores(cores: int | None = None, window: float = 0.05) -> int:
    """Cores this process may use that other processes are not busy on, over a short ``window`` (seconds).

    Reads ``/proc/stat`` twice; where there is none, every core counts as free.
    """
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        first = _cpu_times()
        time.sleep(window)
        second = _cpu_times()
    except OSError:
        return cores
    busy_time, total_time = second[0] - first[0], second[1] - first[1]
    busy_cores = (busy_time / total_time) * (os.cpu_count() or cores) if total_time > 0 else 0.0
    return max(1, min(cores, round(cores - busy_cores)))


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs, from ``/proc/stat``."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)
