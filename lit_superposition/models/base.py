"""The contract every model variant follows: the only surface the rest of the package reads.

A variant is a plain ``nn.Module`` (no Lightning) that subclasses :class:`ToyModel` and defines
:meth:`ToyModel.forward`; everything else has a default. What the module, the callbacks, the
analysis and the CLI may use of a model, and nothing more:

- ``n_instances``, ``n_features``, ``d_hidden``: the sizes;
- ``W`` ``(n_instances, d_hidden, n_features)``: column ``f`` is feature ``f``'s embedding (what
  geometry, snapshots and patching read); ``b`` ``(n_instances, n_features)``: the output bias;
- ``init_seeds``: the seed each instance was initialized from (-1: from a file, not a seed);
- :meth:`~lit_superposition.models.init.SeededParameters.initial_state`: the recorded initial value of every trained tensor, by name;
- :meth:`~lit_superposition.models.init.SeededParameters.set_initial_state`: start from given weights (weight patching, templates);
- :meth:`ToyModel.per_feature_loss`: ``(n_instances, n_features)`` importance-weighted loss;
- :meth:`ToyModel.gradients`: every trained tensor's gradient, all instances;
- ``privileged_basis``: whether hidden units are neurons (a ReLU acts on ``h``), so that per-neuron
  measurements mean something;
- ``exact_theory``: the name :mod:`lit_superposition.analysis.theory` computes this variant's exact
  expected loss under (None: it does not);
- ``variant_class``: the variant's class (its seeds' initial tensors, :meth:`ToyModel.instance_initial_state`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import torch
from torch import Tensor

from lit_superposition.models.init import SeededParameters, resolve_init_seeds, xavier_columns
from lit_superposition.models.packed import PackedSets


class ToyModel(SeededParameters):
    """Many independent toy models in one set of tensors; subclasses define ``forward``.

    The initial state is data, not a seed: every trained tensor ``NAME`` has a persistent buffer
    ``initial_NAME`` (so checkpoints carry it), set from the seeds here and overwritten by
    :meth:`set_initial_state` when an instance starts from other weights.

    Args:
        n_instances: Models trained side by side; they never interact.
        n_features: Input features per model.
        d_hidden: Hidden dimensions per model.
        init_seeds: A base seed (instance ``i`` gets ``base + i``) or one seed per instance.
    """

    #: Hidden units are neurons: a ReLU acts on ``h``.
    privileged_basis: ClassVar[bool] = False
    #: Weight patching replaces a feature's slice of these tensors: ``{name: feature axis}`` of one
    #: instance's tensor. A feature's column of ``W`` is its embedding.
    patched_parameters: ClassVar[dict[str, int]] = {"W": -1}
    #: The variant's name in :mod:`lit_superposition.analysis.theory`, which computes its exact expected
    #: loss (None: no exact theory). The one answer to "does the exact theory apply to this model?".
    exact_theory: ClassVar[str | None] = None

    def __init__(self, n_instances: int, n_features: int, d_hidden: int, init_seeds: int | Sequence[int] = 0) -> None:
        super().__init__()
        for name, value in (("n_instances", n_instances), ("n_features", n_features), ("d_hidden", d_hidden)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.n_instances, self.n_features, self.d_hidden = n_instances, n_features, d_hidden
        self.init_seeds = resolve_init_seeds(init_seeds, n_instances)
        state = self.seeded_state(self.init_seeds, d_hidden, n_features)
        self.register_seeded_state(state)

    @classmethod
    def instance_initial_state(cls, seed: int, d_hidden: int, n_features: int) -> dict[str, Tensor]:
        """One instance's initial tensors from its seed: Xavier-normal ``W`` from its own generator, ``b = 0``.

        It depends only on ``(seed, d_hidden, n_features)``, so "the initial weights of seed 7" mean
        the same whatever the instance count: weight patching between seeds relies on this.
        """
        return {"W": xavier_columns(seed, d_hidden, n_features), "b": torch.zeros(n_features)}

    @classmethod
    def seeded_state(cls, seeds: Sequence[int], d_hidden: int, n_features: int) -> dict[str, Tensor]:
        """The initial tensors of instances started from ``seeds``, stacked on a leading instance axis."""
        states = [cls.instance_initial_state(int(s), d_hidden, n_features) for s in seeds]
        return {name: torch.stack([state[name] for state in states]) for name in states[0]}

    @property
    def variant_class(self) -> type[ToyModel]:
        """The variant this model is (a wrapper, e.g. a sharded run's, answers with the variant it wraps)."""
        return type(self)

    def gradients(self) -> dict[str, Tensor]:
        """Every trained tensor's gradient by name, all instances (empty where there is none yet)."""
        return {name: p.grad for name in self.parameter_names if (p := getattr(self, name)).grad is not None}

    def forward(self, x: Tensor) -> Tensor:
        """``x'`` of the same shape as ``x``, ``(n_instances, batch, n_features)``."""
        raise NotImplementedError

    def rows(self, instances: Tensor) -> dict[str, Tensor]:
        """Every trained tensor's rows ``instances`` (an index per row; an instance may repeat), by name."""
        return {name: getattr(self, name)[instances] for name in self.parameter_names}

    def forward_with(self, tensors: Mapping[str, Tensor], x: Tensor) -> Tensor:
        """:meth:`forward` on other tensors of this variant, with as many rows as ``x`` has (e.g. :meth:`rows`)."""
        return torch.func.functional_call(self, dict(tensors), (x,), strict=False)

    def per_feature_loss(
        self,
        x: Tensor,
        importance: Tensor | float = 1.0,
        target: Tensor | None = None,
        instances: Tensor | None = None,
        weights: Tensor | None = None,
    ) -> Tensor:
        """The importance-weighted loss per row of ``x`` and feature, ``mean_batch I · (target - x')²``.

        Args:
            x: ``(n_rows, batch, n_features)`` inputs; row ``r`` is instance ``r`` unless ``instances`` says.
            importance: Anything that broadcasts to ``(n_rows, n_features)``.
            target: What ``x'`` should be (default: ``x`` itself, a reconstruction).
            instances: ``(n_rows,)``: the instance of each row (rows of one instance may repeat, e.g.
                the chunks of a finite training set).
            weights: ``(n_rows, batch)``: each point's weight; the loss is then ``Σ_batch w · I · (target - x')²``
                instead of the mean (0 leaves a point out).

        Returns:
            ``(n_rows, n_features)``.
        """
        target = x if target is None else target
        x_hat = self(x) if instances is None else self.forward_with(self.rows(instances), x)
        squared = (target - x_hat).square()  # (n_rows, batch, n_features)
        if weights is None:
            return squared.mean(dim=1) * importance
        return torch.einsum("rbf,rb->rf", squared, weights) * importance

    def per_feature_loss_of_sets(self, sets: PackedSets, importance: Tensor, target: Tensor | None = None) -> Tensor:
        """Each instance's loss on its own finite training set: ``(n_instances, n_features)``.

        Every row (a chunk of one instance's points) is computed with its instance's tensors, and an
        instance's rows, weighted ``1 / T_i`` per point, sum to the mean over its own points.

        Args:
            sets: The packed points (:class:`~lit_superposition.models.packed.PackedSets`).
            importance: ``(n_instances, n_features)``.
            target: ``(n_rows, CHUNK, n_features)``: what ``x'`` should be (default: the points).
        """
        rows = self.per_feature_loss(sets.x, importance[sets.instances], target, sets.instances, sets.weights)  # (n_rows, n_features)
        return rows.new_zeros(sets.n_instances, rows.shape[1]).index_add_(0, sets.instances, rows)

    def extra_repr(self) -> str:
        return f"n_instances={self.n_instances}, n_features={self.n_features}, d_hidden={self.d_hidden}"
