"""The linear-output toy model, the paper's control: ``x' = Wᵀ W x + b``."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor
from typing_extensions import override

from lit_superposition.models.base import ToyModel


class LinearOutputModel(ToyModel):
    """``x' = Wᵀ W x + b``: no nonlinearity, so no superposition (Anthropic 2022, "the linear model").

    It learns the ``d_hidden`` most important features, orthogonally, and ignores the rest, whatever
    the sparsity: interference cannot be filtered out without a ReLU.

    Example::

        model = LinearOutputModel(n_instances=4, n_features=5, d_hidden=2)
    """

    exact_theory: ClassVar[str | None] = "linear_output"

    @override
    def forward(self, x: Tensor) -> Tensor:
        xT = x.transpose(1, 2)  # (n_instances, n_features, batch)
        h = torch.bmm(self.W, xT)  # (n_instances, d_hidden, batch)
        return torch.baddbmm(self.b.unsqueeze(2), self.W.transpose(1, 2), h).transpose(1, 2)
