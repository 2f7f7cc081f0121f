"""The instanced ReLU-output toy model: a plain ``nn.Module`` with no Lightning in it."""

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


def initial_weights(seed: int, d_hidden: int, n_features: int) -> Tensor:
    """The initial ``W`` slice of one instance: Xavier-normal from its own generator.

    It depends only on ``(seed, d_hidden, n_features)``, so "the initial weights of seed 7" mean the
    same thing whatever the instance count; weight patching between seeds relies on this.

    Returns:
        A ``(d_hidden, n_features)`` float32 tensor on the CPU.
    """
    generator = torch.Generator().manual_seed(seed)
    return nn.init.xavier_normal_(torch.empty(d_hidden, n_features), generator=generator)


class ToyModel(nn.Module):
    """Many independent ReLU-output models in one set of tensors: ``x' = ReLU(Wᵀ W x + b)``.

    Args:
        n_instances: Models trained side by side; they never interact.
        n_features: Input features per model.
        d_hidden: Hidden dimensions per model.
        init_seeds: A base seed (instance ``i`` gets ``base + i``) or one seed per instance.

    Example::

        model = ToyModel(n_instances=8, n_features=5, d_hidden=2, init_seeds=0)
        x_hat = model(torch.rand(8, 1024, 5))  # (n_instances, batch, n_features)
    """

    def __init__(self, n_instances: int, n_features: int, d_hidden: int, init_seeds: int | Sequence[int] = 0) -> None:
        super().__init__()
        for name, value in (("n_instances", n_instances), ("n_features", n_features), ("d_hidden", d_hidden)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.n_instances, self.n_features, self.d_hidden = n_instances, n_features, d_hidden
        self.init_seeds = resolve_init_seeds(init_seeds, n_instances)
        self.W = nn.Parameter(torch.empty(n_instances, d_hidden, n_features))  # (n_instances, d_hidden, n_features)
        self.b = nn.Parameter(torch.zeros(n_instances, n_features))  # (n_instances, n_features)
        self.reset_parameters()

    def initial_state(self) -> dict[str, Tensor]:
        """The initialization of every instance, recomputed from the seeds (``W`` and ``b``, on the CPU)."""
        W = torch.stack([initial_weights(s, self.d_hidden, self.n_features) for s in self.init_seeds])
        return {"W": W, "b": torch.zeros(self.n_instances, self.n_features)}

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Re-initialize every instance from its own seed (``b = 0``)."""
        for name, value in self.initial_state().items():
            getattr(self, name).copy_(value)

    def forward(self, x: Tensor) -> Tensor:
        """Reconstruct the features.

        Args:
            x: ``(n_instances, batch, n_features)``.

        Returns:
            ``x'`` of the same shape.
        """
        # bmm on the instance axis beats a generic einsum for these tiny matrices.
        h = torch.bmm(x, self.W.transpose(1, 2))  # (n_instances, batch, d_hidden)
        out = torch.baddbmm(self.b.unsqueeze(1), h, self.W)  # (n_instances, batch, n_features)
        return torch.relu(out)

    def extra_repr(self) -> str:
        return f"n_instances={self.n_instances}, n_features={self.n_features}, d_hidden={self.d_hidden}"
