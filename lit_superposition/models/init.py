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
