"""The computation model (ARENA 1.3.1, "computation in superposition"): ``h = ReLU(W x)``, ``y' = ReLU(W_out h + b)``."""

from __future__ import annotations

from typing import ClassVar

import einops
import torch
from torch import Tensor, nn
from typing_extensions import override

from lit_superposition.models.base import ToyModel

#: Gain above which a feature counts as computed (see :meth:`ComputationModel.computed_features`).
COMPUTED_THRESHOLD = 0.5


class ComputationModel(ToyModel):
    """Two untied layers with ReLUs, to compute a function of the features (``|x|`` with ``target: abs``).

    A ReLU hidden layer can compute ``|x| = ReLU(x) + ReLU(-x)``; a model that reconstructs ``x``
    need not use its ReLU, one that computes ``|x|`` must, so its neurons say how features share
    them (ARENA's ``NeuronComputationModel``, Anthropic 2022 "Computation in Superposition").

    - ``W`` ``(n_instances, d_hidden, n_features)``: the input layer. Column ``f`` is feature ``f``'s
      input weights (what geometry, snapshots and weight patching read), row ``n`` neuron ``n``'s
      weights (what the per-neuron shares read).
    - ``W_out`` ``(n_instances, n_features, d_hidden)``: the output layer. Row ``f`` reads feature
      ``f``'s output from the neurons.
    - ``b`` ``(n_instances, n_features)``: the output bias.

    Weight patching replaces a feature's column of ``W`` and its row of ``W_out``: its whole path
    through the model.

    Example::

        model = ComputationModel(n_instances=7, n_features=20, d_hidden=10)
        y = model(x)  # (n_instances, batch, n_features), trained towards |x|
        computed = model.computed_features()  # (n_instances, n_features) bool: |x_f| for at least one sign
    """

    privileged_basis: ClassVar[bool] = True
    patched_parameters: ClassVar[dict[str, int]] = {"W": -1, "W_out": -2}

    @classmethod
    @override
    def instance_initial_state(cls, seed: int, d_hidden: int, n_features: int) -> dict[str, Tensor]:
        """One instance's initial tensors: ``W`` and ``W_out`` Xavier-normal from the seed's generator, ``b = 0``.

        ``W`` is drawn first, so it equals every other variant's ``W`` of the same seed
        (:func:`~lit_superposition.models.init.xavier_columns`); ``W_out`` continues the same
        generator, so it too depends only on ``(seed, d_hidden, n_features)``.
        """
        generator = torch.Generator().manual_seed(seed)
        W = nn.init.xavier_normal_(torch.empty(d_hidden, n_features), generator=generator)
        W_out = nn.init.xavier_normal_(torch.empty(n_features, d_hidden), generator=generator)
        return {"W": W, "W_out": W_out, "b": torch.zeros(n_features)}

    @override
    def forward(self, x: Tensor) -> Tensor:
        """``y' = ReLU(W_out ReLU(W x) + b)``, of the same shape as ``x``, ``(n_instances, batch, n_features)``."""
        # Feature-major, as in the other variants: short-by-long products are the fast ones on a CPU.
        xT = x.transpose(1, 2)  # (n_instances, n_features, batch)
        h = torch.bmm(self.W, xT).relu_()  # (n_instances, d_hidden, batch)
        out = torch.baddbmm(self.b.unsqueeze(2), self.W_out, h).relu_()  # (n_instances, n_features, batch)
        return out.transpose(1, 2)

    @torch.no_grad()
    def feature_gains(self) -> Tensor:
        """How much output ``f`` rises per unit of ``|x_f|`` for a lone positive and a lone negative ``x_f``.

        ``gain_± = W_out[f] · ReLU(±W[:, f])``: the feature's row of ``W_out`` times its column of
        ``W`` through the hidden ReLU, which keeps the neurons that sign switches on (the output
        bias and ReLU left out). Computing ``|x_f|`` needs both near 1; reconstructing ``x_f`` needs
        only ``gain_+``.

        Returns:
            ``(2, n_instances, n_features)``: ``gain_+`` then ``gain_-``.
        """
        W = self.W.detach()  # (n_instances, d_hidden, n_features)
        W_out = self.W_out.detach()  # (n_instances, n_features, d_hidden)
        plus = einops.einsum(W_out, W.clamp_min(0), "i f h, i h f -> i f")  # (n_instances, n_features)
        minus = einops.einsum(W_out, (-W).clamp_min(0), "i f h, i h f -> i f")  # (n_instances, n_features)
        return torch.stack([plus, minus])

    def computed_signs(self, threshold: float = COMPUTED_THRESHOLD) -> Tensor:
        """Which signs of which features reach their output: ``gain_± > threshold`` (see :meth:`feature_gains`).

        ``|x_f| = ReLU(x_f) + ReLU(-x_f)``, and a neuron passes one sign of a lone feature only, so
        each sign-half costs a neuron of its own unless features share neurons: more computed
        sign-halves than neurons is computation in superposition.

        Returns:
            ``(2, n_instances, n_features)`` booleans: the positive half, then the negative half.
        """
        return self.feature_gains() > threshold

    def computed_features(self, threshold: float = COMPUTED_THRESHOLD) -> Tensor:
        """Which features the model computes: at least one sign with ``gain > threshold`` (default 0.5).

        0.5 is half of what ``|x|`` asks (gain 1): a feature the model leaves out has gains near 0.
        Sparse models often compute one sign of a feature only; ``computed_signs().all(dim=0)``
        gives the features computed for both signs.

        Returns:
            ``(n_instances, n_features)`` booleans.
        """
        return self.computed_signs(threshold).any(dim=0)
