"""What a callback written as Lightning's docs teach costs at the default steps per call.

The callback records ``(trainer.global_step, W.sum())`` in ``on_train_batch_end``, with nothing of
lit-superposition's in it, so the step loop calls it after every optimizer step. ``Trainer.fit`` of the
hexagon workload (``hexagon_scan.yaml``, 16 seeds, its instruments, as the command builds it) with and
without it, interleaved repeats, medians. The last line is::

    plain_callback kept=R        (steps per second with it over without: the target is at least 0.8)

Usage::

    python benchmarks/plain_callback.py                 # 4000 steps, 3 repeats each
    python benchmarks/plain_callback.py --smoke         # a few seconds, numbers meaningless
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import tempfile
import time

from lit_superposition.threads import set_spin_policy

set_spin_policy(os.environ)  # as the command does, before torch loads OpenMP

import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402

from lit_superposition.cli import build_cli  # noqa: E402


class Recorder(pl.Callback):
    """A plain Lightning callback: per-batch hook, global_step, the weights."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, float]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.rows.append((trainer.global_step, float(pl_module.model.W.detach().sum())))


def steps_per_second(steps: int, plain: bool) -> float:
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        os.chdir(tmp)
        try:
            cli = build_cli(["--config", "hexagon_scan.yaml", "--data.n_instances=16", f"--trainer.max_steps={steps}",
                             "--trainer.enable_progress_bar=false", "--instruments.geometry_report=null", "--report_page=false"],
                            run=False)
            recorder = Recorder()
            if plain:
                cli.trainer.callbacks.append(recorder)
            start = time.perf_counter()
            cli.trainer.fit(cli.model, cli.datamodule)
            elapsed = time.perf_counter() - start
        finally:
            os.chdir(cwd)
    assert len(recorder.rows) == (steps if plain else 0)  # it saw every optimizer step
    return steps / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    steps, repeats = (40, 1) if args.smoke else (args.steps, args.repeats)
    steps_per_second(20, True)  # warm-up: imports, the first TensorBoard writer
    rates: dict[bool, list[float]] = {True: [], False: []}
    for repeat in range(repeats):
        for plain in (True, False) if repeat % 2 == 0 else (False, True):
            rates[plain].append(steps_per_second(steps, plain))
            print(f"{'with' if plain else 'without'} the plain callback: {rates[plain][-1]:,.0f} steps/s", flush=True)
    kept = [a / b for a, b in zip(rates[True], rates[False])]
    print(f"hexagon_scan.yaml (16 seeds), {steps} steps, torch {torch.__version__}, pytorch-lightning {pl.__version__}")
    print(f"plain_callback kept={statistics.median(kept):.2f}")


if __name__ == "__main__":
    main()
