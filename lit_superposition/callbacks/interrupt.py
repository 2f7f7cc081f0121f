"""Ctrl-C and SIGTERM stop training cleanly at the next step, as if ``max_steps`` had been reached."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities.rank_zero import rank_zero_info
from typing_extensions import override

from lit_superposition.errors import ConfigError

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class GracefulStop(Callback):
    """Turns the first Ctrl-C (SIGINT) or SIGTERM during training into a clean stop after the current step.

    In one process the stop comes right after the current optimizer step, also inside a call of
    several steps (``model.steps_per_call``); a resumed run continues from any step exactly.

    Training then ends the ordinary way: ``on_train_end`` and ``on_fit_end`` run (reports and
    snapshot files are completed), :class:`~lit_superposition.callbacks.RunCheckpoint` writes
    ``last.ckpt`` at the stopping step, and the loggers flush. ``--ckpt_path .../last.ckpt``
    resumes from there. A second Ctrl-C aborts at once through Lightning's own handling.

    In a multi-process run the ranks agree on the stop every ``sync_every_n_steps`` steps (one
    one-element all-reduce), so that all of them stop after the same step whichever rank got the
    signal. A single process checks a Python flag after every step, which costs nothing.

    Args:
        sync_every_n_steps: Steps between the ranks' agreements in multi-process runs. Each one
            holds every rank until the slowest arrives, which on a busy machine costs about a
            millisecond (measured on 2 CPU cores, gloo): 50 steps keep that near 1% of a small run.

    Attributes:
        received: The signal that stopped the run (``signal.SIGINT`` or ``signal.SIGTERM``), or ``None``.
        stopped_at_step: The global step after which training stopped, or ``None``.

    Example::

        trainer = pl.Trainer(max_steps=100_000, callbacks=[GracefulStop(), RunCheckpoint(save_last=True)])
    """

    def __init__(self, sync_every_n_steps: int = 50) -> None:
        if not isinstance(sync_every_n_steps, int) or sync_every_n_steps < 1:
            raise ConfigError(f"sync_every_n_steps must be a positive integer, got {sync_every_n_steps!r}")
        self.sync_every_n_steps = sync_every_n_steps
        self.received: signal.Signals | None = None
        self.stopped_at_step: int | None = None
        self._previous: dict[signal.Signals, Any] = {}
        self._synced = 0  # the step of the ranks' last agreement
        self._trainer: pl.Trainer | None = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None and signum == signal.SIGINT:
            # A second Ctrl-C means "now": hand over to Lightning's KeyboardInterrupt shutdown.
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        self.received = signal.Signals(signum)
        if self._trainer is not None and self._trainer.world_size == 1:
            self._trainer.should_stop = True  # one process needs no agreement: stop after the current step

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.received, self.stopped_at_step = None, None
        self._synced = trainer.global_step
        self._trainer = trainer
        # Signal handlers can only be set from the main thread (not, e.g., inside a notebook worker).
        if threading.current_thread() is threading.main_thread():
            # Registered after Lightning's own SIGTERM handler, which would stop with an exception
            # instead: on_train_end would not run, and reports would stay incomplete.
            self._previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
            for signum in STOP_SIGNALS:
                signal.signal(signum, self._handle)

    def next_required_step(self, trainer: pl.Trainer, step: int) -> int | None:
        return None  # the stop comes at the end of the call the signal arrived in (model.steps_per_call)

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.world_size > 1:
            if trainer.global_step // self.sync_every_n_steps == self._synced // self.sync_every_n_steps:
                return  # every rank passes the same steps, so all of them agree at the same call
            self._synced = trainer.global_step
            stop = trainer.strategy.reduce_boolean_decision(self.received is not None, all=False)
        else:
            stop = self.received is not None
        if stop and self.stopped_at_step is None:
            trainer.should_stop = True
            self.stopped_at_step = trainer.global_step
            self.received = self.received or signal.SIGTERM  # another rank got it
            rank_zero_info(f"{self.received.name} received: stopping after step {trainer.global_step}")

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.received is not None and self.stopped_at_step is None:  # it came after the call's last hook
            self.stopped_at_step = trainer.global_step
        self._restore()
        self._trainer = None

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._restore()
