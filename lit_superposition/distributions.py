"""Feature-probability and importance specs that resolve to ``(n_instances, n_features)`` tensors.

In YAML a spec is a scalar, a per-feature list, a full ``(n_instances, n_features)`` matrix, or one
of the classes below by ``class_path``::

    feature_probability:
      class_path: LogSweep            # 20 ** -linspace(0, 1, n_instances)
      init_args: {start: 1.0, end: 0.05}
    importance:
      class_path: GeometricDecay      # 0.9 ** f
      init_args: {base: 0.9}
"""

from __future__ import annotations

import math
from typing import Union

import torch
from torch import Tensor

from lit_superposition.errors import ConfigError


class Spec:
    """A rule that gives one value per (instance, feature)."""

    def values(self, n_instances: int, n_features: int) -> Tensor:
        """Returns a tensor that broadcasts to ``(n_instances, n_features)``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class LogSweep(Spec):
    """One value per instance, log-spaced from ``start`` (instance 0) to ``end`` (the last instance).

    ``LogSweep(start=1, end=0.05)`` is the Anthropic notebook's ``20 ** -linspace(0, 1, n_instances)``.
    """

    def __init__(self, start: float = 1.0, end: float = 0.05) -> None:
        if not (start > 0 and end > 0):
            raise ConfigError(f"LogSweep start and end must be > 0, got start={start}, end={end}")
        self.start, self.end = float(start), float(end)

    def values(self, n_instances: int, n_features: int) -> Tensor:
        t = torch.linspace(0, 1, n_instances, dtype=torch.float64)
        sweep = self.start * (self.end / self.start) ** t  # (n_instances,)
        return sweep.float().unsqueeze(1)


class GeometricDecay(Spec):
    """One value per feature, ``base ** f``: the Anthropic notebook's importance ``0.9 ** f``."""

    def __init__(self, base: float = 0.9) -> None:
        if not base > 0:
            raise ConfigError(f"GeometricDecay base must be > 0, got {base}")
        self.base = float(base)

    def values(self, n_instances: int, n_features: int) -> Tensor:
        return (self.base ** torch.arange(n_features, dtype=torch.float64)).float().unsqueeze(0)


SpecLike = Union[float, list[float], list[list[float]], Spec]
"""What a config may give: a scalar, a per-feature list, a matrix, or a :class:`Spec`."""


def resolve(spec: SpecLike, n_instances: int, n_features: int, name: str) -> Tensor:
    """Resolve a spec to a float32 ``(n_instances, n_features)`` tensor (shapes checked, values not).

    Args:
        spec: The value from the config.
        n_instances: Instances in the model.
        n_features: Features per instance.
        name: The setting's name, for error messages.
    """
    if isinstance(spec, Spec):
        values = spec.values(n_instances, n_features)
    else:
        try:
            values = torch.as_tensor(spec, dtype=torch.float32)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a number, a per-feature list or a matrix, got {spec!r}") from None
        if values.dim() == 1:
            if values.numel() != n_features:
                raise ConfigError(
                    f"{name} has {values.numel()} values, expected one per feature (n_features={n_features})"
                )
            values = values.unsqueeze(0)
        elif values.dim() == 2 and tuple(values.shape) != (n_instances, n_features):
            raise ConfigError(
                f"{name} matrix has shape {tuple(values.shape)}, expected (n_instances, n_features)"
                f" = ({n_instances}, {n_features})"
            )
        elif values.dim() > 2:
            raise ConfigError(f"{name} must have at most 2 dimensions, got shape {tuple(values.shape)}")
    return values.float().expand(n_instances, n_features).clone()


def resolve_feature_probability(spec: SpecLike, n_instances: int, n_features: int) -> Tensor:
    """Resolve ``feature_probability``; every value must lie in (0, 1]."""
    p = resolve(spec, n_instances, n_features, "feature_probability")
    bad = ~((p > 0) & (p <= 1))
    if bad.any():
        raise ConfigError(f"feature_probability must be in (0, 1], got {_first(p, bad)}")
    return p


def resolve_importance(spec: SpecLike, n_instances: int, n_features: int) -> Tensor:
    """Resolve ``importance``; every value must be finite and >= 0."""
    importance = resolve(spec, n_instances, n_features, "importance")
    bad = ~(torch.isfinite(importance) & (importance >= 0))
    if bad.any():
        raise ConfigError(f"importance must be finite and >= 0, got {_first(importance, bad)}")
    return importance


def _first(values: Tensor, bad: Tensor) -> str:
    i, f = (int(k) for k in bad.nonzero()[0])
    text = f"{values[i, f].item():g}"
    # A scalar setting needs no location; a list or sweep does.
    return text if bool((values == values[i, f]).all()) else f"{text} (instance {i}, feature {f})"
