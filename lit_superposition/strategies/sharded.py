"""Instance sharding: Lightning's processes train disjoint slices of the instances.

Instances never interact, so more devices should mean more instances, not a bigger batch. With
``--trainer.strategy instance_sharded`` rank ``r`` of ``world_size`` owns a contiguous slice of the
instances: it trains only their parameters and optimizer state on only their rows of the one stream,
with no gradient all-reduce. ``pl_module.model`` becomes a :class:`ShardedToyModel`: every instance
readable (gathered from the ranks at the end of every call), this rank's trained. Checkpoints are
written as one process would write them, so a run resumes on any number of ranks. Lightning's own
launchers start the processes (``devices=N``, torchrun, SLURM), as for DDP.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from pytorch_lightning.strategies import DDPStrategy
from torch import Tensor, nn
from torch.optim import Optimizer
from typing_extensions import override

from lit_superposition.errors import ConfigError
from lit_superposition.models.base import ToyModel

Gather = Callable[[Sequence[Tensor]], list[Tensor]]


class InstanceShards:
    """Which instances each rank owns: contiguous slices whose sizes differ by at most one.

    The first ``n_instances % world_size`` ranks own one instance more (as ``torch.tensor_split``):
    10 instances on 4 ranks are 3, 3, 2, 2. Every rank owns at least one (``world_size <= n_instances``).

    Args:
        n_instances: All instances of the run.
        world_size: Ranks.
        rank: This process's rank.
    """

    def __init__(self, n_instances: int, world_size: int, rank: int) -> None:
        if not 1 <= world_size <= n_instances:
            raise ValueError(f"{world_size} ranks cannot share {n_instances} instances: at most one rank per instance")
        self.n_instances, self.world_size, self.rank = n_instances, world_size, rank
        base, extra = divmod(n_instances, world_size)
        self.sizes = [base + (r < extra) for r in range(world_size)]
        self.starts = [sum(self.sizes[:r]) for r in range(world_size)]
        self.local = slice(self.starts[rank], self.starts[rank] + self.sizes[rank])
        self.padded = self.sizes[0]  # every rank's slice padded to the largest for the collective
        # Row r * padded + j of the padded gather is instance starts[r] + j: these rows, in order, are all instances.
        self._kept = torch.cat([torch.arange(size) + r * self.padded for r, size in enumerate(self.sizes)])

    def gather(self, tensors: Sequence[Tensor], all_gather: Callable[[Tensor], Tensor]) -> list[Tensor]:
        """Every rank's slices of ``tensors``, joined: ``(n_local, ...)`` each, ``(n_instances, ...)`` back.

        One collective for all of them: each is padded to :attr:`padded` rows and flattened into one buffer.

        Args:
            tensors: This rank's slices; the instance axis first.
            all_gather: ``(length,) -> (world_size, length)``, e.g. the strategy's ``all_gather``.
        """
        if self.world_size == 1:
            return list(tensors)
        rows = [t.reshape(t.shape[0], -1) for t in tensors]  # (n_local, row size) each
        widths = [row.shape[1] for row in rows]
        flat = torch.cat(rows, dim=1)  # (n_local, Σ row sizes)
        if flat.shape[0] < self.padded:
            flat = torch.cat([flat, flat.new_zeros(self.padded - flat.shape[0], flat.shape[1])])
        gathered = all_gather(flat.reshape(-1)).reshape(self.world_size * self.padded, -1)  # (world_size · padded, Σ)
        joined = gathered.index_select(0, self._kept.to(gathered.device))  # (n_instances, Σ row sizes)
        return [part.reshape(self.n_instances, *t.shape[1:]) for part, t in zip(joined.split(widths, dim=1), tensors)]


class ShardedToyModel(nn.Module):
    """A toy model of every instance, of which this rank trains ``rows``: ``pl_module.model`` in a sharded run.

    ``every`` is the run's model with its trained tensors turned into buffers (every instance, what
    callbacks and reports read, refreshed by :meth:`sync`); ``local`` is a model of the same variant
    holding this rank's instances as parameters (what the optimizer trains). Everything of the model
    contract not defined here is ``every``'s, so readers see one model of all instances.

    Args:
        model: The run's model (all instances); its trained tensors become ``every``'s buffers.
        rows: This rank's instances.
        gather: Joins every rank's rows of some tensors (a collective).
    """

    def __init__(self, model: ToyModel, rows: slice, gather: Gather) -> None:
        super().__init__()
        self.rows, self._gather = rows, gather
        seeds = model.init_seeds[rows]
        # Seeds only make a model of the right shape (-1, "from a file", is not one): its tensors are copied next.
        self.local = type(model)(len(seeds), model.n_features, model.d_hidden, [max(seed, 0) for seed in seeds])
        for name, parameter in list(model.named_parameters()):
            owner_name, _, attribute = name.rpartition(".")
            owner = model.get_submodule(owner_name)
            delattr(owner, attribute)
            owner.register_buffer(attribute, parameter.detach().clone())
        self.every = model
        # A plain reference as well: what this wrapper does not define is read from it (see __getattr__).
        vars(self)["every_model"] = model
        self.local.load_state_dict(self._rows_of(model.state_dict()))
        self.local.init_seeds = list(seeds)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            every = vars(self).get("every_model")
            if every is None:
                raise
            return getattr(every, name)

    def _rows_of(self, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return {name: value[self.rows] for name, value in state.items()}

    def _is_local(self, x: Tensor) -> bool:
        """Whether ``x`` holds this rank's rows (trained) rather than every instance's (read)."""
        return x.shape[0] == self.local.n_instances != self.every.n_instances

    def forward(self, x: Tensor) -> Tensor:
        return self.local(x) if self._is_local(x) else self.every(x)

    def per_feature_loss(self, x: Tensor, importance: Tensor | float = 1.0, target: Tensor | None = None) -> Tensor:
        """This rank's trained instances' loss for its rows of a batch, or every instance's (no gradient) for a whole batch."""
        if not self._is_local(x):
            return self.every.per_feature_loss(x, importance, target)
        if isinstance(importance, Tensor) and importance.dim() and importance.shape[0] == self.every.n_instances:
            importance = importance[self.rows]
        return self.local.per_feature_loss(x, importance, target)

    @torch.no_grad()
    def set_initial_state(self, state: dict[str, Tensor], init_seeds: Sequence[int] | None = None) -> None:
        """Start every instance from ``state``; this rank's trained tensors are set in place (the optimizer keeps them)."""
        self.every.set_initial_state(state, init_seeds)
        self.local.set_initial_state(self._rows_of(state), None if init_seeds is None else list(init_seeds)[self.rows])

    @torch.no_grad()
    def reset_parameters(self) -> None:
        self.every.reset_parameters()
        self.local.reset_parameters()

    @torch.no_grad()
    def sync(self) -> None:
        """Refresh every instance's readable tensors from the ranks (a collective)."""
        names = list(self.local.parameter_names)
        for name, value in zip(names, self._gather([getattr(self.local, name).detach() for name in names])):
            getattr(self.every, name).copy_(value)

    def gradients(self) -> dict[str, Tensor]:
        """Every instance's gradients, gathered from the ranks (a collective: every rank calls it)."""
        local = self.local.gradients()
        if len(local) < len(self.local.parameter_names):
            return {}
        return dict(zip(local, self._gather(list(local.values()))))

    def unshard(self) -> ToyModel:
        """The model of every instance with its tensors as parameters again (after fit)."""
        for name in self.every.parameter_names:
            value = getattr(self.every, name)
            delattr(self.every, name)
            self.every.register_parameter(name, nn.Parameter(value.detach().clone()))
        return self.every


