"""Where two geometries' loss curves cross (seed 004's pentagon/two-digon phase change); no Lightning."""

from __future__ import annotations

import math
from collections.abc import Sequence


def crossing(x: Sequence[float], a: Sequence[float], b: Sequence[float]) -> float | None:
    """The first ``x`` where ``a - b`` changes sign, interpolated linearly in ``log x``.

    Args:
        x: Increasing positive values (e.g. a feature's relative density).
        a: One curve at ``x``.
        b: The other curve at ``x``.

    Returns:
        The crossing, or None when one curve stays below the other.
    """
    d = [ai - bi for ai, bi in zip(a, b)]
    for k in range(len(d) - 1):
        if d[k] == 0:
            return float(x[k])
        if (d[k] < 0) != (d[k + 1] < 0):
            t = d[k] / (d[k] - d[k + 1])
            return float(math.exp(math.log(x[k]) + t * (math.log(x[k + 1]) - math.log(x[k]))))
    return float(x[-1]) if d and d[-1] == 0 else None


def switch(x: Sequence[float], labels: Sequence[str]) -> float | None:
    """The geometric mean of the first pair of neighbouring ``x`` whose labels differ (None if all agree)."""
    for k in range(len(labels) - 1):
        if labels[k] != labels[k + 1]:
            return float(math.sqrt(x[k] * x[k + 1]))
    return None
