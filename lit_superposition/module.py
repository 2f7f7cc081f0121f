"""LitToyModel: a model variant, its importance-weighted objective, and logging."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ProgressBar
from pytorch_lightning.utilities import rank_zero_warn
from pytorch_lightning.utilities.model_helpers import is_overridden
from torch import Tensor
from typing_extensions import override

from lit_superposition.data.grid import PhaseGrid
from lit_superposition.data.specs import SpecLike, resolve_importance
from lit_superposition.errors import ConfigError
from lit_superposition.models import ToyModel, model_class
from lit_superposition.sharding import STRATEGY_NAME, InstanceShards, shards_instances

MAX_DEFAULT_LOGGED_INSTANCES = 32


def next_multiple(step: int, every: int) -> int:
    """The first multiple of ``every`` after ``step``: where calls and interval callbacks stop."""
    return (step // every + 1) * every


class LitToyModel(pl.LightningModule):
    """Trains many toy models of one variant side by side.

    The loss is ``Σ_i mean_{batch, f} importance[i, f] · (y - x')²``: mean over batch and features,
    summed over instances, as in the Anthropic notebook and ARENA, so instances never interact. The
    target ``y`` is ``x`` (reconstruction) or ``|x|`` (computation, ARENA 1.3.1).

    Args:
        n_instances: Models trained side by side (linked from the data section by the CLI).
        n_features: Features per instance (linked from the data section by the CLI).
        d_hidden: Hidden dimensions per instance.
        variant: The model: ``relu_output`` (default, ``x' = ReLU(Wᵀ W x + b)``), ``linear_output``
            (``x' = Wᵀ W x + b``), ``hidden_relu`` (``x' = ReLU(Wᵀ ReLU(W x) + b)``), ``computation``
            (``y' = ReLU(W_out ReLU(W x) + b)``, untied), or the class
            path ``module.Class`` of your own :class:`~lit_superposition.models.ToyModel` subclass.
        importance: Per-feature weight of the loss: a scalar, per-feature list, matrix or spec.
        init_seeds: A base seed (instance ``i`` gets ``base + i``) or one seed per instance.
        instances: Instances whose loss is logged as ``train_loss/instance_NNN``
            (default: the first 32).
        repeats: Instances per setting (linked from the data section by the CLI): instance ``i`` is
            setting ``i // repeats``, repeat ``i % repeats``; a per-instance ``importance`` gives one
            row per setting. Init seeds stay distinct per instance.
        target: What the output should be (linked from the data section by the CLI): ``"identity"``,
            ``x`` itself, or ``"abs"``, ``|x|`` (meaningful with signed data, ``data.values: signed``).
        grid: A phase diagram's grid (linked from the data section by the CLI): it sets its
            feature's importance per point, over what ``importance`` gives.
        steps_per_call: Optimizer steps per ``training_step`` call (manual optimization): Lightning's
            fixed cost per call is paid once for up to this many steps. Weights are bitwise those of
            ``1`` on a CPU, ``global_step`` counts optimizer steps, and a call ends early at every
            step a callback must see (:meth:`steps_this_call`), so instruments, checkpoints and
            resume mean what they mean with ``1``. Each step draws its own batch from the
            datamodule's ``make_batch``.

    With ``trainer.strategy=instance_sharded`` each rank trains only its slice of the instances
    (:mod:`lit_superposition.sharding`): ``model`` then holds every instance's weights as buffers,
    gathered from the ranks at the end of every call, and the trained parameters are ``shard``'s.

    Attributes:
        per_feature_loss: The latest ``(n_instances, n_features)`` per-feature loss, detached.
        step_losses: ``(n_steps, n_instances, n_features)``: the per-feature loss of every optimizer
            step of the latest call, detached (one row unless ``steps_per_call > 1``); with
            ``per_feature_loss``, the surface that callbacks read.
        shards: The instances each rank owns in a sharded run, else None.

    Example::

        module = LitToyModel(n_instances=8, n_features=5, d_hidden=2)
        trainer = pl.Trainer(max_steps=1000)
        trainer.fit(module, SparseFeatureDataModule(n_instances=8, n_features=5))
    """

    def __init__(
        self,
        n_instances: int,
        n_features: int,
        d_hidden: int = 2,
        variant: str = "relu_output",
        importance: SpecLike = 1.0,
        init_seeds: int | list[int] = 0,
        instances: list[int] | None = None,
        repeats: int = 1,
        target: str = "identity",
        grid: PhaseGrid | None = None,
        steps_per_call: int = 16,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if not isinstance(steps_per_call, int) or isinstance(steps_per_call, bool) or steps_per_call < 1:
            raise ConfigError(f"steps_per_call must be a positive integer, got {steps_per_call!r}")
        self.steps_per_call = steps_per_call
        # Several optimizer steps per call are only possible when the module steps the optimizer itself.
        self.automatic_optimization = steps_per_call == 1
        if target not in ("identity", "abs"):
            raise ConfigError(f"target must be 'identity' or 'abs', got {target!r}")
        self.target = target
        try:
            self.model = model_class(variant)(n_instances, n_features, d_hidden, init_seeds)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        self.repeats = repeats
        importance_values = resolve_importance(importance, n_instances, n_features, repeats)
        if grid is not None:
            grid.check(n_instances, n_features, repeats)
            importance_values = grid.apply_importance(importance_values, repeats)
        self.register_buffer("importance", importance_values, persistent=False)
        self.instances = self._validate_instances(instances, n_instances)
        self.per_feature_loss: Tensor | None = None
        self.step_losses: Tensor | None = None
        self._call_ends: list[Any] = []  # each callback's next_required_step
        self._one_step_per_call = False
        self._backward_hooks = False
        self.shards: InstanceShards | None = None
        self.shard: ToyModel | None = None  # this rank's instances, trained, in a sharded run

    @staticmethod
    def _validate_instances(instances: Sequence[int] | None, n_instances: int) -> list[int]:
        if instances is None:
            return list(range(min(n_instances, MAX_DEFAULT_LOGGED_INSTANCES)))
        bad = [i for i in instances if not 0 <= i < n_instances]
        if bad:
            raise ConfigError(f"instances {bad} out of range: instances are 0..{n_instances - 1}")
        return list(instances)

    @override
    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def objective(self, x: Tensor, instances: slice | None = None) -> tuple[Tensor, Tensor]:
        """The loss and the per-feature loss of one batch.

        Args:
            x: ``(n_instances, batch, n_features)``.
            instances: The instances ``x`` is for: all (default), or in a sharded run this rank's
                slice (``shards.local``), which its ``shard`` model trains.

        Returns:
            The scalar loss and the ``(n_instances, n_features)`` per-feature loss (importance-weighted,
            averaged over the batch).
        """
        model, importance = self.model, self.importance
        if instances is not None:
            if self.shards is None or instances != self.shards.local:
                raise ValueError(f"instances={instances} is not this rank's slice of a sharded run")
            model, importance = self.shard, importance[instances]
        # None: reconstruct x itself (and the ReLU-output model keeps its fused pass).
        target = x.abs() if self.target == "abs" else None  # (n_instances, batch, n_features)
        per_feature_loss = model.per_feature_loss(x, importance, target=target)  # (n_instances, n_features)
        return per_feature_loss.mean(dim=1).sum(), per_feature_loss

    @property
    def draws_own_batches(self) -> bool:
        """Whether each optimizer step draws its batch from the datamodule itself (``steps_per_call > 1``):
        the loader's item then only marks the call."""
        return self.steps_per_call > 1

    def check_trainer(self, trainer: pl.Trainer) -> None:
        """Raise :class:`ConfigError` for a trainer setting that several steps per call or sharding cannot honour."""
        if shards_instances(trainer):
            # Before Lightning's launcher starts the processes the strategy may not know their number yet.
            world_size = max(trainer.world_size, trainer.num_devices * trainer.num_nodes)
            n_instances = self.model.n_instances
            if world_size > n_instances:
                raise ConfigError(
                    f"trainer.strategy={STRATEGY_NAME} over {world_size} processes needs at least one instance each,"
                    f" got {n_instances} instances: use at most {n_instances} devices, or more instances"
                )
            if self.steps_per_call == 1:
                raise ConfigError(f"trainer.strategy={STRATEGY_NAME} needs model.steps_per_call >= 2, got 1")
        if self.steps_per_call == 1:
            return
        k = f"model.steps_per_call={self.steps_per_call}"
        if trainer.accumulate_grad_batches != 1:
            raise ConfigError(f"{k} needs trainer.accumulate_grad_batches=1 (every step is an optimizer step), got {trainer.accumulate_grad_batches}")
        if "mixed" in str(trainer.precision):
            raise ConfigError(f"{k} runs in full precision: trainer.precision={trainer.precision!r} is not supported, use 32-true or steps_per_call=1")
        if trainer.gradient_clip_val:
            raise ConfigError(f"{k} cannot clip gradients (trainer.gradient_clip_val={trainer.gradient_clip_val}): set it to null or use steps_per_call=1")

    @override
    def setup(self, stage: str) -> None:
        if stage != "fit":
            return
        self.check_trainer(self.trainer)
        if self.draws_own_batches and not callable(getattr(self.trainer.datamodule, "make_batch", None)):
            raise ConfigError(f"model.steps_per_call={self.steps_per_call} needs a datamodule with make_batch(step, rank, device)")
        if shards_instances(self.trainer) and self.shards is None:
            self._shard_instances(InstanceShards(self.model.n_instances, self.trainer.world_size, self.global_rank))

    def _shard_instances(self, shards: InstanceShards) -> None:
        """Train only ``shards.local``: a model of those instances holds the parameters (the optimizer's,
        whenever it was made), and ``model``'s become buffers holding all instances."""
        self.shards = shards
        full = self.model
        seeds = full.init_seeds[shards.local]
        # Seeds only make a model of the right shape (-1, "from a file", is not one): its tensors are copied next.
        self.shard = type(full)(len(seeds), full.n_features, full.d_hidden, [max(seed, 0) for seed in seeds])
        for name, parameter in list(full.named_parameters()):
            owner_name, _, attribute = name.rpartition(".")
            delattr(full.get_submodule(owner_name), attribute)
            full.get_submodule(owner_name).register_buffer(attribute, parameter.detach().clone())
            # The same Parameter object, now holding this rank's slice, moves to the shard: an optimizer
            # made before setup (LightningCLI makes --optimizer's then) trains the shard.
            parameter.data = parameter.data[shards.local].clone()
            setattr(self.shard.get_submodule(owner_name), attribute, parameter)
        self._copy_to_shard()

    @torch.no_grad()
    def _copy_to_shard(self) -> None:
        """Set the shard's tensors to its slice of ``model``'s (in place: the optimizer keeps its parameters)."""
        self.shard.load_state_dict(self._shard_state(self.model.state_dict()))

    def _shard_state(self, full_state: dict[str, Tensor], prefix: str = "") -> dict[str, Tensor]:
        """The shard's state dict, sliced from ``model``'s (every tensor has the instance axis first)."""
        return {name: full_state[f"{prefix}{name}"][self.shards.local] for name in self.shard.state_dict()}

    @override
    def on_fit_start(self) -> None:
        if self.shards is not None:
            self._copy_to_shard()  # after the callbacks' on_fit_start: a patch or a template may have set the weights
        if not self.draws_own_batches:
            return
        # A callback that runs after every call and does not say which steps it needs may count on
        # seeing every step (as the README's own example once did): it gets one step per call.
        self._call_ends, blind = [], []
        for callback in self.trainer.callbacks:
            required = getattr(callback, "next_required_step", None)
            if callable(required):
                self._call_ends.append(required)
            elif not isinstance(callback, ProgressBar) and any(
                is_overridden(hook, callback) for hook in ("on_train_batch_start", "on_train_batch_end")
            ):
                blind.append(type(callback).__name__)
        self._one_step_per_call = bool(blind)
        if blind:
            rank_zero_warn(
                f"{', '.join(blind)} run after every call and declare no next_required_step(trainer, step):"
                f" training one optimizer step per call (model.steps_per_call={self.steps_per_call} unused)"
            )
        # Backward hooks, where anything defines them, run through manual_backward (slower: every callback is visited).
        self._backward_hooks = any(
            is_overridden(hook, owner) for owner in (self, *self.trainer.callbacks) for hook in ("on_before_backward", "on_after_backward")
        )
        for config in self.trainer.lr_scheduler_configs:
            if config.interval != "step" or config.frequency != 1 or config.reduce_on_plateau:
                raise ConfigError(
                    f"model.steps_per_call={self.steps_per_call} steps schedulers every optimizer step:"
                    f" {type(config.scheduler).__name__} has interval={config.interval!r}, frequency={config.frequency}"
                )

    @override
    def training_step(self, batch: Tensor | int, batch_idx: int) -> Tensor | None:
        if self.draws_own_batches:
            self._run_steps(self.steps_this_call(self.global_step))
            return None
        loss, per_feature_loss = self.objective(batch)
        self.per_feature_loss = per_feature_loss.detach()
        self.step_losses = self.per_feature_loss.unsqueeze(0)
        if (self.global_step + 1) % self.trainer.log_every_n_steps == 0:
            total = self._log_losses(loss.detach(), self.per_feature_loss, self.global_step)
            self._show_loss(total, batch_size=batch.shape[1])
        return loss

    def steps_this_call(self, step: int) -> int:
        """Optimizer steps of the call that starts after ``step`` steps.

        The call ends at the next multiple of ``steps_per_call`` (so calls stay aligned after a resume
        from any step), at ``trainer.max_steps``, and at the first step at whose end a callback must
        run: any callback may declare it with ``next_required_step(trainer, step) -> int | None``. A
        callback with a per-call hook (``on_train_batch_start``/``_end``) that declares nothing might
        count on seeing every step, so it gets one step per call (and a warning at the start).
        """
        if self._one_step_per_call:
            return 1
        end = next_multiple(step, self.steps_per_call)
        if self.trainer.max_steps > 0:
            end = min(end, self.trainer.max_steps)
        for required in self._call_ends:
            wanted = required(self.trainer, step)
            if wanted is not None and wanted > step:
                end = min(end, wanted)
        return max(end - step, 1)

    def _run_steps(self, n_steps: int) -> None:
        """``n_steps`` optimizer steps, each on its own batch ``make_batch(global_step)``: the same
        operations, in the same order, as ``n_steps`` calls with automatic optimization. A sharded
        run trains its rank's instances on their rows of the one stream, then gathers all."""
        optimizer = self.optimizers()
        schedulers = [config.scheduler for config in self.trainer.lr_scheduler_configs]
        data = self.trainer.datamodule
        # A sharded run is one run split over processes: each rank reads its rows of rank 0's stream.
        # (Only then are instances passed: a datamodule or objective of one's own may not take them.)
        own_rows = {} if self.shards is None else {"instances": self.shards.local}
        rank = self.global_rank if self.shards is None else 0
        model = self.model if self.shards is None else self.shard
        all_reduce = self.trainer.world_size > 1 and self.shards is None
        params = [p for p in self.parameters() if p.requires_grad] if all_reduce else []
        first = self.global_step
        step_losses = torch.empty(n_steps, model.n_instances, model.n_features, device=self.device)
        for j in range(n_steps):
            x = data.make_batch(first + j, rank=rank, device=self.device, **own_rows)  # (n_instances, batch, n_features)
            optimizer.zero_grad()
            loss, per_feature_loss = self.objective(x, **own_rows)
            if all_reduce:
                self._all_reduce_gradients(loss, params)
            elif self._backward_hooks:
                self.manual_backward(loss)
            else:
                # manual_backward visits every callback's backward hooks, which costs more than the step's
                # math on a small model: skipped where none is defined (mixed precision, which needs it, is refused).
                loss.backward()
            step_losses[j] = per_feature_loss.detach()
            optimizer.step()
            for scheduler in schedulers:
                scheduler.step()
        if self.shards is not None:
            step_losses = self._gather_shards(step_losses)
        self.step_losses = step_losses
        self.per_feature_loss = step_losses[-1]
        logged = [j for j in range(n_steps) if (first + j + 1) % self.trainer.log_every_n_steps == 0]
        for j in logged:
            # The loss as the objective sums it: the same value, bitwise, as the step's own.
            total = self._log_losses(step_losses[j].mean(dim=1).sum(), step_losses[j], first + j)
        if logged:
            self._show_loss(total, batch_size=data.batch_size)

    @torch.no_grad()
    def _gather_shards(self, step_losses: Tensor) -> Tensor:
        """Refresh ``model`` with every rank's trained instances; return every instance's ``step_losses``.

        Args:
            step_losses: ``(n_steps, n_local, n_features)``, this rank's.

        Returns:
            ``(n_steps, n_instances, n_features)``.
        """
        names = [name for name, _ in self.shard.named_parameters()]
        local = [parameter.detach() for parameter in self.shard.parameters()] + [step_losses.transpose(0, 1)]
        *weights, losses = self.shards.gather(local, self.trainer.strategy.all_gather)
        for name, value in zip(names, weights):
            self.model.get_buffer(name).copy_(value)
        return losses.transpose(0, 1)

    def gradients(self) -> dict[str, Tensor]:
        """Every trained tensor's gradient, by name, all instances: ``model``'s, or in a sharded run
        gathered from the ranks (then a collective: call it on every rank). Empty where there is none."""
        if self.shards is None:
            return {name: p.grad for name, p in self.model.named_parameters() if p.grad is not None}
        named = [(name, p.grad) for name, p in self.shard.named_parameters()]
        if any(grad is None for _, grad in named):
            return {}
        gathered = self.shards.gather([grad for _, grad in named], self.trainer.strategy.all_gather)
        return {name: value for (name, _), value in zip(named, gathered)}

    def _all_reduce_gradients(self, loss: Tensor, params: list[Tensor]) -> None:
        """Set every gradient to its mean over the ranks, as DDP's default hook computes it.

        DDP's reducer expects one backward per wrapped forward, and a call holds several: the
        gradients are taken with ``torch.autograd.grad`` (which the reducer does not see) and averaged
        here in one flat all-reduce, divided before the sum like DDP's own.
        """
        grads = torch.autograd.grad(loss, params)
        flat = torch.cat([g.reshape(-1) for g in grads]).div_(self.trainer.world_size)
        flat = self.trainer.strategy.reduce(flat, reduce_op="sum")
        for param, value in zip(params, flat.split([g.numel() for g in grads])):
            param.grad = value.view_as(param)

    def _log_losses(self, loss: Tensor, per_feature_loss: Tensor, step: int) -> float:
        """Log ``train/loss`` and the per-instance losses of ``step`` (on logging steps only); return the loss."""
        per_instance = per_feature_loss.mean(dim=1)[self.instances]  # (len(instances),)
        values = torch.cat([loss.reshape(1), per_instance]).tolist()  # syncs the device, once
        # self.log costs about 0.3 ms a call, Lightning revisits every logged key after every later step,
        # and it would log at its count of calls, not of optimizer steps: the losses go to the loggers
        # directly, at the step they belong to.
        metrics = {"train/loss": values[0]}
        metrics |= {f"train_loss/instance_{i:03d}": value for i, value in zip(self.instances, values[1:])}
        for logger in self.loggers:
            logger.log_metrics(metrics, step=step)
        return values[0]

    def _show_loss(self, loss: float, batch_size: int) -> None:
        # A CPU tensor: the progress bar reads the last value after every call, without a device sync.
        self.log("train/loss", torch.tensor(loss), prog_bar=True, logger=False, batch_size=batch_size)

    @override
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Checkpoints of release 0.1 carry no recorded initial state: theirs was the seeds'.
        state = checkpoint["state_dict"]
        for name, value in self.model.initial_state().items():
            state.setdefault(f"model.initial_{name}", value)
        if self.shards is None:
            return
        # Checkpoints hold all instances, as one process's would: this rank takes its slice.
        state.update({f"shard.{name}": value for name, value in self._shard_state(state, prefix="model.").items()})
        full_shapes = [self.model.get_buffer(name).shape for name, _ in self.shard.named_parameters()]
        for optimizer_state in checkpoint.get("optimizer_states", []):
            for index, moments in optimizer_state["state"].items():
                optimizer_state["state"][index] = {
                    key: value[self.shards.local].clone() if isinstance(value, Tensor) and value.shape == full_shapes[index] else value
                    for key, value in moments.items()
                }

    @override
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.shards is None:
            return
        # Written as one process would write it (model holds every instance after each call): it
        # resumes in one process or over any number of ranks.
        for key in [key for key in checkpoint["state_dict"] if key.startswith("shard.")]:
            del checkpoint["state_dict"][key]
        shapes = [p.shape for p in self.shard.parameters()]
        for optimizer_state in checkpoint.get("optimizer_states", []):
            for index, moments in sorted(optimizer_state["state"].items()):
                keys = sorted(key for key, value in moments.items() if isinstance(value, Tensor) and value.shape == shapes[index])
                gathered = self.shards.gather([moments[key] for key in keys], self.trainer.strategy.all_gather)
                # A new dict: the packed state holds the optimizer's own, which must keep this rank's slice.
                optimizer_state["state"][index] = {**moments, **dict(zip(keys, gathered))}

    @override
    def configure_optimizers(self) -> torch.optim.Optimizer:
        # The Anthropic notebook's optimizer; LightningCLI's --optimizer/--lr_scheduler replace it. On a
        # GPU the fused implementation updates each parameter in one kernel instead of about ten small
        # ones. On a CPU its vectorized body and its scalar tail round differently, so an instance's
        # update would depend on where its tensor ends, i.e. on how many instances share it: a sharded
        # run, or a seed rerun alone, would then not reproduce the instance bitwise. PyTorch's default
        # implementation does not have that problem (and costs a few percent on the hexagon workload).
        return torch.optim.AdamW(self.parameters(), lr=1e-3, fused=self.device.type == "cuda" or None)
