"""The instanced ReLU-output toy model: a plain ``nn.Module`` with no Lightning in it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
            x: ``(n_instances, batch, n_features)``, in any memory layout; the datamodule's batches
                keep the batch axis contiguous (see :func:`reconstruction_loss`), which is fastest.

        Returns:
            ``x'`` of the same shape (a view with the batch axis contiguous).
        """
        return _reconstruct(self.W, self.b, x.transpose(1, 2))[1].transpose(1, 2)

    def extra_repr(self) -> str:
        return f"n_instances={self.n_instances}, n_features={self.n_features}, d_hidden={self.d_hidden}"


def _reconstruct(W: Tensor, b: Tensor, xT: Tensor) -> tuple[Tensor, Tensor]:
    """``h`` and ``x'`` in the feature-major layout ``(n_instances, n_features, batch)``.

    With the batch axis last, every product is a short-by-long matrix product, which is several
    times faster on the CPU than the same product with the batch axis first (1024 x 6 by 6 x 2).
    """
    h = torch.bmm(W, xT)  # (n_instances, d_hidden, batch)
    out = torch.baddbmm(b.unsqueeze(2), W.transpose(1, 2), h).relu_()  # (n_instances, n_features, batch)
    return h, out


class _ReconstructionLoss(torch.autograd.Function):
    """The per-feature loss with a hand-written backward pass.

    Autograd would keep and traverse one full-size tensor per elementwise step (subtract, square,
    mean, ReLU); here the backward pass needs only the error where the ReLU is active, and the
    per-feature scale of the gradient is applied to the small ``(n_instances, n_features)`` factors.
    """

    @staticmethod
    def forward(ctx: Any, xT: Tensor, W: Tensor, b: Tensor, importance: Tensor) -> Tensor:
        h, out = _reconstruct(W, b, xT)  # (n_instances, d_hidden, batch), (n_instances, n_features, batch)
        error = out - xT  # (n_instances, n_features, batch): x' - x
        # ReLU's own backward rule (gradient only where x' > 0), written over x', which is not needed again.
        active_error = torch.ops.aten.threshold_backward.grad_input(error, out, 0, grad_input=out)
        ctx.save_for_backward(xT, W, h, active_error, importance)
        return error.square_().sum(dim=2).mul_(importance).div_(xT.shape[2])  # (n_instances, n_features)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, Tensor, Tensor, None]:
        xT, W, h, active_error, importance = ctx.saved_tensors
        # d loss / d x' = scale * (x' - x), one scale per instance and feature.
        scale = grad * importance * (2.0 / xT.shape[2])  # (n_instances, n_features)
        grad_b = active_error.sum(dim=2).mul_(scale)  # (n_instances, n_features)
        grad_W = torch.bmm(h, active_error.transpose(1, 2)).mul_(scale.unsqueeze(1))  # (n_instances, d_hidden, n_features)
        grad_h = torch.bmm(W * scale.unsqueeze(1), active_error)  # (n_instances, d_hidden, batch)
        grad_W.baddbmm_(grad_h, xT.transpose(1, 2))
        return None, grad_W, grad_b, None


def reconstruction_loss(model: ToyModel, x: Tensor, importance: Tensor | float = 1.0) -> Tensor:
    """The importance-weighted reconstruction loss per instance and feature: ``mean_batch I · (x - x')²``.

    The same value as ``(x - model(x)).square().mean(dim=1) * importance``, with a fused backward
    pass that is about twice as fast on large batches. It falls back to that plain autograd formula
    where the fused pass does not apply (``x`` or ``importance`` requiring gradients, autocast).

    Args:
        model: The toy model.
        x: ``(n_instances, batch, n_features)`` features; fastest with the batch axis contiguous in
            memory, as the datamodule makes them (``x.transpose(1, 2).is_contiguous()``).
        importance: ``(n_instances, n_features)`` weights (or anything that broadcasts to it).

    Returns:
        The ``(n_instances, n_features)`` per-feature loss.

    Example::

        per_feature = reconstruction_loss(model, x, importance)  # (n_instances, n_features)
        per_feature.mean(dim=1).sum().backward()
    """
    importance = torch.as_tensor(importance, dtype=x.dtype, device=x.device).expand(model.n_instances, model.n_features)
    plain = (
        x.requires_grad
        or importance.requires_grad
        or torch.is_autocast_enabled(x.device.type)
        or not torch.is_grad_enabled()
    )
    if plain:
        return (x - model(x)).square().mean(dim=1) * importance
    return _ReconstructionLoss.apply(x.transpose(1, 2), model.W, model.b, importance)
