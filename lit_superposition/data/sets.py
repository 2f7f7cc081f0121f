"""Correlated and anticorrelated feature sets, drawn from the same one-uniform-per-feature sample.

Every feature ``f`` reads its activity from the uniform of a *source* feature (itself, or the first
feature of its set) and is active when that uniform falls in its own interval ``[low, high)``:

- independent feature: source ``f``, interval ``[0, p_f)``;
- correlated set: every member reads the first member's uniform with interval ``[0, p)``, so all are
  active together or none is; each member's magnitude comes from its own uniform, so magnitudes
  stay independent;
- anticorrelated set: every member reads the first member's uniform, with consecutive disjoint
  intervals ``[c_{f-1}, c_f)`` of width ``p_f`` (``c`` the cumulative sum over the set), so at most
  one is active, the set is active with probability ``Σ p`` and each feature keeps its ``p_f``.

The magnitude of an active feature is ``(high - u) / (high - low)``, uniform on (0, 1] and never 0;
with signed values it goes through :func:`signed_values_`, the same map as the plain stream's. No
extra random numbers are drawn: a batch with sets costs two gathers more than one without.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lit_superposition.errors import ConfigError


def signed_values_(t: Tensor) -> Tensor:
    """Signed values from magnitudes, in place: ``x = 2t - 1`` where ``t > 1/2``, ``x = -2t`` where ``t <= 1/2``.

    ``t`` uniform on (0, 1] gives ``x`` uniform on [-1, 0) ∪ (0, 1]: the half ``t > 1/2`` is the
    sign, what is left of ``t`` in its half the magnitude. ``t = 0`` (inactive) stays ``+0``, and an
    active ``t`` never gives 0: both branches are exact in floating point (``2t - 1`` by Sterbenz's
    lemma, ``-2t`` a scaling), so activity stays observable as ``x != 0``, with exactly the features
    that ``t > 0`` marks active. Bitwise ``torch.where(t > 0.5, 2 * t - 1, -2 * t)`` (up to the sign
    of 0), written without a mask because ``torch.where`` and comparisons are several times slower
    than arithmetic passes on the CPU.

    Args:
        t: Magnitudes in [0, 1] (0: inactive), any shape and layout; overwritten.

    Returns:
        ``t``, holding the signed values.
    """
    positive = t.round()  # 1 where t > 1/2, else 0 (round half to even: 1/2 goes to 0, the negative half)
    # -2t - 2·(-2t)·[t > 1/2] - [t > 1/2]: -2t, or 2t - 1; the last step turns t = 0 into +0, not -0.
    return t.mul_(-2).addcmul_(t, positive, value=-2).sub_(positive)


class FeatureSets:
    """Validated correlated and anticorrelated sets with their precomputed index maps and intervals.

    Args:
        feature_probability: The resolved ``(n_instances, n_features)`` probabilities.
        correlated_sets: Feature index sets that are active together (equal ``p`` within a set).
        anticorrelated_sets: Feature index sets with at most one feature active (``Σ p <= 1``).

    Example::

        sets = FeatureSets(torch.full((2, 4), 0.1), [[0, 1]], [[2, 3]])
        x = sets.to("cpu").sample(torch.rand(1, 1024, 4))  # (2, 1024, 4)
    """

    def __init__(
        self,
        feature_probability: Tensor,
        correlated_sets: Sequence[Sequence[int]],
        anticorrelated_sets: Sequence[Sequence[int]],
    ) -> None:
        p = feature_probability  # (n_instances, n_features)
        n_features = p.shape[1]
        self.correlated_sets = [list(s) for s in correlated_sets]
        self.anticorrelated_sets = [list(s) for s in anticorrelated_sets]
        named = [("correlated_sets", s) for s in self.correlated_sets]
        named += [("anticorrelated_sets", s) for s in self.anticorrelated_sets]
        owner: dict[int, str] = {}
        for name, features in named:
            if len(features) < 2:
                raise ConfigError(f"{name} {features} has {len(features)} feature(s): a set needs at least 2")
            for f in features:
                if not isinstance(f, int) or isinstance(f, bool) or not 0 <= f < n_features:
                    raise ConfigError(
                        f"{name} {features}: feature index {f!r} out of range: features are 0..{n_features - 1}"
                    )
                if f in owner:
                    raise ConfigError(
                        f"feature {f} is in two sets ({owner[f]} and {name} {features}): sets must not overlap"
                    )
                owner[f] = f"{name} {features}"

        source = torch.arange(n_features)  # (n_features,) whose uniform decides activity
        magnitude_source = torch.arange(n_features)  # (n_features,) whose uniform gives the magnitude
        low = torch.zeros_like(p)  # (n_instances, n_features)
        high = p.clone()  # (n_instances, n_features)
        for features in self.correlated_sets:
            p_set = p[:, features]  # (n_instances, k)
            unequal = (p_set - p_set[:, :1]).abs() > 1e-6 * p_set[:, :1]
            if unequal.any():
                i, j = (int(k) for k in unequal.nonzero()[0])
                raise ConfigError(
                    f"correlated_sets {features} needs equal feature_probability within the set, got"
                    f" {p_set[i, 0].item():g} (feature {features[0]}) and {p_set[i, j].item():g}"
                    f" (feature {features[j]}) in instance {i}"
                )
            source[features] = features[0]
        for features in self.anticorrelated_sets:
            total = p[:, features].sum(dim=1)  # (n_instances,)
            too_dense = total > 1 + 1e-6
            if too_dense.any():
                i = int(too_dense.nonzero()[0])
                raise ConfigError(
                    f"anticorrelated_sets {features} is active with probability k·p = Σp = {total[i].item():g} > 1"
                    f" in instance {i}: the set's feature_probability must sum to at most 1"
                )
            cumulative = p[:, features].double().cumsum(dim=1).float()  # (n_instances, k)
            high[:, features] = cumulative
            low[:, features] = torch.cat([torch.zeros_like(cumulative[:, :1]), cumulative[:, :-1]], dim=1)
            source[features] = features[0]
            magnitude_source[features] = features[0]
        magnitude_top = high.clone()  # (n_instances, n_features)
        inverse_width = (high - low).reciprocal()  # (n_instances, n_features)
        for features in self.correlated_sets:
            # The first member's magnitude comes from the shared uniform; the others use their own
            # uniform, 1 - u on (0, 1], independent of whether the set is active.
            magnitude_top[:, features[1:]] = 1.0
            inverse_width[:, features[1:]] = 1.0
        self.source, self.magnitude_source = source, magnitude_source
        self.low, self.high = low.unsqueeze(1), high.unsqueeze(1)  # (n_instances, 1, n_features)
        self.magnitude_top, self.inverse_width = magnitude_top.unsqueeze(1), inverse_width.unsqueeze(1)

    def __bool__(self) -> bool:
        return bool(self.correlated_sets or self.anticorrelated_sets)

    def to(self, device: torch.device | str) -> FeatureSets:
        """A copy with every tensor on ``device`` (done once per device, never per step)."""
        moved = object.__new__(FeatureSets)
        moved.correlated_sets, moved.anticorrelated_sets = self.correlated_sets, self.anticorrelated_sets
        for name in ("source", "magnitude_source", "low", "high", "magnitude_top", "inverse_width"):
            setattr(moved, name, getattr(self, name).to(device))
        return moved

    def sample(self, u: Tensor, signed: bool = False) -> Tensor:
        """Turn uniforms into features.

        Args:
            u: ``(n_draws, batch, n_features)`` uniforms on [0, 1); ``n_draws`` is 1 (shared) or
                ``n_instances`` (independent).
            signed: Map each magnitude ``t`` to a signed value on [-1, 1] with :func:`signed_values_`.

        Returns:
            ``(n_instances, batch, n_features)`` features.
        """
        g = u.index_select(-1, self.source)  # (n_draws, batch, n_features)
        m = u.index_select(-1, self.magnitude_source) if self.correlated_sets else g
        active = (g >= self.low) & (g < self.high)  # (n_instances, batch, n_features)
        t = torch.where(active, (self.magnitude_top - m) * self.inverse_width, 0.0)  # (n_instances, batch, n_features)
        return signed_values_(t) if signed else t
