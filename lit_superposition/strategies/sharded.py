"""Instance sharding: Lightning's processes train disjoint slices of the instances.

Instances never interact, so more devices should mean more instances, not a bigger batch. With
``--trainer.strategy instance_sharded`` rank ``r`` of ``world_size`` owns a contiguous slice of the
instances: it trains only their parameters and optimizer state on only their data, with no
gradient all-reduce. At the end of every call the slices are gathered into the module's ``model``,
which keeps all instances for the instruments, checkpoints and reports. Lightning's own launchers
start the processes (``devices=N``, torchrun, SLURM), as for DDP.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies import DDPStrategy, StrategyRegistry
from torch import Tensor
from typing_extensions import override

STRATEGY_NAME = "instance_sharded"


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


class InstanceShardedStrategy(DDPStrategy):
    """DDP's processes, devices and collectives, without DDP's replication of the model.

    Nothing is wrapped in ``DistributedDataParallel`` (which would broadcast rank 0's weights and
    average gradients): :class:`~lit_superposition.module.LitToyModel` sees this strategy in ``setup``
    and trains only its rank's instances (:class:`InstanceShards`). Registered as ``instance_sharded``.

    Example::

        trainer = pl.Trainer(strategy="instance_sharded", devices=4, accelerator="gpu")
    """

    @override
    def configure_ddp(self) -> None:
        pass  # each rank trains its own instances: nothing to wrap, broadcast or average


def shards_instances(trainer: pl.Trainer) -> bool:
    """Whether the trainer's strategy splits the instances over its ranks (every rank then holds every
    instance's gathered weights and losses: nothing needs the ranks' agreement)."""
    return isinstance(trainer.strategy, InstanceShardedStrategy)


if STRATEGY_NAME not in StrategyRegistry:
    StrategyRegistry.register(
        STRATEGY_NAME, InstanceShardedStrategy, description="Instances split over the ranks (lit-superposition)"
    )
