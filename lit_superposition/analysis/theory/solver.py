"""The theory's one optimizer: many small, independent minimizations (a k-gon's norm and bias, a phase candidate's
norms and biases) solved side by side by damped Newton steps on exact autograd gradients and Hessians. The damping
is Levenberg–Marquardt's: it acts as each problem's trust region, widening after a step that lowers the loss and
narrowing after one that does not, so every problem takes its own step size and stops on its own.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def minimize(
    losses: Callable[[Tensor], Tensor], theta: Tensor, max_iterations: int, tolerance: float = 1e-12
) -> Tensor:
    """Minimize many independent small problems at once by Levenberg–Marquardt-damped Newton steps.

    Args:
        losses: Maps ``(n_problems, k)`` parameters to ``(n_problems,)`` losses, problem ``i`` reading row ``i`` only
            (so the Hessian is block diagonal, one ``(k, k)`` block per problem).
        theta: ``(n_problems, k)`` starting parameters.
        max_iterations: Newton steps at most.
        tolerance: A problem is done when a step changes its loss by less than this, relative, or when its damping
            passes 1e12 (no step lowers the loss any more).

    Returns:
        ``(n_problems, k)`` parameters, detached.
    """
    n_problems, k = theta.shape
    damping = torch.full((n_problems,), 1e-3, dtype=theta.dtype)  # (n_problems,), relative to the Hessian's scale
    active = torch.ones(n_problems, dtype=torch.bool)  # (n_problems,)
    identity = torch.eye(k, dtype=theta.dtype)
    for _ in range(max_iterations):
        if not active.any():
            break
        x = theta.detach().requires_grad_(True)
        loss = losses(x)  # (n_problems,)
        (grad,) = torch.autograd.grad(loss.sum(), x, create_graph=True)  # (n_problems, k)
        # Problems are independent, so k backward passes give every problem's (k, k) Hessian block.
        hessian = torch.stack([torch.autograd.grad(grad[:, j].sum(), x, retain_graph=True)[0] for j in range(k)], dim=1)
        loss, grad, hessian = loss.detach(), grad.detach(), hessian.detach()  # (n_problems,), (.., k), (.., k, k)
        scale = hessian.diagonal(dim1=1, dim2=2).abs().amax(dim=1).clamp_min(1e-12)  # (n_problems,)
        system = hessian + (damping * scale)[:, None, None] * identity  # (n_problems, k, k)
        step = -torch.linalg.solve(system, grad.unsqueeze(2)).squeeze(2)  # (n_problems, k)
        step = torch.where(torch.isfinite(step), step, 0.0)
        with torch.no_grad():
            trial = losses(theta + step)  # (n_problems,)
        better = active & (trial < loss)
        theta = torch.where(better.unsqueeze(1), theta + step, theta)
        damping = torch.where(better, damping / 3, damping * 4)
        small = (loss - trial).abs() <= tolerance * loss.abs().clamp_min(1e-300)
        active = active & ~(small | (damping > 1e12))
    return theta.detach()
