"""The CPU threads of an SAE run's steps: the toy models' policy, sized by the SAEs' products."""

from __future__ import annotations

import pytorch_lightning as pl
from typing_extensions import override

from lit_superposition.callbacks.thread_policy import ThreadPolicy
from lit_superposition.threads import step_work


class SAEThreadPolicy(ThreadPolicy):
    """:class:`~lit_superposition.callbacks.ThreadPolicy` for :class:`~lit_superposition.sae_module.LitSAE`.

    The work of a step is its encoder product, ``n_saes × batch × d_latent × d_in`` multiply-adds (the
    largest dictionary): 96 pentagon SAEs of 5 latents are a small step (one thread, about three
    times faster than two on a busy 2-core machine), 36 SAEs of 80 latents on 20-D activations a large one.
    """

    @override
    def work(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> int:
        data = trainer.datamodule
        data.load()
        n_saes = data.n_sources * pl_module.n_settings
        return step_work(n_saes, data.batch_size, max(pl_module.d_latents or [data.n_features]), data.d_in)
