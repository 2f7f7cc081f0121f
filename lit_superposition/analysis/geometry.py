"""Feature geometry of instanced weights: pure tensor functions, no Lightning.

Every function takes ``W`` of shape ``(n_instances, d_hidden, n_features)`` (and ``b`` of shape
``(n_instances, n_features)`` where it needs it) and works on all instances at once. Column ``f`` of
``W[i]`` is the embedding of feature ``f`` in instance ``i``.

Example::

    W = model.W.detach()                # (n_instances, d_hidden, n_features)
    D = dimensionality(W)               # (n_instances, n_features)
    shapes = classify_2d(W)             # [Polygon(n_directions=5, name='pentagon', regular=True, ...), ...]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import einops
import torch
from torch import Tensor

EPS = 1e-8

#: Dimensionality fractions that features settle into (Anthropic 2022): a dedicated dimension,
#: tetrahedron, triangle, antipodal pair (digon), pentagon, square antiprism, and a few more; 0 is
#: "not represented".
FRACTIONS: tuple[Fraction, ...] = tuple(
    Fraction(s) for s in ("1", "3/4", "2/3", "3/5", "1/2", "2/5", "3/8", "1/3", "2/7", "1/4", "0")
)

#: Names by number of distinct directions. One direction is a "monogon" (features on one ray, or a
#: single feature); none means nothing is represented.
POLYGON_NAMES = {
    0: "none",
    1: "monogon",
    2: "digon",
    3: "triangle",
    4: "square",
    5: "pentagon",
    6: "hexagon",
    7: "heptagon",
    8: "octagon",
    9: "nonagon",
    10: "decagon",
}


def polygon_name(n_directions: int) -> str:
    """The name of a figure with ``n_directions`` distinct directions ("pentagon", "12-gon", …)."""
    return POLYGON_NAMES.get(n_directions, f"{n_directions}-gon")


def _check(W: Tensor) -> None:
    if W.ndim != 3:
        raise ValueError(f"W must have shape (n_instances, d_hidden, n_features), got {tuple(W.shape)}")


def feature_norms(W: Tensor) -> Tensor:
    """``‖W_f‖`` of every feature: ``(n_instances, n_features)``."""
    _check(W)
    return W.norm(dim=1)


def frobenius_sq(W: Tensor) -> Tensor:
    """``‖W‖²_F``, roughly the number of represented features: ``(n_instances,)``."""
    _check(W)
    return W.square().sum(dim=(1, 2))


def dimensions_per_feature(W: Tensor) -> Tensor:
    """``d_hidden / ‖W‖²_F`` (ARENA's "dimensions per feature"): ``(n_instances,)``."""
    return W.shape[1] / frobenius_sq(W).clamp_min(EPS)


def _overlaps(W: Tensor) -> tuple[Tensor, Tensor]:
    norms = feature_norms(W)  # (n_instances, n_features)
    unit = W / norms.clamp_min(EPS).unsqueeze(1)  # (n_instances, d_hidden, n_features)
    overlap = einops.einsum(unit, W, "i h f, i h g -> i f g")  # Ŵ_f · W_g
    return norms, overlap.square().sum(dim=-1)  # Σ_g (Ŵ_f · W_g)², (n_instances, n_features)


def dimensionality(W: Tensor, threshold: float = 0.5) -> Tensor:
    """``D_f = ‖W_f‖² / Σ_g (Ŵ_f · W_g)²``: the fraction of a dimension feature ``f`` gets.

    1 for a feature orthogonal to all others, ``1/k`` for ``k`` features sharing a direction, 2/5 in a
    regular pentagon, 3/4 in a tetrahedron.

    Args:
        W: ``(n_instances, d_hidden, n_features)``.
        threshold: Features with ``‖W_f‖ <= threshold`` are not represented and get 0.

    Returns:
        ``(n_instances, n_features)``.
    """
    norms, denominator = _overlaps(W)
    D = norms.square() / denominator.clamp_min(EPS)
    return torch.where(norms > threshold, D, torch.zeros_like(D))


def data_dimensionality(H: Tensor) -> Tensor:
    """Each data point's dimensionality, ``D_t = ‖h_t‖⁴ / Σ_j (h_t · h_j)²`` (Anthropic 2023): the feature
    formula applied to the hidden vectors ``h_t = W x_t`` of a set's points. All-zero points get 0.

    Args:
        H: ``(n_instances, d_hidden, n_points)``: one instance's points' hidden vectors per row.

    Returns:
        ``(n_instances, n_points)``.
    """
    return dimensionality(H, threshold=EPS)


def interference(W: Tensor) -> Tensor:
    """Superposition of each feature with the others, ``Σ_{g≠f} (Ŵ_f · W_g)²``: ``(n_instances, n_features)``."""
    norms, denominator = _overlaps(W)
    return (denominator - norms.square()).clamp_min(0.0)


def represented(W: Tensor, threshold: float = 0.5) -> Tensor:
    """Whether each feature is represented, ``‖W_f‖ > threshold``: bool ``(n_instances, n_features)``."""
    return feature_norms(W) > threshold


def canonicalize_2d(W: Tensor, threshold: float = 0.5, tolerance: float = 1e-4) -> Tensor:
    """Rotate and flip 2-D solutions to a common orientation, so instances can be compared.

    The first represented feature (lowest index; the longest feature when none is represented) is
    rotated onto the +x axis; then the solution is mirrored, if needed, so that the first feature
    off that axis points upwards. Rotations and reflections of a solution therefore all map to the
    same canonical form.

    Args:
        W: ``(n_instances, 2, n_features)``.
        threshold: Norm above which a feature counts as represented.
        tolerance: Relative height below which a feature counts as on the anchor's axis.

    Returns:
        The canonical ``W``, same shape.
    """
    _check(W)
    if W.shape[1] != 2:
        raise ValueError(f"canonicalize_2d needs d_hidden = 2, got {W.shape[1]}")
    norms = feature_norms(W)  # (n_instances, n_features)
    rep = norms > threshold
    # argmax returns the first maximal index: the lowest-index represented feature.
    anchor = torch.where(rep.any(dim=1), rep.to(W.dtype).argmax(dim=1), norms.argmax(dim=1))  # (n_instances,)
    a = W.gather(2, anchor.view(-1, 1, 1).expand(-1, 2, 1)).squeeze(2)  # (n_instances, 2)
    theta = torch.atan2(a[:, 1], a[:, 0])
    cos, sin = torch.cos(theta), torch.sin(theta)
    # Rotation by -theta: [[cos, sin], [-sin, cos]].
    R = torch.stack([torch.stack([cos, sin], dim=-1), torch.stack([-sin, cos], dim=-1)], dim=-2)  # (n_instances, 2, 2)
    W = torch.bmm(R, W)
    y = W[:, 1, :]  # (n_instances, n_features)
    off_axis = (y.abs() > tolerance * norms.clamp_min(EPS)) & torch.where(rep.any(dim=1, keepdim=True), rep, norms > 0)
    first = off_axis.to(W.dtype).argmax(dim=1, keepdim=True)
    sign = torch.where(off_axis.any(dim=1), torch.sign(y.gather(1, first).squeeze(1)), torch.ones_like(theta))
    return torch.stack([W[:, 0, :], W[:, 1, :] * sign.unsqueeze(1)], dim=1)


@dataclass(frozen=True)
class Polygon:
    """The figure the represented features of one 2-D instance form.

    Attributes:
        n_directions: Distinct directions among the represented features.
        name: ``polygon_name(n_directions)``: "none", "monogon", "digon" (an antipodal pair),
            "triangle", "square", …; two directions that are not antipodal are an "orthogonal pair"
            (each feature its own dimension) or "two directions".
        regular: Directions equally spaced around the circle and of equal length (never for < 2).
        angles: The directions, in degrees in ``[0, 360)``, sorted.
        norms: The mean feature norm of each direction.
        features: The represented features of each direction.
    """

    n_directions: int
    name: str
    regular: bool
    angles: tuple[float, ...] = field(default=())
    norms: tuple[float, ...] = field(default=())
    features: tuple[tuple[int, ...], ...] = field(default=())


def _classify_one(w: Tensor, threshold: float, angle_tolerance: float, norm_tolerance: float) -> Polygon:
    norms = w.norm(dim=0)  # (n_features,)
    keep = torch.nonzero(norms > threshold).flatten().tolist()
    if not keep:
        return Polygon(0, polygon_name(0), False)
    angle = torch.rad2deg(torch.atan2(w[1], w[0])).remainder(360.0)
    order = sorted(keep, key=lambda f: float(angle[f]))
    angles = [float(angle[f]) for f in order]
    gaps = [(angles[(k + 1) % len(angles)] - angles[k]) % 360.0 for k in range(len(angles))]
    if len(angles) == 1:
        gaps = [360.0]
    # A new direction starts after every gap wider than the tolerance (the circle wraps around).
    starts = [(k + 1) % len(angles) for k, gap in enumerate(gaps) if gap > angle_tolerance]
    if not starts:  # directions denser than the tolerance all the way round
        starts = list(range(len(angles)))
    starts.sort()
    groups = []
    for s, start in enumerate(starts):
        end = starts[(s + 1) % len(starts)]
        members, k = [], start
        while True:
            members.append(order[k])
            k = (k + 1) % len(order)
            if k == end:
                break
        groups.append(members)
    directions = []
    for members in groups:
        v = w[:, members] / norms[members]  # unit vectors of the group
        mean = v.sum(dim=1)
        directions.append(
            (
                float(torch.rad2deg(torch.atan2(mean[1], mean[0])).remainder(360.0)),
                float(norms[members].mean()),
                tuple(sorted(members)),
            )
        )
    directions.sort()
    n = len(directions)
    dir_angles = [d[0] for d in directions]
    dir_norms = [d[1] for d in directions]
    regular = False
    name = polygon_name(n)
    if n >= 2:
        spacing = [(dir_angles[(k + 1) % n] - dir_angles[k]) % 360.0 for k in range(n)]
        even = all(abs(s - 360.0 / n) <= angle_tolerance for s in spacing)
        regular = even and (max(dir_norms) - min(dir_norms)) <= norm_tolerance * max(dir_norms)
    if n == 2 and not even:
        # A digon is an antipodal pair; two features at 90° have a dimension each.
        gap = min(spacing)
        name = "orthogonal pair" if abs(gap - 90.0) <= angle_tolerance else "two directions"
    return Polygon(
        n_directions=n,
        name=name,
        regular=regular,
        angles=tuple(round(a, 3) for a in dir_angles),
        norms=tuple(round(x, 5) for x in dir_norms),
        features=tuple(d[2] for d in directions),
    )


def classify_2d(
    W: Tensor, threshold: float = 0.5, angle_tolerance: float = 10.0, norm_tolerance: float = 0.15
) -> list[Polygon]:
    """Classify the geometry of every 2-D instance: distinct directions, polygon name, regularity.

    Represented features whose directions lie within ``angle_tolerance`` degrees of each other share
    a direction (the "balance" features that overlap a pentagon's vertices, for example).

    Args:
        W: ``(n_instances, 2, n_features)``.
        threshold: Norm above which a feature counts as represented.
        angle_tolerance: Degrees within which two features share a direction, and within which the
            spacing of a regular polygon must match ``360 / n``.
        norm_tolerance: Relative spread of direction norms a regular polygon allows.

    Returns:
        One :class:`Polygon` per instance.
    """
    _check(W)
    if W.shape[1] != 2:
        raise ValueError(f"classify_2d needs d_hidden = 2, got {W.shape[1]}")
    W = W.detach().to("cpu", torch.float64)
    # Off the hot path (reports and figures): a loop over instances keeps the clustering readable.
    return [_classify_one(w, threshold, angle_tolerance, norm_tolerance) for w in W]


def count_directions(W: Tensor, threshold: float = 0.5, angle_tolerance: float = 10.0) -> list[int]:
    """Distinct directions among the represented features of each instance, in any ``d_hidden``.

    Features whose unit vectors are within ``angle_tolerance`` degrees share a direction (greedy,
    in feature order).
    """
    _check(W)
    W = W.detach().to("cpu", torch.float64)
    norms = W.norm(dim=1)  # (n_instances, n_features)
    unit = W / norms.clamp_min(EPS).unsqueeze(1)
    cosine = einops.einsum(unit, unit, "i h f, i h g -> i f g")  # (n_instances, n_features, n_features)
    limit = math.cos(math.radians(angle_tolerance))
    counts = []
    for i in range(W.shape[0]):
        heads: list[int] = []
        for f in torch.nonzero(norms[i] > threshold).flatten().tolist():
            if not any(float(cosine[i, f, g]) >= limit for g in heads):
                heads.append(f)
        counts.append(len(heads))
    return counts


#: How close a dimensionality must be to its nearest fraction to be labelled with it: learned
#: solutions sit within about 0.01 of theirs; the features of feature_geometry.yaml's sparse
#: instances with D between 0.13 and 0.21 are near none (1/4 = 0.25, 2/7 = 0.29 the closest).
FRACTION_TOLERANCE = 0.02


def nearest_fraction(D: Tensor | float | Sequence, fractions: Sequence[Fraction] = FRACTIONS, tolerance: float = FRACTION_TOLERANCE):
    """The dimensionality fraction each value sits at ("1", "3/4", "2/3", "1/2", "2/5", …, "0").

    A value farther than ``tolerance`` from every fraction is near none: its label is the value
    itself, to two decimals (e.g. "0.17"), never a fraction it does not sit at.

    Args:
        D: Dimensionalities: a number, or a tensor or nested list of any shape.
        fractions: The candidate fractions.
        tolerance: The largest distance to a fraction that still gets its label.

    Returns:
        A label, or nested lists of labels in the shape of ``D``.
    """
    values = [float(x) for x in fractions]
    labels = [str(x) for x in fractions]

    def label(x: float) -> str:
        k = min(range(len(values)), key=lambda k: abs(values[k] - x))
        return labels[k] if abs(values[k] - x) <= tolerance else f"{x:.2f}"

    def walk(x):
        return [walk(y) for y in x] if isinstance(x, list | tuple) else label(float(x))

    if isinstance(D, Tensor):
        D = D.detach().cpu().tolist()
    return walk(D) if isinstance(D, list | tuple) else label(float(D))
