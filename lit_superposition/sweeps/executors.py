"""Where a sweep's runs run: a local pool of ``fit`` processes, or SLURM job arrays through ``submitit``.

Both run the same function, :func:`execute`, once per run (this module imports little, so that a
cluster job starts quickly): it starts ``lit-superposition fit`` as a
subprocess and records the run's state in its state file (running, then done, failed with its last
line, or interrupted). The local pool is the standard library's (``concurrent.futures``); the
cluster, job arrays and their bookkeeping are ``submitit``'s.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from lit_superposition.analysis.files import atomic_write_text
from lit_superposition.errors import ConfigError

EXECUTORS = ("local", "slurm", "submitit_local")
#: Exit codes of a run stopped cleanly by Ctrl-C or SIGTERM, after saving last.ckpt.
STOPPED_CODES = (130, 143)


@dataclass
class RunJob:
    """One run to execute: its command, where, with which extra environment, and where its state and output go."""

    run_id: str
    command: list[str]
    cwd: str
    state_file: str
    stdout: str
    stderr: str
    env: dict[str, str] = field(default_factory=dict)
    resumed: bool = False


def write_state(path: str | Path, state: dict[str, Any]) -> None:
    """A run's state file, written atomically (a reader never sees half of it)."""
    atomic_write_text(json.dumps(state, indent=1), path)


_CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def last_line(path: str | Path) -> str | None:
    """The last non-empty line of a run's stderr, terminal control codes removed."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return None
    lines = [_CONTROL.sub("", part).strip() for line in text.splitlines() for part in line.split("\r")]
    lines = [line for line in lines if line]
    return lines[-1] if lines else None


def execute(job: RunJob, started: Callable[[subprocess.Popen], None] | None = None) -> dict[str, Any]:
    """Run one ``fit`` to its end and record its state; returns the final state.

    Args:
        job: The run.
        started: Called with the process once it runs (the local pool keeps it to forward Ctrl-C).
    """
    begin = time.time()
    base = {"host": socket.gethostname(), "started": begin, "resumed": job.resumed}
    write_state(job.state_file, {**base, "state": "running"})
    Path(job.stdout).parent.mkdir(parents=True, exist_ok=True)
    with open(job.stdout, "w") as out, open(job.stderr, "w") as err:
        # Its own session: a Ctrl-C in the terminal reaches the sweep, which forwards one to each run.
        process = subprocess.Popen(job.command, cwd=job.cwd, env={**os.environ, **job.env}, stdout=out, stderr=err,
                                   start_new_session=True)
        if started is not None:
            started(process)
        forwarded = _forward_signals(process)
        try:
            code = process.wait()
        finally:
            for signum, handler in forwarded.items():
                signal.signal(signum, handler)
    state = "done" if code == 0 else "interrupted" if code in STOPPED_CODES else "failed"
    end = time.time()
    final = {**base, "state": state, "returncode": code, "finished": end, "seconds": round(end - begin, 2),
             "last_line": None if code == 0 else last_line(job.stderr)}
    write_state(job.state_file, final)
    return final


def _forward_signals(process: subprocess.Popen) -> dict[int, Any]:
    """In a job's own process (submitit), pass SIGTERM and SIGINT on to the run, which stops cleanly with last.ckpt."""
    if threading.current_thread() is not threading.main_thread():
        return {}  # the local pool's threads: the sweep forwards Ctrl-C itself (LocalPool.interrupt)

    def forward(signum: int, frame: Any) -> None:
        if process.poll() is None:
            process.send_signal(signum)

    return {signum: signal.signal(signum, forward) for signum in (signal.SIGTERM, signal.SIGINT)}


def fair_threads(parallel: int, cores: int | None = None) -> int:
    """Intra-op threads per run so that ``parallel`` runs share the cores: ``max(1, cores // parallel)``."""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // max(1, parallel))


def thread_env(threads: int) -> dict[str, str]:
    """``OMP_NUM_THREADS`` for each run, unless the user set it (theirs wins)."""
    return {} if "OMP_NUM_THREADS" in os.environ else {"OMP_NUM_THREADS": str(threads)}


