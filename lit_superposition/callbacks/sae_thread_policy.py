"""The CPU threads of an SAE run's steps: the toy models' policy, sized by the SAEs' products."""

from __future__ import annotations

import os

import pytorch_lightning as pl
import torch
from typing_extensions import override

from lit_superposition.callbacks.thread_policy import ThreadPolicy
from lit_superposition.threads import choose_threads, free_cores, step_work, user_threads


class SAEThreadPolicy(ThreadPolicy):
    """:class:`~lit_superposition.callbacks.ThreadPolicy` for :class:`~lit_superposition.sae_module.LitSAE`.

    The work of a step is its encoder product, ``n_saes × batch × d_latent × d_in`` multiply-adds (the
    largest dictionary): 96 pentagon SAEs of 5 latents are a small step (one thread, about three
    times faster than two on a busy 2-core machine), 36 SAEs of 80 latents on 20-D activations a large one.
    """

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        data = trainer.datamodule
        data.load()
        n_saes = data.n_sources * pl_module.n_settings
        work = step_work(n_saes, data.batch_size, max(pl_module.d_latents or [data.n_features]), data.d_in)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        recorded = user_threads(os.environ)  # the command's: what the user set, not what Lightning set since
        environ, current = (os.environ, torch.get_num_threads()) if recorded is None else (recorded, cores)
        self.choice = choose_threads(work, free_cores(cores), environ, current, cores, trainer.strategy.root_device.type)
        if self.choice.threads is not None:
            self._previous = torch.get_num_threads()
            torch.set_num_threads(self.choice.threads)
