"""A 2-D grid of settings across the instances: one feature's importance by a feature's (or every feature's) probability.

The grid is given once, in ``data.grid``, and linked to the model by the CLI. Points are numbered
importance-major: point ``s`` is ``(importance[s // n_probability], probability[s % n_probability])``,
and with ``repeats: k`` instance ``i`` is repeat ``i % k`` of point ``i // k``, so ``n_instances``
must be ``n_importance · n_probability · k``. The grid overrides only its own columns: the other
features keep what ``feature_probability`` and ``model.importance`` give them (any spec).

Example (YAML)::

    data:
      n_instances: 162         # 9 x 9 points x 2 repeats
      n_features: 2
      repeats: 2
      grid:
        importance: {feature: 1, start: 0.1, end: 10.0, points: 9}
        probability: {start: 1.0, end: 0.01, points: 9}   # feature: null (default): every feature
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lit_superposition.errors import ConfigError


@dataclass(frozen=True)
class GridAxis:
    """One axis of a :class:`PhaseGrid`: ``points`` log-spaced values from ``start`` to ``end``.

    Args:
        start: The first value (> 0).
        end: The last value (> 0).
        points: How many values (>= 1; 1 gives ``start`` alone).
        feature: The feature the axis sets; ``None`` sets every feature (the probability axis only).
    """

    start: float
    end: float
    points: int
    feature: int | None = None

    def values(self) -> Tensor:
        """The axis's values, ``(points,)`` float64."""
        if self.points == 1:
            return torch.tensor([float(self.start)], dtype=torch.float64)
        t = torch.linspace(0, 1, self.points, dtype=torch.float64)
        return self.start * (self.end / self.start) ** t


@dataclass(frozen=True)
class PhaseGrid:
    """The phase diagram's grid: ``importance`` (of one feature) by ``probability`` (of one feature or all)."""

    importance: GridAxis
    probability: GridAxis

    def __post_init__(self) -> None:
        for name, axis in (("importance", self.importance), ("probability", self.probability)):
            if not (isinstance(axis.points, int) and not isinstance(axis.points, bool) and axis.points >= 1):
                raise ConfigError(f"grid.{name}.points must be a positive integer, got {axis.points!r}: an axis needs at least one point")
            if not (axis.start > 0 and axis.end > 0):
                raise ConfigError(f"grid.{name} start and end must be > 0 (the axis is log-spaced), got start={axis.start}, end={axis.end}")
            if axis.feature is not None and (not isinstance(axis.feature, int) or axis.feature < 0):
                raise ConfigError(f"grid.{name}.feature must be a feature index >= 0 or null, got {axis.feature!r}")
        if self.importance.feature is None:
            raise ConfigError("grid.importance.feature must name the feature whose importance varies (an index), got null")
        if max(self.probability.start, self.probability.end) > 1:
            raise ConfigError(
                f"grid.probability must lie in (0, 1], got start={self.probability.start}, end={self.probability.end}"
            )

    @property
    def feature(self) -> int:
        """The feature whose phase the diagram maps (the importance axis's)."""
        return int(self.importance.feature)

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_importance, n_probability)``."""
        return self.importance.points, self.probability.points

    def check(self, n_instances: int, n_features: int, repeats: int) -> None:
        """One-line errors for a grid that does not fit the run."""
        for name, axis in (("importance", self.importance), ("probability", self.probability)):
            if axis.feature is not None and axis.feature >= n_features:
                raise ConfigError(f"grid.{name}.feature {axis.feature} out of range: features are 0..{n_features - 1}")
        n_points = self.shape[0] * self.shape[1]
        if n_points * repeats != n_instances:
            raise ConfigError(
                f"the grid has {self.shape[0]} x {self.shape[1]} = {n_points} points, so n_instances must be"
                f" points x repeats = {n_points} x {repeats} = {n_points * repeats}, got {n_instances}"
            )

    def points(self) -> Tensor:
        """Every point's ``(importance, probability)``, ``(n_points, 2)`` float64, importance-major."""
        return torch.cartesian_prod(self.importance.values(), self.probability.values())

    def _per_instance(self, column: int, repeats: int) -> Tensor:
        return self.points()[:, column].repeat_interleave(repeats).float()  # (n_instances,)

    def apply_importance(self, importance: Tensor, repeats: int) -> Tensor:
        """``importance`` ``(n_instances, n_features)`` with the grid's feature set per point (a copy)."""
        out = importance.clone()
        out[:, self.feature] = self._per_instance(0, repeats)
        return out

    def apply_probability(self, feature_probability: Tensor, repeats: int) -> Tensor:
        """``feature_probability`` ``(n_instances, n_features)`` with the grid's column(s) set per point (a copy)."""
        out = feature_probability.clone()
        values = self._per_instance(1, repeats).unsqueeze(1)  # (n_instances, 1)
        if self.probability.feature is None:
            out[:] = values
        else:
            out[:, self.probability.feature] = values[:, 0]
        return out

    def describe(self) -> dict:
        """The axes by name, for ``report.json``."""
        return {
            "feature": self.feature,
            "importance": {"feature": self.feature, "values": self.importance.values().tolist()},
            "probability": {"feature": self.probability.feature, "values": self.probability.values().tolist()},
        }