class LocalPool:
    """``max_parallel`` runs at a time on this machine, each a ``fit`` subprocess."""

    def __init__(self, max_parallel: int) -> None:
        if max_parallel < 1:
            raise ConfigError(f"--max_parallel must be >= 1, got {max_parallel}")
        self.max_parallel = max_parallel
        self._pool: ThreadPoolExecutor | None = None
        self._futures: dict[str, Future] = {}
        self._processes: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()

    def threads(self, n_jobs: int) -> int:
        return fair_threads(min(self.max_parallel, n_jobs))

    def submit(self, jobs: list[RunJob]) -> None:
        self._pool = ThreadPoolExecutor(max_workers=self.max_parallel, thread_name_prefix="sweep-run")
        for job in jobs:
            self._futures[job.run_id] = self._pool.submit(execute, job, self._keeper(job.run_id))

    def _keeper(self, run_id: str) -> Callable[[subprocess.Popen], None]:
        def keep(process: subprocess.Popen) -> None:
            with self._lock:
                self._processes[run_id] = process
        return keep

    def finished(self) -> dict[str, dict[str, Any]]:
        """The runs that have ended, with their final states (an error in the pool itself is a failed run)."""
        ended = {}
        for run_id, future in self._futures.items():
            if future.done() and not future.cancelled():
                error = future.exception()
                ended[run_id] = future.result() if error is None else {"state": "failed", "last_line": f"{type(error).__name__}: {error}"}
        return ended

    def pending(self) -> int:
        return sum(not f.done() for f in self._futures.values())

    def interrupt(self) -> None:
        """Start no more runs, and ask each running one to stop cleanly (it saves last.ckpt)."""
        for future in self._futures.values():
            future.cancel()
        with self._lock:
            for process in self._processes.values():
                if process.poll() is None:
                    process.send_signal(signal.SIGINT)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


class SubmititPool:
    """Runs as one ``submitit`` job array: on SLURM (``cluster="slurm"``) or on this machine (``"local"``).

    Args:
        folder: Where submitit keeps its job files and logs.
        cluster: ``"slurm"`` or ``"local"``.
        partition: SLURM partition.
        time_min: Time limit per run, in minutes.
        gpus_per_run: GPUs per run (``gpus_per_node``; pass ``--trainer.accelerator gpu`` to the runs too).
        cpus_per_run: CPU cores per run (``cpus_per_task``; also each run's ``OMP_NUM_THREADS``).
        array_parallelism: At most this many runs of the array at once.
    """

    def __init__(self, folder: Path, cluster: str, partition: str | None = None, time_min: int | None = None,
                 gpus_per_run: int | None = None, cpus_per_run: int | None = None, array_parallelism: int | None = None) -> None:
        import submitit  # the optional dependency: checked with a one-line error before planning

        self.cpus_per_run = cpus_per_run
        self.executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
        parameters = {"timeout_min": time_min, "gpus_per_node": gpus_per_run, "cpus_per_task": cpus_per_run,
                      "slurm_partition": partition, "slurm_array_parallelism": array_parallelism}
        self.executor.update_parameters(name="lit-superposition-sweep",
                                        **{k: v for k, v in parameters.items() if v is not None})
        self._jobs: dict[str, Any] = {}
        self._ended: dict[str, dict[str, Any]] = {}

    def threads(self, n_jobs: int) -> int:
        return self.cpus_per_run or fair_threads(n_jobs)

    def submit(self, jobs: list[RunJob]) -> None:
        submitted = self.executor.map_array(execute, jobs)
        self._jobs = {job.run_id: handle for job, handle in zip(jobs, submitted)}

    def finished(self) -> dict[str, dict[str, Any]]:
        for run_id, handle in self._jobs.items():
            if run_id not in self._ended and handle.done():
                try:
                    self._ended[run_id] = handle.result()
                except Exception as error:  # noqa: BLE001 - a job that died (node failure, time limit) is a failed run
                    lines = [line for line in str(error).splitlines() if line.strip()]
                    self._ended[run_id] = {"state": "failed", "last_line": lines[-1] if lines else type(error).__name__}
        return dict(self._ended)

    def pending(self) -> int:
        return len(self._jobs) - len(self.finished())

    def interrupt(self) -> None:
        for run_id, handle in self._jobs.items():
            if run_id not in self._ended:
                handle.cancel(check=False)

    def close(self) -> None:
        pass


def check_executor(name: str) -> None:
    """A one-line error, before anything is planned, when the executor cannot run here."""
    if name not in EXECUTORS:
        raise ConfigError(f"--executor {name!r} is not one of {', '.join(EXECUTORS)}")
    if name != "local":
        try:
            import submitit  # noqa: F401
        except ImportError:
            raise ConfigError(
                f"--executor {name} needs submitit, which is not installed: pip install 'lit-superposition[slurm]'"
            ) from None
