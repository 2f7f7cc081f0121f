"""LitSAE: many sparse autoencoders side by side on a frozen run's activations, the optimizer, and logging."""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor
from typing_extensions import override

from lit_superposition.analysis.sae_metrics import RECOVERED
from lit_superposition.analysis.sae_scores import SCALARS, score_group
from lit_superposition.errors import ConfigError
from lit_superposition.models.sae import SAE_VARIANTS, SAEGroups, SAEOutput
from lit_superposition.protocols import CallOutputs, StepOutputs
from lit_superposition.schedules import optimization
from lit_superposition.steps import StepLoop

#: The loss terms of an SAE, in the order of ``per_feature_loss``'s last axis (see :meth:`LitSAE.optimization_step`).
LOSS_TERMS = ("reconstruction", "sparsity")


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


class LitSAE(pl.LightningModule):
    """Trains one SAE per (source instance × dictionary size × sparsity setting × seed), side by side.

    SAE ``i`` reads source instance ``i // n_settings`` and trains setting ``i % n_settings`` of
    ``product(d_latent, sparsity, seeds)`` (sizes slowest, seeds fastest). SAEs never interact: an
    SAE's weights are bitwise those it would get alone or beside any others (on a CPU). Its initial
    weights depend only on its seed and size, so the SAEs of one seed start alike across sparsity settings
    and source instances: the settings are compared from the same start.

    Each step, per SAE: the loss of its variant (:mod:`lit_superposition.models.sae`), the decoder
    gradient's component along each row removed, the optimizer step, the decoder rows put back at
    unit norm (Anthropic's "Towards Monosemanticity"), and the step at which each latent last fired
    recorded (``last_fired``: what :class:`~lit_superposition.callbacks.DeadLatentResampling` reads).

    The SAEs are built once the source's sizes are known (:meth:`build`; Lightning's
    ``configure_model`` does it from a :class:`~lit_superposition.data.SourceActivations`).

    The per-step outputs follow :class:`~lit_superposition.protocols.StepOutputs` with SAEs as the
    instances: ``per_feature_loss`` is ``(n_saes, 2)``, each SAE's reconstruction loss and its
    weighted sparsity penalty (:data:`LOSS_TERMS`), which sum to its loss.

    Args:
        architecture: ``relu`` (ReLU with an L1 penalty), ``topk`` or ``jumprelu`` (an L0 penalty).
        d_latent: The dictionary sizes: one, or a list (default: the source's number of features).
        sparsity_coefficient: The penalty's coefficients (``relu``, ``jumprelu``): one, or a list (default: the
            variant's, 0.2 and 0.01).
        k: Latents kept per input (``topk`` only): one, or a list (default 1).
        seeds: Each setting is trained once per seed.
        threshold_init: JumpReLU's initial threshold.
        bandwidth: JumpReLU's straight-through bandwidth.
        steps_per_call: Optimizer steps per ``training_step`` call, at most (weights bitwise those of 1).
        optimizer: Makes the optimizer from the parameters (default: Adam, lr 1e-3, as ARENA's SAEs).
        lr_scheduler: Makes a learning-rate schedule, stepped every optimizer step.

    Example::

        module = LitSAE(d_latent=5, sparsity_coefficient=[0.03, 0.1, 0.3], seeds=[0, 1])
        pl.Trainer(max_steps=10_000).fit(module, SourceActivations("runs/pentagon/version_0"))
    """

    def __init__(
        self,
        architecture: str = "relu",
        d_latent: int | list[int] | None = None,
        sparsity_coefficient: float | list[float] | None = None,
        k: int | list[int] | None = None,
        seeds: int | list[int] = 0,
        threshold_init: float = 0.1,
        bandwidth: float = 0.01,
        steps_per_call: int = 16,
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.steps = StepLoop(steps_per_call)
        if architecture not in SAE_VARIANTS:
            raise ConfigError(f"model.architecture {architecture!r} is not known: choose one of {', '.join(SAE_VARIANTS)}")
        self.architecture, self.sae_class = architecture, SAE_VARIANTS[architecture]
        if architecture == "topk":
            if sparsity_coefficient is not None:
                raise ConfigError("model.sparsity_coefficient does not apply to topk (its sparsity is k): set model.k")
            self.sparsity_name, sparsity = "k", _as_list(1 if k is None else k)
        else:
            if k is not None:
                raise ConfigError(f"model.k applies to topk only, not {architecture} (its sparsity is sparsity_coefficient)")
            default = inspect.signature(self.sae_class).parameters["sparsity_coefficient"].default  # the variant's own
            self.sparsity_name, sparsity = "sparsity_coefficient", _as_list(default if sparsity_coefficient is None else sparsity_coefficient)
        self.sparsity_values = sparsity
        self.d_latents = None if d_latent is None else _as_list(d_latent)
        self.seeds = _as_list(seeds)
        if any(not isinstance(seed, int) or isinstance(seed, bool) or seed < 0 for seed in self.seeds):
            raise ConfigError(f"model.seeds must be integers >= 0, got {seeds!r}")
        self.extra = {"threshold_init": threshold_init, "bandwidth": bandwidth} if architecture == "jumprelu" else {}
        for name, values in (("d_latent", self.d_latents or [1]), (self.sparsity_name, sparsity), ("seeds", self.seeds)):
            if not values:
                raise ConfigError(f"model.{name} must not be an empty list")
        # One small SAE per setting checks every value with the variants' own messages before any file is written;
        # until the source gives the default size, k is checked against a dictionary of max(k).
        counts = all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in sparsity)
        self._check_settings(self.d_latents or [max(sparsity) if self.sparsity_name == "k" and counts else 1])
        self.optimizer, self.lr_scheduler = optimizer, lr_scheduler
        self.saes: SAEGroups | None = None
        self.settings: list[dict[str, Any]] = []

    def _check_settings(self, sizes: list[int]) -> None:
        grid = list(itertools.product(sizes, self.sparsity_values, self.seeds))
        try:
            SAEGroups(self.sae_class, len(grid), 1, [g[0] for g in grid], init_seeds=[g[2] for g in grid],
                      **{self.sparsity_name: [g[1] for g in grid]}, **self.extra)
        except ConfigError as error:
            raise ConfigError(f"model.{str(error).split(' (SAE ')[0]}") from None

    @property
    def steps_per_call(self) -> int:
        return self.steps.steps_per_call

    @property
    def n_saes(self) -> int:
        return len(self.settings)

    @property
    def n_settings(self) -> int:
        """Settings per source instance: ``len(d_latent) · len(sparsity) · len(seeds)``."""
        return len(self.d_latents or [0]) * len(self.sparsity_values) * len(self.seeds)

    def build(self, source_instances: Sequence[int], d_in: int, n_features: int) -> None:
        """Make the SAEs for a source of these sizes (once; a second call must agree).

        Args:
            source_instances: The source instances streamed, in the order of the batch's rows.
            d_in: The dimension of the activations.
            n_features: The source's features (the default dictionary size).
        """
        if self.d_latents is None:
            self.d_latents = [n_features]
            self._check_settings(self.d_latents)
        grid = list(itertools.product(self.d_latents, self.sparsity_values, self.seeds))
        settings = [
            {"source_instance": int(s), "source_row": row, "d_latent": d, self.sparsity_name: v, "seed": int(seed)}
            for row, s in enumerate(source_instances) for d, v, seed in grid
        ]
        if self.saes is not None:
            if settings != self.settings or d_in != self.saes.groups[0].d_in:
                raise ConfigError("the SAEs were built for another source: make a new module")
            return
        self.settings = settings
        with torch.device("cpu"):  # configure_model may run under the accelerator's default device; the seeds draw on the CPU
            self.saes = SAEGroups(
                self.sae_class, len(settings), d_in, [s["d_latent"] for s in settings], init_seeds=[s["seed"] for s in settings],
                **{self.sparsity_name: [s[self.sparsity_name] for s in settings]}, **self.extra,
            )
        self.register_buffer("source_of_sae", torch.tensor([s["source_row"] for s in settings]), persistent=False)
        for g, sae in enumerate(self.saes.groups):
            # The step after which each latent last fired (0: not yet): (n_saes of the group, d_latent).
            self.register_buffer(f"last_fired_{g}", torch.zeros(sae.n_saes, sae.d_latent, dtype=torch.long))

    @override
    def configure_model(self) -> None:
        if self.saes is None:
            data = self.trainer.datamodule
            data.load()
            self.build(data.instances, data.d_in, data.n_features)

    @override
    def configure_callbacks(self) -> Sequence[Callback]:
        return [self.steps]

    @override
    def forward(self, h: Tensor) -> list[SAEOutput]:
        """Every SAE on its source instance's rows of ``h`` ``(n_sources, batch, d_in)``: one output per group."""
        return self.saes(h.index_select(0, self.source_of_sae))  # (n_saes, batch, d_in) in

    def objective(self, h: Tensor) -> tuple[Tensor, Tensor, list[SAEOutput]]:
        """The loss, the per-SAE loss terms ``(n_saes, 2)`` (:data:`LOSS_TERMS`) and the groups' outputs of ``h``."""
        outputs = self(h)
        loss = self.saes.collect(outputs, "loss")  # (n_saes,)
        reconstruction = self.saes.collect(outputs, "reconstruction_loss")
        # SAEs never interact: the sum's gradient is each SAE's own.
        return loss.sum(), torch.stack([reconstruction, loss - reconstruction], dim=1), outputs

    @override
    def training_step(self, batch: Any, batch_idx: int) -> CallOutputs:
        outputs = self.steps.run(self.trainer, self, self.optimization_step)
        self._log_losses(outputs)
        return outputs

    def optimization_step(self, h: Tensor) -> StepOutputs:
        """One optimizer step of every SAE on the activations ``h`` ``(n_sources, batch, d_in)``."""
        optimizer = self.optimizers()
        optimizer.zero_grad()
        loss, terms, outputs = self.objective(h)
        self.steps.backward(self, loss)
        self.saes.remove_parallel_gradient()
        optimizer.step()
        for config in self.trainer.lr_scheduler_configs:
            config.scheduler.step()
        self.saes.normalize_decoder()
        step = self.trainer.global_step  # after the optimizer step: this step's number, counted from 1
        for g, out in enumerate(outputs):
            self.last_fired(g).masked_fill_((out.latents != 0).any(dim=1), step)  # (n_saes of g, d_latent)
        return {"loss": loss.detach(), "per_feature_loss": terms.detach()}

    def last_fired(self, group: int) -> Tensor:
        """The step after which each latent of group ``group`` last fired (0: never), ``(n_saes of the group, d_latent)``."""
        return getattr(self, f"last_fired_{group}")

    def _log_losses(self, outputs: CallOutputs) -> None:
        """``train/loss`` (the sum over SAEs) and its two terms at the logging steps of the call."""
        first, every = outputs["first_step"], self.trainer.log_every_n_steps
        logged = [j for j in range(len(outputs["step_losses"])) if (first + j + 1) % every == 0]
        if not logged:
            return
        sums = outputs["step_losses"][logged].sum(dim=1).tolist()  # (n_logged, 2); syncs
        for j, (reconstruction, sparsity) in zip(logged, sums):
            metrics = {"train/loss": reconstruction + sparsity, "train/reconstruction_loss": reconstruction, "train/sparsity_loss": sparsity}
            for logger in self.loggers:
                logger.log_metrics(metrics, step=first + j)
        self.log("train/loss", torch.tensor(sum(sums[-1])), prog_bar=True, logger=False, batch_size=1)

    @override
    def configure_optimizers(self) -> Any:
        def default(parameters: Any) -> torch.optim.Optimizer:
            # Not fused on a CPU: its vectorized body and scalar tail round differently, so an SAE's update
            # would depend on how many SAEs share its tensor.
            return torch.optim.Adam(parameters, lr=1e-3, fused=self.device.type == "cuda" or None)

        return optimization(self.parameters(), self.optimizer, self.lr_scheduler, default, lambda: self.trainer.max_steps)

    @torch.no_grad()
    def score(self, h: Tensor, features: Tensor, threshold: float = RECOVERED) -> dict[str, Any]:
        """Every SAE scored on the inputs ``h`` ``(n_sources, batch, d_in)`` against its source's true directions.

        Args:
            h: The inputs of every source instance streamed.
            features: Each source instance's true directions, ``(n_sources, d_in, n_truth)``.
            threshold: The matched cosine from which a feature counts as recovered.

        Returns:
            In SAE order: ``loss``, ``reconstruction_loss``, ``sparsity_loss`` and every name of
            :data:`~lit_superposition.analysis.sae_scores.SCALARS` as ``(n_saes,)``; ``max_cosine`` and
            ``matched_latent`` ``(n_saes, n_truth)``; ``dead`` and ``decoder`` as lists (dictionary sizes differ).
        """
        inputs = h.index_select(0, self.source_of_sae)  # (n_saes, batch, d_in)
        truth = features.to(h.device).index_select(0, self.source_of_sae)  # (n_saes, d_in, n_truth)
        outputs = self.saes(inputs)
        groups = [
            score_group(part, out.latents, out.reconstruction, sae.W_dec, true, threshold)
            for sae, out, part, true in zip(self.saes.groups, outputs, self.saes.split(inputs), self.saes.split(truth))
        ]
        order = self.saes.position.cpu()
        scores: dict[str, Any] = {name: torch.cat([g[name] for g in groups])[order] for name in (*SCALARS, "max_cosine", "matched_latent")}
        loss, reconstruction = self.saes.collect(outputs, "loss").cpu(), self.saes.collect(outputs, "reconstruction_loss").cpu()
        scores.update(loss=loss, reconstruction_loss=reconstruction, sparsity_loss=loss - reconstruction)
        for name, values in (("dead", [d for g in groups for d in g["dead"]]),
                             ("decoder", [w for sae in self.saes.groups for w in sae.decoder_directions().cpu()])):
            scores[name] = [values[k] for k in order.tolist()]
        return scores

    @property
    def definition(self) -> dict[str, Any]:
        """What defines the SAEs: a checkpoint of other SAEs is not resumed into these."""
        return {
            "architecture": self.architecture, "d_latent": self.d_latents, self.sparsity_name: self.sparsity_values,
            "seeds": self.seeds, **self.extra,
        }

    @override
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["model_definition"] = self.definition
        checkpoint["init_seeds"] = [s["seed"] for s in self.settings]