class InstanceShardedStrategy(DDPStrategy):
    """DDP's processes, devices and collectives, with each rank training its own slice of the instances.

    Nothing is wrapped in ``DistributedDataParallel`` (which would broadcast rank 0's weights and
    average gradients). In ``configure_ddp``, before the optimizer is made, the module's ``model``
    becomes a :class:`ShardedToyModel` whose parameters are this rank's instances. Checkpoints hold
    every instance's weights and optimizer state, as one process's would. Registered as
    ``instance_sharded``; implements :class:`~lit_superposition.protocols.InstanceSplit`.

    Example::

        trainer = pl.Trainer(strategy="instance_sharded", devices=4, accelerator="gpu")
    """

    strategy_name = "instance_sharded"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shards: InstanceShards | None = None

    def check_instances(self, n_instances: int, world_size: int) -> None:
        """Every rank needs an instance: a one-line :class:`ConfigError` otherwise (before processes start)."""
        if world_size > n_instances:
            raise ConfigError(
                f"trainer.strategy={self.strategy_name} over {world_size} processes needs at least one instance each,"
                f" got {n_instances} instances: use at most {n_instances} devices, or more instances"
            )

    @override
    def configure_ddp(self) -> None:
        module = self.lightning_module
        model = module.model
        self.check_instances(model.n_instances, self.world_size)
        self.shards = InstanceShards(model.n_instances, self.world_size, self.global_rank)
        module.model = ShardedToyModel(model, self.shards.local, self.gather_instances)

    @property
    def instance_rows(self) -> slice:
        """This rank's instances (all of them until ``configure_ddp`` has split the model)."""
        return self.shards.local if self.shards is not None else slice(None)

    @property
    def data_rank(self) -> int:
        return 0  # one run, split: every rank reads its rows of rank 0's stream

    def gather_instances(self, tensors: Sequence[Tensor]) -> list[Tensor]:
        return self.shards.gather(tensors, self.all_gather)

    def sync_model(self, pl_module: Any) -> None:
        pl_module.model.sync()

    @override
    def lightning_module_state_dict(self) -> dict[str, Any]:
        # As one process writes it: every instance's tensors under the model's own names, no shard.
        state = super().lightning_module_state_dict()
        renamed = {}
        for key, value in state.items():
            if key.startswith("model.local."):
                continue
            renamed[key.replace("model.every.", "model.", 1)] = value
        return renamed

    @override
    def optimizer_state(self, optimizer: Optimizer) -> dict[str, Any]:
        state = super().optimizer_state(optimizer)
        per_parameter = state["state"]
        # Every non-scalar state tensor of an elementwise optimizer (Adam's moments, SGD's momentum) has
        # its parameter's leading instance axis: this rank's rows, gathered in one collective.
        keys = [(index, key) for index in sorted(per_parameter) for key in sorted(per_parameter[index]) if _per_instance(per_parameter[index][key])]
        gathered = self.gather_instances([per_parameter[index][key] for index, key in keys])
        # New dicts: the optimizer's own state must keep this rank's rows.
        joined = {index: dict(moments) for index, moments in per_parameter.items()}
        for (index, key), value in zip(keys, gathered):
            joined[index][key] = value
        return {**state, "state": joined}

    @override
    def load_optimizer_state_dict(self, checkpoint: Mapping[str, Any]) -> None:
        rows = self.shards.local
        optimizer_states = [
            {**state, "state": {index: {key: value[rows].clone() if _per_instance(value) else value for key, value in moments.items()}
                                for index, moments in state["state"].items()}}
            for state in checkpoint["optimizer_states"]
        ]
        super().load_optimizer_state_dict({**checkpoint, "optimizer_states": optimizer_states})

    @override
    def teardown(self) -> None:
        module = self.lightning_module
        if module is not None and isinstance(module.model, ShardedToyModel):
            module.model = module.model.unshard()
        super().teardown()


def _per_instance(value: Any) -> bool:
    return isinstance(value, Tensor) and value.dim() > 0
