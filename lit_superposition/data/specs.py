"""Feature-probability and importance specs that resolve to ``(n_instances, n_features)`` tensors.

In YAML a spec is a scalar, a per-feature list, a ``(settings, n_features)`` matrix, or one of the
classes below by ``class_path``::

    feature_probability:
      class_path: lit_superposition.data.LogSweep        # 20 ** -linspace(0, 1, n_instances)
      init_args: {start: 1.0, end: 0.05}
    importance:
      class_path: lit_superposition.data.GeometricDecay  # 0.9 ** f
      init_args: {base: 0.9}

Settings and repeats: with ``repeats: k`` (in ``data``), the ``n_instances`` instances are
``n_instances // k`` *settings* trained ``k`` times each; instance ``i`` is setting ``i // k``, repeat
``i % k``. Per-instance specs (a matrix, :class:`LogSweep`, :class:`SingleFeatureSweep`,
:class:`PerSetting`) give one row per setting, and :func:`resolve` repeats each row ``k`` times.
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


class FeatureRamp(Spec):
    """One value per feature, from ``start`` (feature 0) to ``end`` (the last feature).

    Increasing when ``end > start``, decreasing when ``end < start``; ``spacing`` is ``"log"``
    (geometric steps, the natural scale for probabilities) or ``"linear"``. Pair a decreasing
    ``feature_probability`` ramp with a decreasing ``importance`` (e.g. :class:`GeometricDecay`) and
    the most important feature is the densest (seed 003, case 1); reverse one of them for case 2.

    Example::

        FeatureRamp(start=0.1, end=0.01)  # 5 features: 0.1, 0.056, 0.032, 0.018, 0.01
    """

    def __init__(self, start: float, end: float, spacing: str = "log") -> None:
        if spacing not in ("log", "linear"):
            raise ConfigError(f"FeatureRamp spacing must be 'log' or 'linear', got {spacing!r}")
        if spacing == "log" and not (start > 0 and end > 0):
            raise ConfigError(f"FeatureRamp start and end must be > 0 with log spacing, got start={start}, end={end}")
        self.start, self.end, self.spacing = float(start), float(end), spacing

    def values(self, n_instances: int, n_features: int) -> Tensor:
        t = torch.linspace(0, 1, n_features, dtype=torch.float64)
        if self.spacing == "log":
            ramp = self.start * (self.end / self.start) ** t  # (n_features,)
        else:
            ramp = self.start + (self.end - self.start) * t  # (n_features,)
        return ramp.float().unsqueeze(0)


class SeededRandom(Spec):
    """One random value per feature, log-uniform on ``[low, high]``, reproducible from ``seed``.

    Log-uniform because probabilities span orders of magnitude: each decade between ``low`` and
    ``high`` is equally likely (``log_uniform: false`` draws uniformly instead). Every instance gets
    the same values, so instances differ only by their init (seed 003, case 3), unless
    ``per_instance: true`` draws one row per setting.

    Example::

        SeededRandom(low=0.01, high=0.1, seed=0)  # fixed random p per feature
    """

    def __init__(
        self, low: float, high: float, seed: int = 0, log_uniform: bool = True, per_instance: bool = False
    ) -> None:
        if not low <= high:
            raise ConfigError(f"SeededRandom needs low <= high, got low={low}, high={high}")
        if log_uniform and not low > 0:
            raise ConfigError(f"SeededRandom low must be > 0 when log_uniform, got {low}")
        self.low, self.high, self.seed = float(low), float(high), int(seed)
        self.log_uniform, self.per_instance = bool(log_uniform), bool(per_instance)

    def values(self, n_instances: int, n_features: int) -> Tensor:
        generator = torch.Generator().manual_seed(self.seed)
        u = torch.rand(n_instances if self.per_instance else 1, n_features, generator=generator, dtype=torch.float64)
        if self.log_uniform:
            low, high = math.log(self.low), math.log(self.high)
            return (low + (high - low) * u).exp().float()
        return (self.low + (self.high - self.low) * u).float()


class SingleFeatureSweep(Spec):
    """Every feature at ``base`` except ``feature``, which is ``base * factors[s]`` in setting ``s``.

    One setting per factor (seed 004: vary one feature's density, keep the others uniform). With
    ``repeats: k`` there are ``n_instances // k`` settings, and that must equal ``len(factors)``.

    Example::

        SingleFeatureSweep(feature=0, base=0.05, factors=[2.0, 1.0, 0.5, 0.25])
    """

    def __init__(self, feature: int, base: float, factors: list[float]) -> None:
        if not isinstance(feature, int) or feature < 0:
            raise ConfigError(f"SingleFeatureSweep feature must be a feature index >= 0, got {feature!r}")
        if not factors:
            raise ConfigError("SingleFeatureSweep factors must list at least one factor")
        self.feature, self.base, self.factors = feature, float(base), [float(f) for f in factors]

    def values(self, n_instances: int, n_features: int) -> Tensor:
        if self.feature >= n_features:
            raise ConfigError(
                f"SingleFeatureSweep feature {self.feature} out of range: features are 0..{n_features - 1}"
            )
        if len(self.factors) != n_instances:
            raise ConfigError(
                f"SingleFeatureSweep has {len(self.factors)} factors, expected one per setting"
                f" (n_instances // repeats = {n_instances})"
            )
        values = torch.full((n_instances, n_features), self.base, dtype=torch.float64)
        values[:, self.feature] *= torch.tensor(self.factors, dtype=torch.float64)
        return values.float()


class PerSetting(Spec):
    """One spec per setting, stacked: several experiments side by side in one run.

    Each entry is anything a spec may be for one setting (a scalar, a per-feature list or a
    :class:`Spec`). With ``repeats: k`` there are ``n_instances // k`` settings, one per entry.

    Example::

        # seed 003's four cases, 8 repeats each (n_instances: 32, repeats: 8)
        PerSetting([FeatureRamp(0.1, 0.01), FeatureRamp(0.01, 0.1), SeededRandom(0.01, 0.1), FeatureRamp(0.1, 0.01)])
    """

    def __init__(self, settings: list[Union[float, list[float], Spec]]) -> None:
        if not settings:
            raise ConfigError("PerSetting settings must list at least one setting")
        self.settings = list(settings)

    def values(self, n_instances: int, n_features: int) -> Tensor:
        if len(self.settings) != n_instances:
            raise ConfigError(
                f"PerSetting has {len(self.settings)} settings, expected one per setting"
                f" (n_instances // repeats = {n_instances})"
            )
        rows = [resolve(s, 1, n_features, f"PerSetting entry {k}") for k, s in enumerate(self.settings)]
        return torch.cat(rows)


SpecLike = Union[float, list[float], list[list[float]], Spec]
"""What a config may give: a scalar, a per-feature list, a matrix, or a :class:`Spec`."""


def check_repeats(repeats: int, n_instances: int) -> int:
    """Validate ``repeats`` against ``n_instances``; returns the number of settings."""
    if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
        raise ConfigError(f"repeats must be a positive integer, got {repeats!r}")
    if n_instances % repeats:
        raise ConfigError(
            f"n_instances ({n_instances}) must be a multiple of repeats ({repeats}):"
            " instance i is setting i // repeats, repeat i % repeats"
        )
    return n_instances // repeats


def resolve(spec: SpecLike, n_instances: int, n_features: int, name: str, repeats: int = 1) -> Tensor:
    """Resolve a spec to a float32 ``(n_instances, n_features)`` tensor (shapes checked, values not).

    Per-instance specs are resolved for ``n_instances // repeats`` settings; each row is then
    repeated ``repeats`` times, so instance ``i`` gets setting ``i // repeats``.

    Args:
        spec: The value from the config.
        n_instances: Instances in the model (all repeats together).
        n_features: Features per instance.
        name: The setting's name, for error messages.
        repeats: Instances per setting; must divide ``n_instances``.
    """
    n_settings = check_repeats(repeats, n_instances)
    if isinstance(spec, Spec):
        values = spec.values(n_settings, n_features)
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
        elif values.dim() == 2 and tuple(values.shape) != (n_settings, n_features):
            rows = "n_instances" if repeats == 1 else "n_instances // repeats"
            raise ConfigError(
                f"{name} matrix has shape {tuple(values.shape)}, expected ({rows}, n_features)"
                f" = ({n_settings}, {n_features})"
            )
        elif values.dim() > 2:
            raise ConfigError(f"{name} must have at most 2 dimensions, got shape {tuple(values.shape)}")
    values = values.float().expand(n_settings, n_features)  # (n_settings, n_features)
    return values.repeat_interleave(repeats, dim=0) if repeats > 1 else values.clone()


def resolve_feature_probability(spec: SpecLike, n_instances: int, n_features: int, repeats: int = 1) -> Tensor:
    """Resolve ``feature_probability``; every value must lie in (0, 1]."""
    p = resolve(spec, n_instances, n_features, "feature_probability", repeats)
    bad = ~((p > 0) & (p <= 1))
    if bad.any():
        raise ConfigError(f"feature_probability must be in (0, 1], got {_first(p, bad)}")
    return p


def resolve_importance(spec: SpecLike, n_instances: int, n_features: int, repeats: int = 1) -> Tensor:
    """Resolve ``importance``; every value must be finite and >= 0."""
    importance = resolve(spec, n_instances, n_features, "importance", repeats)
    bad = ~(torch.isfinite(importance) & (importance >= 0))
    if bad.any():
        raise ConfigError(f"importance must be finite and >= 0, got {_first(importance, bad)}")
    return importance


def _first(values: Tensor, bad: Tensor) -> str:
    i, f = (int(k) for k in bad.nonzero()[0])
    text = f"{values[i, f].item():g}"
    # A scalar setting needs no location; a list or sweep does.
    return text if bool((values == values[i, f]).all()) else f"{text} (instance {i}, feature {f})"
