"""Torchmetrics aggregators that keep the shape of what they average."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


class ElementwiseMean(Metric):
    """The mean of a tensor over updates, element by element (``MeanMetric`` reduces to a scalar).

    States are summed across processes, so the mean is over every update of every rank.

    Args:
        shape: The shape of each update, e.g. ``(n_instances, n_features)``.

    Example::

        mean = ElementwiseMean((8, 5))
        mean.update(per_feature_loss)  # one sample, or several stacked: (n, 8, 5)
        mean.compute()                 # (8, 5), then mean.reset()
    """

    full_state_update = False
    higher_is_better = None
    is_differentiable = False

    def __init__(self, shape: tuple[int, ...], **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("total", default=torch.zeros(shape, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, value: Tensor) -> None:
        """Add one sample of ``shape``, or a batch of samples stacked on a leading axis."""
        value = value.detach()
        if value.dim() == self.total.dim():
            value = value.unsqueeze(0)
        self.total += value.sum(dim=0, dtype=torch.float64)
        self.count += value.shape[0]

    def compute(self) -> Tensor:
        return (self.total / self.count.clamp_min(1)).float()
