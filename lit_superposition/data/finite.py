"""Finite training sets (Anthropic 2023, "Superposition, Memorization, and Double Descent"; ARENA 1.3.1).

Each instance trains on a fixed set of ``T_i`` points drawn once from the stream's law (sparsity,
importance, sets, signed values), optionally each scaled to unit norm. The sets are packed in
chunks of :data:`CHUNK` points, one row per chunk, so a full-batch step costs the points that
exist, ``Σ T_i``, not ``n_instances × max T``; every row knows its instance and every point its
weight ``1 / T_i`` (0 on a chunk's padding), so each instance's loss is the mean over its own
points. An instance's set depends only on the data seed, its own index (in ``independent`` data
mode; in ``shared`` mode every instance reads one sequence, so sets are nested prefixes) and its
own ``T_i``: never on the other instances.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import Tensor

from lit_superposition.data.specs import Spec, check_repeats
from lit_superposition.errors import ConfigError
from lit_superposition.models.packed import CHUNK, PackedSets

#: Step keys of the drawn sets: far beyond any training step and the report's evaluation keys (10**9).
TRAINING_SET_KEY = 2 * 10**9
TEST_SET_KEY = 3 * 10**9

PointScaling = Literal["none", "unit_norm"]
DatasetSizeLike = int | list[int] | Spec


def resolve_dataset_size(spec: DatasetSizeLike | None, n_instances: int, repeats: int = 1) -> list[int] | None:
    """Points per instance from ``data.dataset_size``: one number, one per setting, or a spec over the settings.

    A spec (e.g. ``LogSweep(start=3, end=2000)``) gives one value per setting, rounded to a whole
    number; each setting's size is repeated ``repeats`` times, as every per-instance setting is.

    Raises:
        ConfigError: one line, for a size that is not a whole number >= 1 or a list of the wrong length.
    """
    if spec is None:
        return None
    n_settings = check_repeats(repeats, n_instances)
    if isinstance(spec, Spec):
        values = [float(v) for v in spec.values(n_settings, 1).reshape(-1).expand(n_settings).tolist()]
        values = [round(v) for v in values]
    elif isinstance(spec, (list, tuple)):
        if len(spec) not in (n_settings, n_instances) or (len(spec) == n_instances != n_settings):
            rows = "n_instances" if repeats == 1 else "n_instances // repeats"
            raise ConfigError(f"dataset_size has {len(spec)} values, expected one per setting ({rows} = {n_settings})")
        values = list(spec)
    else:
        values = [spec] * n_settings
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"dataset_size must be a whole number of points >= 1 (or null: the endless stream), got {value!r}")
    return [value for value in values for _ in range(repeats)]


def check_point_scaling(scale_points: str) -> None:
    if scale_points not in ("none", "unit_norm"):
        raise ConfigError(f"scale_points must be 'none' or 'unit_norm', got {scale_points!r}")


def scale_to_unit_norm(x: Tensor) -> Tensor:
    """Each point ``(…, n_features)`` divided by its norm; all-zero points stay zero."""
    norms = x.norm(dim=-1, keepdim=True)
    return torch.where(norms > 0, x / norms.clamp_min(torch.finfo(x.dtype).tiny), x)


def draw_set(draw: Callable[[int, int, int], Tensor], instance: int, n_points: int, key: int, scale_points: str) -> Tensor:
    """One instance's ``n_points`` points: ``draw(instance, n_points, key)`` gives ``(n_points, n_features)``."""
    x = draw(instance, n_points, key)
    return scale_to_unit_norm(x) if scale_points == "unit_norm" else x


def pack(sets: Sequence[Tensor], n_features: int) -> PackedSets:
    """Pack each instance's ``(T_i, n_features)`` points into rows of :data:`CHUNK` points."""
    rows, instances, weights, first_row = [], [], [], []
    for instance, points in enumerate(sets):
        size = points.shape[0]
        n_rows = -(-size // CHUNK)
        padded = points.new_zeros(n_rows * CHUNK, n_features)
        padded[:size] = points
        weight = points.new_zeros(n_rows * CHUNK)
        weight[:size] = 1.0 / size
        first_row.append(sum(len(r) for r in rows))
        rows.append(padded.reshape(n_rows, CHUNK, n_features))
        weights.append(weight.reshape(n_rows, CHUNK))
        instances.append(torch.full((n_rows,), instance, dtype=torch.long))
    x = torch.cat(rows)  # (n_rows, CHUNK, n_features)
    # Feature-major in memory, batch axis contiguous: the layout the model's products are fastest in.
    x = x.transpose(1, 2).contiguous().transpose(1, 2)
    sizes = torch.tensor([s.shape[0] for s in sets], dtype=torch.long)
    return PackedSets(x, torch.cat(instances), torch.cat(weights), sizes, torch.tensor(first_row, dtype=torch.long))
