"""Per-instance initialization: one seed per instance, whatever the instance count."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def resolve_init_seeds(init_seeds: int | Sequence[int], n_instances: int) -> list[int]:
    """Turn a base seed or an explicit list into one seed per instance.

    Args:
        init_seeds: A base seed ``s`` (instance ``i`` gets ``s + i``) or one seed per instance.
        n_instances: The number of instances.

    Returns:
        A list of ``n_instances`` integer seeds.
    """
    if isinstance(init_seeds, int):
        return [init_seeds + i for i in range(n_instances)]
    seeds = [int(s) for s in init_seeds]
    if len(seeds) != n_instances:
        raise ValueError(f"init_seeds has {len(seeds)} seeds, expected one per instance ({n_instances})")
    return seeds


def xavier_columns(seed: int, d_hidden: int, n_features: int) -> Tensor:
    """A ``(d_hidden, n_features)`` Xavier-normal matrix from its own generator (float32, CPU)."""
    generator = torch.Generator().manual_seed(seed)
    return nn.init.xavier_normal_(torch.empty(d_hidden, n_features), generator=generator)


class SeededParameters(nn.Module):
    """Stacked trained tensors, each with its recorded initial value ``initial_NAME`` (a buffer, so checkpoints carry it).

    The shared part of a toy model and an SAE: row ``i`` of every tensor is model ``i``, started from
    ``init_seeds[i]`` or from weights given to :meth:`set_initial_state` (weight patching, templates).
    """

    init_seeds: list[int]
    parameter_names: tuple[str, ...]

    def register_seeded_state(self, state: dict[str, Tensor]) -> None:
        """Make ``state`` (``{name: (n, ...)}``) the trained tensors and their recorded initial values."""
        for name, value in state.items():
            self.register_parameter(name, nn.Parameter(value.clone()))
            self.register_buffer(f"initial_{name}", value.clone())
        self.parameter_names = tuple(state)

    def initial_state(self) -> dict[str, Tensor]:
        """The recorded initial value of every trained tensor, by name (CPU copies)."""
        return {name: getattr(self, f"initial_{name}").detach().cpu().clone() for name in self.parameter_names}

    @torch.no_grad()
    def set_initial_state(self, state: dict[str, Tensor], init_seeds: Sequence[int] | None = None) -> None:
        """Start from ``state`` (every trained tensor, stacked over models) and record it as the initial state.

        Args:
            state: ``{name: tensor}`` with the shapes of the parameters.
            init_seeds: The seed behind each model (-1 where it came from elsewhere), for labels.
        """
        for name in self.parameter_names:
            value, parameter = state[name], getattr(self, name)
            if tuple(value.shape) != tuple(parameter.shape):
                raise ValueError(f"initial {name} has shape {tuple(value.shape)}, the model's is {tuple(parameter.shape)}")
            parameter.copy_(value)
            getattr(self, f"initial_{name}").copy_(value)
        if init_seeds is not None:
            self.init_seeds = [int(s) for s in init_seeds]

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Put every model back at its recorded initial state."""
        for name in self.parameter_names:
            getattr(self, name).copy_(getattr(self, f"initial_{name}"))
