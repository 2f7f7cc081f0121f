"""Where two geometries' loss curves cross (seed 004's pentagon/two-digon phase change); no Lightning."""

from __future__ import annotations

import math
from collections.abc import Sequence


def crossing(x: Sequence[float], a: Sequence[float], b: Sequence[float]) -> float | None:
    """The first ``x`` where ``a - b`` changes sign, interpolated linearly in ``log x`` (points where either is None skipped).

    Args:
        x: Increasing positive values (e.g. a feature's relative density).
        a: One curve at ``x`` (None where it has no point).
        b: The other curve at ``x`` (None where it has no point).

    Returns:
        The crossing, or None when one curve stays below the other.
    """
    points = [(xi, ai - bi) for xi, ai, bi in zip(x, a, b) if ai is not None and bi is not None]
    for (x0, d0), (x1, d1) in zip(points, points[1:]):
        if d0 == 0:
            return float(x0)
        if (d0 < 0) != (d1 < 0):
            t = d0 / (d0 - d1)
            return float(math.exp(math.log(x0) + t * (math.log(x1) - math.log(x0))))
    return float(points[-1][0]) if points and points[-1][1] == 0 else None


def switch(x: Sequence[float], labels: Sequence[str]) -> float | None:
    """The geometric mean of the first pair of neighbouring ``x`` whose labels differ (None if all agree)."""
    for k in range(len(labels) - 1):
        if labels[k] != labels[k + 1]:
            return float(math.sqrt(x[k] * x[k + 1]))
    return None
