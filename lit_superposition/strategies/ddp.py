"""DDP for a module that takes several optimizer steps per Lightning call.

``DistributedDataParallel`` averages gradients during the backward pass and expects one backward pass
per forward call; a call of :class:`~lit_superposition.module.LitToyModel` holds several. This
strategy keeps DDP's processes, devices and collectives, wraps nothing, and averages the gradients
itself when the optimizer steps: one flat all-reduce per step, divided before the sum as DDP's own
hook does. Every rank draws its own batches, so the effective batch is ``batch_size × world_size``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from pytorch_lightning.strategies import DDPStrategy
from torch import nn
from torch.optim import Optimizer
from typing_extensions import override


class StepwiseDDPStrategy(DDPStrategy):
    """DDP whose gradients are averaged at every optimizer step, not inside the backward pass.

    Registered as ``ddp_stepwise``; the CLI's ``--trainer.strategy ddp`` selects it.

    Example::

        trainer = pl.Trainer(strategy="ddp_stepwise", devices=2, accelerator="cpu")
    """

    strategy_name = "ddp_stepwise"

    @override
    def configure_ddp(self) -> None:
        # Every rank starts from rank 0's weights, as DistributedDataParallel's constructor makes them.
        with torch.no_grad():
            for tensor in self.lightning_module.state_dict().values():
                if isinstance(tensor, torch.Tensor):
                    torch.distributed.broadcast(tensor, src=0)

    @override
    def optimizer_step(self, optimizer: Optimizer, closure: Callable[[], Any], model: nn.Module | None = None, **kwargs: Any) -> Any:
        # Before the step and its on_before_optimizer_step hooks: they see the averaged gradients, as under DDP.
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if params:
            flat = torch.cat([p.grad.reshape(-1) for p in params]).div_(self.world_size)
            flat = self.reduce(flat, reduce_op="sum")
            for param, value in zip(params, flat.split([p.numel() for p in params])):
                param.grad.copy_(value.view_as(param))
        return super().optimizer_step(optimizer, closure, model, **kwargs)
