"""Strategies: how processes split the work, and what a checkpoint holds because of it.

- ``instance_sharded`` (:class:`InstanceShardedStrategy`): each process trains a slice of the instances.
- ``ddp_stepwise`` (:class:`StepwiseDDPStrategy`): every process holds every instance and draws its own
  batches; gradients are averaged at every optimizer step. The CLI's ``--trainer.strategy ddp`` is it.

The module never asks which strategy it runs under: the step loop reads
:class:`~lit_superposition.protocols.InstanceSplit` where a strategy declares it.
"""

from pytorch_lightning.strategies import StrategyRegistry

from lit_superposition.strategies.ddp import StepwiseDDPStrategy
from lit_superposition.strategies.sharded import InstanceShardedStrategy, InstanceShards, ShardedToyModel

for _name, _strategy, _description in (
    (InstanceShardedStrategy.strategy_name, InstanceShardedStrategy, "Instances split over the processes (lit-superposition)"),
    (StepwiseDDPStrategy.strategy_name, StepwiseDDPStrategy, "DDP with several optimizer steps per call (lit-superposition)"),
):
    if _name not in StrategyRegistry:
        StrategyRegistry.register(_name, _strategy, description=_description)

__all__ = ["InstanceShardedStrategy", "InstanceShards", "ShardedToyModel", "StepwiseDDPStrategy"]
