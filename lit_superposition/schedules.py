"""Learning-rate schedules that step every optimizer step, with optional linear warmup, and what a module's ``configure_optimizers`` returns."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, Literal

from torch import Tensor
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from lit_superposition.errors import ConfigError


class WarmupDecay(LambdaLR):
    """Linear warmup over ``warmup_steps``, then a constant, linear or cosine decay to ``final_lr_ratio``.

    Args:
        optimizer: The optimizer.
        decay: ``"constant"``, ``"linear"`` or ``"cosine"``.
        warmup_steps: Steps of linear warmup from 0 to the base learning rate.
        total_steps: Length of the whole schedule; the CLI fills in ``trainer.max_steps`` when unset.
        final_lr_ratio: The learning rate at ``total_steps``, as a fraction of the base rate.

    Example (command line)::

        lit-superposition fit --config pentagon.yaml --model.lr_scheduler WarmupDecay \\
            --model.lr_scheduler.decay cosine --model.lr_scheduler.warmup_steps 500
    """

    def __init__(
        self,
        optimizer: Optimizer,
        decay: Literal["constant", "linear", "cosine"] = "constant",
        warmup_steps: int = 0,
        total_steps: int | None = None,
        final_lr_ratio: float = 0.0,
    ) -> None:
        if decay not in ("constant", "linear", "cosine"):
            raise ConfigError(f"decay must be 'constant', 'linear' or 'cosine', got {decay!r}")
        if warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be >= 0, got {warmup_steps}")
        if total_steps is not None and total_steps <= warmup_steps:
            raise ConfigError(f"total_steps ({total_steps}) must exceed warmup_steps ({warmup_steps})")
        if not 0.0 <= final_lr_ratio <= 1.0:
            raise ConfigError(f"final_lr_ratio must be in [0, 1], got {final_lr_ratio}")
        self.decay, self.warmup_steps, self.total_steps = decay, warmup_steps, total_steps
        self.final_lr_ratio = final_lr_ratio
        super().__init__(optimizer, self.factor)

    def factor(self, step: int) -> float:
        """The multiplier of the base learning rate at ``step``."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.decay == "constant":
            return 1.0
        if self.total_steps is None:
            # Only while LambdaLR's constructor evaluates step 0: the CLI fills in total_steps next.
            return 1.0
        progress = min(1.0, (step - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        shape = 1.0 - progress if self.decay == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.final_lr_ratio + (1.0 - self.final_lr_ratio) * shape


def optimization(
    parameters: Iterable[Tensor],
    optimizer: Callable[[Iterable[Tensor]], Optimizer] | None,
    lr_scheduler: Callable[[Optimizer], Any] | None,
    default: Callable[[Iterable[Tensor]], Optimizer],
    max_steps: Callable[[], int],
) -> Any:
    """The injected optimizer (or ``default``) and scheduler, as ``configure_optimizers`` returns them.

    Bad arguments are a one-line :class:`ConfigError` naming ``model.optimizer`` or ``model.lr_scheduler``;
    a :class:`WarmupDecay` without a length gets the run's ``max_steps()`` (none when it is unbounded;
    asked only then, so a module outside a Trainer builds its optimizer).
    """
    try:
        built = (optimizer or default)(parameters)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"model.optimizer: {error}") from None
    if lr_scheduler is None:
        return built
    try:
        scheduler = lr_scheduler(built)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"model.lr_scheduler: {error}") from None
    if getattr(scheduler, "total_steps", 0) is None:
        steps = max_steps()
        scheduler.total_steps = steps if steps > 0 else None
    # The stream is one endless epoch: schedules step with the optimizer.
    return {"optimizer": built, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
