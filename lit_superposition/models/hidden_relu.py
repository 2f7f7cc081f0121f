"""The hidden-ReLU toy model (a privileged basis): ``h = ReLU(W x)``, ``x' = ReLU(Wᵀ h + b)``."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor
from typing_extensions import override

from lit_superposition.models.base import ToyModel


class HiddenReLUModel(ToyModel):
    """A ReLU on the hidden layer makes its units neurons: the basis matters (ARENA 1.3.1, "neuron model").

    Row ``n`` of ``W[i]`` holds neuron ``n``'s weights on the features; a neuron is monosemantic when
    its squared weight falls on one feature, polysemantic when it is shared.

    Example::

        model = HiddenReLUModel(n_instances=7, n_features=10, d_hidden=5)
    """

    privileged_basis: ClassVar[bool] = True
    exact_theory: ClassVar[str | None] = "hidden_relu"

    @override
    def forward(self, x: Tensor) -> Tensor:
        xT = x.transpose(1, 2)  # (n_instances, n_features, batch)
        h = torch.bmm(self.W, xT).relu_()  # (n_instances, d_hidden, batch)
        return torch.baddbmm(self.b.unsqueeze(2), self.W.transpose(1, 2), h).relu_().transpose(1, 2)
