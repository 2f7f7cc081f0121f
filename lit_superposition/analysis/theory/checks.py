"""Input checks of the theory: every entry point (and ``analysis.phases``) turns what it is given into float64 tensors
of the shapes it needs here, or stops with one line that says what is wrong and what is allowed. Each check is
written once and returns the checked value, so callers read ``p = check_probability(p)``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from lit_superposition.errors import ConfigError

#: The theory computes in float64: its exact integrals are meant to hold to rounding.
DTYPE = torch.float64


def as_float64(value) -> Tensor:
    """``value`` as a float64 tensor; a tensor keeps its autograd graph (the loss stays differentiable)."""
    if isinstance(value, Tensor):
        return value.to(DTYPE)
    return torch.as_tensor(np.asarray(value, dtype=np.float64))


def check_variant(variant: str, allowed: tuple[str, ...], purpose: str = "") -> str:
    """``variant`` if it is one of ``allowed``; ``purpose`` (why only these) starts the message."""
    if variant not in allowed:
        prefix = f"{purpose}: " if purpose else ""
        raise ConfigError(f"{prefix}variant must be one of {allowed}; got {variant!r}")
    return variant


def check_instanced(W, allow_single: bool = False) -> Tensor:
    """``W`` as ``(n_instances, d_hidden, n_features)`` float64; with ``allow_single`` a ``(d_hidden, n_features)``
    matrix is one instance."""
    W = as_float64(W)
    if allow_single and W.ndim == 2:
        W = W.unsqueeze(0)
    if W.ndim != 3:
        single = " or (d_hidden, n_features)" if allow_single else ""
        raise ConfigError(f"W must be (n_instances, d_hidden, n_features){single}; got shape {tuple(W.shape)}")
    return W


def check_weights(W, b) -> tuple[Tensor, Tensor]:
    """Finite ``W`` ``(n_instances, d_hidden, n_features)`` and ``b`` ``(n_instances, n_features)``, float64.

    One instance may come as ``W`` ``(d_hidden, n_features)``; a ``(n_features,)`` ``b`` is every instance's.
    """
    W, b = check_instanced(W, allow_single=True), as_float64(b)
    n_instances, _, n_features = W.shape
    if b.ndim == 1:
        b = b.unsqueeze(0).expand(n_instances, -1)
    if tuple(b.shape) != (n_instances, n_features):
        raise ConfigError(f"b must be (n_instances, n_features) = {(n_instances, n_features)}; got {tuple(b.shape)}")
    if not (torch.isfinite(W).all() and torch.isfinite(b).all()):
        raise ConfigError("W and b must be finite")
    return W, b


def per_instance_and_feature(value, name: str, n_instances: int, n_features: int) -> Tensor:
    """A scalar, per-feature or per-instance-and-feature value as ``(n_instances, n_features)`` float64."""
    tensor = as_float64(value).detach()
    if tensor.ndim == 1:
        if tensor.shape[0] != n_features:
            raise ConfigError(f"{name} has {tensor.shape[0]} entries but there are {n_features} features")
        tensor = tensor.unsqueeze(0)
    if tensor.ndim > 2:
        raise ConfigError(f"{name} must be a scalar, (n_features,) or (n_instances, n_features)"
                         f"; got {tuple(tensor.shape)}")
    try:
        return torch.broadcast_to(tensor, (n_instances, n_features)).clone()
    except RuntimeError:
        raise ConfigError(
            f"{name} of shape {tuple(tensor.shape)} does not broadcast to {(n_instances, n_features)}"
        ) from None


def per_feature(value, name: str, n_features: int | None = None) -> Tensor:
    """A per-feature list as ``(n_features,)`` float64; given ``n_features``, a scalar is every feature's."""
    tensor = as_float64(value).detach()
    if tensor.ndim != 1 and n_features is None:
        raise ConfigError(f"{name} must be a per-feature list; got shape {tuple(tensor.shape)}")
    if tensor.ndim > 1:
        raise ConfigError(f"{name} must be a scalar or a per-feature list; got shape {tuple(tensor.shape)}")
    if n_features is None:
        return tensor
    if tensor.ndim == 1 and tensor.shape[0] != n_features:
        raise ConfigError(f"{name} has {tensor.shape[0]} entries but there are {n_features} features")
    return torch.broadcast_to(tensor, (n_features,)).clone()


