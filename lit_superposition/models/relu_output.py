"""The ReLU-output toy model (the default): ``x' = ReLU(Wᵀ W x + b)``, with a fused loss."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor
from typing_extensions import override

from lit_superposition.models.base import ToyModel


class ReLUOutputModel(ToyModel):
    """Many independent ReLU-output models in one set of tensors: ``x' = ReLU(Wᵀ W x + b)``.

    Args:
        n_instances: Models trained side by side; they never interact.
        n_features: Input features per model.
        d_hidden: Hidden dimensions per model.
        init_seeds: A base seed (instance ``i`` gets ``base + i``) or one seed per instance.

    Example::

        model = ReLUOutputModel(n_instances=8, n_features=5, d_hidden=2, init_seeds=0)
        x_hat = model(torch.rand(8, 1024, 5))  # (n_instances, batch, n_features)
    """

    exact_theory: ClassVar[str | None] = "relu_output"

    @override
    def forward(self, x: Tensor) -> Tensor:
        """Reconstruct the features.

        Args:
            x: ``(n_instances, batch, n_features)``, in any memory layout; the datamodule's batches
                keep the batch axis contiguous, which is fastest.

        Returns:
            ``x'`` of the same shape (a view with the batch axis contiguous).
        """
        return _reconstruct(self.W, self.b, x.transpose(1, 2))[1].transpose(1, 2)

    @override
    def per_feature_loss(self, x: Tensor, importance: Tensor | float = 1.0, target: Tensor | None = None) -> Tensor:
        """The importance-weighted reconstruction loss, ``mean_batch I · (x - x')²``: ``(n_instances, n_features)``.

        The same value as the plain formula, with a fused backward pass that is about twice as fast
        on large batches. It falls back to the plain autograd formula where the fused pass does not
        apply (a separate target, ``x`` or ``importance`` requiring gradients, autocast, no grad).

        Example::

            per_feature = model.per_feature_loss(x, importance)  # (n_instances, n_features)
            per_feature.mean(dim=1).sum().backward()
        """
        importance = torch.as_tensor(importance, dtype=x.dtype, device=x.device).expand(self.n_instances, self.n_features)
        plain = (
            target is not None
            or x.requires_grad
            or importance.requires_grad
            or torch.is_autocast_enabled(x.device.type)
            or not torch.is_grad_enabled()
        )
        if plain:
            return super().per_feature_loss(x, importance, target)
        return _ReconstructionLoss.apply(x.transpose(1, 2), self.W, self.b, importance)


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
