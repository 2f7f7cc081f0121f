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

The magnitude of an active feature is ``(high - u) / (high - low)``, uniform on (0, 1] and never 0.
With signed values an active feature is instead ``x = A - u·B``, the affine map of :func:`signed_map`
taking the interval its magnitude is read from onto [-1, 1] (``x`` positive in the interval's first
half; clamped to [-1, 1] against rounding at the ends), never 0; the plain stream uses the same map
on ``[0, p)``. No extra random numbers are drawn: a batch with sets costs two gathers more than one
without.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lit_superposition.errors import ConfigError


# Tries of the zero-avoiding nudge of ``A`` (a handful suffice; see :func:`signed_map`).
MAX_NUDGES = 64


def _drawable_near(center: Tensor, device: torch.device) -> Tensor:
    """Uniforms ``torch.rand`` can draw on ``device`` around ``center``: ``(*center.shape, 32)`` float32.

    The CPU draws multiples of 2^-24; CUDA's curand draws need not be, so off the CPU the float32
    neighbours of ``center`` join the grid values. 32 entries (repeated) so the check below also runs
    the vectorized inner loop of the CPU kernels, not only its scalar tail.
    """
    grid = (center * 2.0**24).round().unsqueeze(-1) + torch.arange(-4, 5, device=device)  # (..., 9)
    candidates = [(grid.clamp(0, 2.0**24 - 1) * 2.0**-24).float()]
    if device.type != "cpu":
        up = down = center.float()
        for _ in range(8):
            up, down = torch.nextafter(up, torch.ones_like(up)), torch.nextafter(down, torch.zeros_like(down))
            candidates += [up.unsqueeze(-1), down.unsqueeze(-1)]
        candidates.append(center.float().unsqueeze(-1))
    u = torch.cat(candidates, dim=-1)  # (..., k)
    return u.repeat_interleave(-(-32 // u.shape[-1]), dim=-1)[..., :32]


def _gives_zero(start: Tensor, slope: Tensor, u: Tensor) -> Tensor:
    """Whether ``A - u·B`` is exactly 0 for some candidate ``u``, as the device computes it: ``(...)`` bool.

    The stream's op (``torch.addcmul(A, u, -B)``) is run in the layouts its kernels take (inner
    loop vectorized with ``A`` and ``B`` broadcast or not, and scalar), and also emulated with one
    rounding (a fused multiply-add: 0 exactly when ``u·B == A``, exact in float64).
    """
    a, neg_b = start.unsqueeze(-1), slope.neg().unsqueeze(-1)  # (..., 1)
    strided = torch.stack([u, u], dim=-1)[..., 0]  # same values, inner stride 2: the scalar loop
    results = [
        torch.addcmul(a, u, neg_b),
        torch.addcmul(a, strided, neg_b),
        torch.addcmul(a.expand_as(u).contiguous(), u, neg_b.expand_as(u).contiguous()),
    ]
    zero = torch.stack(results).eq(0).any(dim=0).any(dim=-1)
    return zero | (u.double() * slope.double().unsqueeze(-1) == start.double().unsqueeze(-1)).any(dim=-1)


def signed_map(low: Tensor, high: Tensor, device: torch.device | str) -> tuple[Tensor, Tensor, bool]:
    """Constants of the signed map ``x = A - u·B`` of uniforms ``u`` in ``[low, high)``, one pair per entry.

    ``A`` and ``B`` take ``[low, high)`` onto [-1, 1] up to rounding: ``A ≈ (high + low) / (high -
    low)``, ``B = (A + 1) / high`` (whatever ``A``, ``u = high`` goes to -1), ``x > 0`` in the
    interval's first half: the sign and the magnitude come from the same uniform. The plain
    stream's interval is ``[0, p)``: ``A ≈ 1``, ``B ≈ 2/p``.

    No drawable ``u`` gives ``x = 0``: that can only happen near ``u = A / B``, so ``A`` starts at its
    float32 value and moves down one ulp (``B`` recomputed) wherever a uniform ``torch.rand`` can
    draw there gives exactly 0 as ``device`` computes ``torch.addcmul(A, u, -B)`` (checked in all the
    kernel's loop layouts, and with a fused multiply-add emulated), for all entries at once. It
    takes a nudge or two where it takes any (measured on the CPU: p a power of 2, where ``u = p/2``
    gives ``1 - (p/2)(2/p) = 0`` exactly), so the interval's edge moves by a 2^-24 grid point at most.

    Args:
        low: Interval starts, float32, any shape.
        high: Interval ends, the same shape; ``high > 0``. Empty intervals (``high <= low``) get the
            harmless ``A = 1, B = 2``: they are never active.
        device: Where the stream runs; the check runs there.

    Returns:
        ``(A, B, exact)``: float32 tensors of ``low``'s shape on ``device``, and whether every zero
        was ruled out within :data:`MAX_NUDGES` tries (``False`` has not been seen: the callers then
        replace exact zeros by the smallest positive float, two more passes).
    """
    device = torch.device(device)
    low, high = low.to(device, torch.float64), high.to(device, torch.float64)
    empty = high <= low
    start = torch.where(empty, 1.0, (high + low) / (high - low).masked_fill(empty, 1.0)).float()
    high = high.masked_fill(empty, 1.0)
    flat_start, flat_high = start.reshape(-1), high.reshape(-1)
    exact = True
    for chunk in torch.arange(flat_start.numel(), device=device).split(1 << 14):
        a, h = flat_start[chunk], flat_high[chunk]
        for tries in range(MAX_NUDGES + 1):
            b = ((a.double() + 1) / h).float()
            zero = _gives_zero(a, b, _drawable_near(a.double() / b.double(), device))
            if not zero.any():
                break
            if tries == MAX_NUDGES:
                exact = False
                break
            a = torch.where(zero, torch.nextafter(a, torch.full_like(a, -2.0)), a)
        flat_start[chunk] = a
    slope = ((start.double() + 1) / high).float()
    return start, slope, exact


class FeatureSets:
    """Validated correlated and anticorrelated sets with their precomputed index maps and intervals.

    Args:
        feature_probability: The resolved ``(n_instances, n_features)`` probabilities.
        correlated_sets: Feature index sets that are active together (equal ``p`` within a set).
        anticorrelated_sets: Feature index sets with at most one feature active (``Σ p <= 1``).

    Example::

        sets = FeatureSets(torch.full((2, 4), 0.1), [[0, 1]], [[2, 3]])
        x = sets.to("cpu").sample(torch.rand(1, 1024, 4))  # (2, 1024, 4)
        signed = sets.to("cpu", signed=True).sample(torch.rand(1, 1024, 4), signed=True)
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
        magnitude_low, magnitude_top = low.clone(), high.clone()  # (n_instances, n_features)
        inverse_width = (high - low).reciprocal()  # (n_instances, n_features)
        for features in self.correlated_sets:
            # The first member's magnitude comes from the shared uniform; the others use their own
            # uniform, 1 - u on (0, 1], independent of whether the set is active.
            magnitude_low[:, features[1:]] = 0.0
            magnitude_top[:, features[1:]] = 1.0
            inverse_width[:, features[1:]] = 1.0
        self.source, self.magnitude_source = source, magnitude_source
        self.low, self.high = low.unsqueeze(1), high.unsqueeze(1)  # (n_instances, 1, n_features)
        self.magnitude_low = magnitude_low.unsqueeze(1)  # (n_instances, 1, n_features)
        self.magnitude_top, self.inverse_width = magnitude_top.unsqueeze(1), inverse_width.unsqueeze(1)
        self.signed_start = self.signed_slope = None  # set by to(device, signed=True)
        self.signed_exact = True

    def __bool__(self) -> bool:
        return bool(self.correlated_sets or self.anticorrelated_sets)

    def to(self, device: torch.device | str, signed: bool = False) -> FeatureSets:
        """A copy with every tensor on ``device`` (done once per device, never per step).

        ``signed``: also compute the constants of the signed map (:func:`signed_map`, checked on
        ``device``) that :meth:`sample` needs for ``signed=True``.
        """
        moved = object.__new__(FeatureSets)
        moved.correlated_sets, moved.anticorrelated_sets = self.correlated_sets, self.anticorrelated_sets
        for name in ("source", "magnitude_source", "low", "high", "magnitude_low", "magnitude_top", "inverse_width"):
            setattr(moved, name, getattr(self, name).to(device))
        moved.signed_start = moved.signed_slope = None
        moved.signed_exact = True
        if signed:
            start, slope, moved.signed_exact = signed_map(self.magnitude_low, self.magnitude_top, device)
            moved.signed_start, moved.signed_slope = start, slope.neg()  # (n_instances, 1, n_features): A, -B
        return moved

    def sample(self, u: Tensor, signed: bool = False) -> Tensor:
        """Turn uniforms into features.

        Args:
            u: ``(n_draws, batch, n_features)`` uniforms on [0, 1); ``n_draws`` is 1 (shared) or
                ``n_instances`` (independent).
            signed: Signed values on [-1, 1] (never 0 where active) instead of magnitudes on (0, 1]:
                ``x = A - u·B`` (:func:`signed_map`, clamped to [-1, 1] against rounding at the
                interval's ends); needs the copy made by ``to(device, signed=True)``.

        Returns:
            ``(n_instances, batch, n_features)`` features.
        """
        g = u.index_select(-1, self.source)  # (n_draws, batch, n_features)
        m = u.index_select(-1, self.magnitude_source) if self.correlated_sets else g
        active = (g >= self.low) & (g < self.high)  # (n_instances, batch, n_features)
        if not signed:
            return torch.where(active, (self.magnitude_top - m) * self.inverse_width, 0.0)  # (n_instances, batch, n_features)
        if self.signed_start is None:
            raise RuntimeError("FeatureSets.sample(signed=True) needs the copy made by to(device, signed=True)")
        x = torch.addcmul(self.signed_start, m, self.signed_slope).clamp_(-1.0, 1.0)  # (n_instances, batch, n_features)
        if not self.signed_exact:
            x.masked_fill_(x == 0, torch.finfo(x.dtype).tiny)
        return torch.where(active, x, 0.0)