def check_probability(p: Tensor) -> Tensor:
    """``p`` (any shape) if every entry is a probability."""
    if not torch.isfinite(p).all() or p.min() < 0 or p.max() > 1:
        raise ConfigError(f"feature_probability must lie in [0, 1]; got values in [{p.min():g}, {p.max():g}]")
    return p


def check_importance(importance: Tensor) -> Tensor:
    """``importance`` (any shape) if every entry is finite and non-negative."""
    if not torch.isfinite(importance).all() or importance.min() < 0:
        raise ConfigError(f"importance must be finite and non-negative; got minimum {importance.min().item():g}")
    return importance


def check_feature(feature: int, n_features: int, name: str = "feature") -> int:
    """``feature`` if it is an index in ``0..n_features - 1``."""
    if not 0 <= int(feature) < n_features:
        raise ConfigError(f"{name} {feature} is out of range, outside 0..{n_features - 1}")
    return int(feature)


def check_features(features, name: str, n_features: int) -> list[int]:
    """``features`` as distinct indices in ``0..n_features - 1``."""
    features = [int(f) for f in features]
    if len(set(features)) != len(features):
        raise ConfigError(f"{name} {features} repeats a feature")
    return [check_feature(f, n_features, f"{name} {features}: feature") for f in features]


def check_sets(sets, name: str, n_features: int) -> list[list[int]]:
    """Correlated or anticorrelated sets as lists of distinct feature indices; empty sets are dropped."""
    if sets is None:
        return []
    return [members for members in (check_features(members, name, n_features) for members in sets) if members]


def check_distribution(p: Tensor, importance: Tensor, correlated, anticorrelated) -> tuple[list, list]:
    """Check ``p`` and ``importance`` ``(n_instances, n_features)`` against each other and the set structure.

    Returns:
        The checked correlated and anticorrelated sets.
    """
    n_features = p.shape[1]
    check_probability(p)
    check_importance(importance)
    correlated = check_sets(correlated, "correlated_sets", n_features)
    anticorrelated = check_sets(anticorrelated, "anticorrelated_sets", n_features)
    used = [f for members in correlated + anticorrelated for f in members]
    if len(set(used)) != len(used):
        raise ConfigError("a feature belongs to more than one correlated/anticorrelated set")
    for members in correlated:
        spread = (p[:, members].amax(1) - p[:, members].amin(1)).max().item()
        if spread > 1e-12:
            raise ConfigError(
                f"the features of correlated set {members} must share one feature_probability; spread {spread:g}"
            )
    for members in anticorrelated:
        total = p[:, members].sum(1).max().item()
        # p often comes from float32 settings: 1/n summed n times may exceed 1 by a few float32 ulps.
        if total > 1 + 1e-6 * len(members):
            raise ConfigError(f"anticorrelated set {members} has total feature_probability {total:g} > 1")
    return correlated, anticorrelated


def check_polygon(k: int, n_features: int, features) -> tuple[int, ...]:
    """The features of a k-gon (default ``0..k-1``): ``k`` distinct indices, in angular order."""
    if not 1 <= int(k) <= n_features:
        raise ConfigError(f"k must be in 1..{n_features}; got {k}")
    features = tuple(range(k)) if features is None else tuple(check_features(features, "features", n_features))
    if len(features) != k:
        raise ConfigError(f"features must be {k} indices, one per corner of the {k}-gon; got {list(features)}")
    return features
