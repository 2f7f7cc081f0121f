"""Instances' own numbers of points, packed in chunks: what a model trains on with finite training sets.

Each row of :class:`PackedSets` is a chunk of :data:`CHUNK` points of one instance's set; an instance
owns consecutive rows, and the last one is padded. A model computes the loss of every row with that
instance's tensors and averages each instance's rows with the point weights ``1 / T_i`` (0 on padding),
so the cost is the points that exist and each instance's loss is the mean over its own points.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

#: Points per row: small enough that an instance pads at most CHUNK - 1 points.
CHUNK = 64


@dataclass
class SparsePoints:
    """The nonzero entries of packed points, for models that skip the zeros (the data are sparse).

    Attributes:
        rows, points, features: ``(nnz,)`` each: where each nonzero entry is (row, point in the chunk, feature).
        values: ``(nnz,)``.
        padding_rows, padding_points: ``(n_padded,)``: the chunks' padded points.
    """

    rows: Tensor
    points: Tensor
    features: Tensor
    values: Tensor
    padding_rows: Tensor
    padding_points: Tensor


@dataclass
class PackedSets:
    """Every instance's points, packed in chunks.

    Attributes:
        x: ``(n_rows, CHUNK, n_features)``: the points, batch axis contiguous (``x.transpose(1, 2)`` is).
        instances: ``(n_rows,)``: the instance of each row.
        weights: ``(n_rows, CHUNK)``: ``1 / T_i`` on instance ``i``'s points, 0 on padding.
        sizes: ``(n_instances,)``: ``T_i``.
        first_row: ``(n_instances,)``: the row of each instance's first chunk.
    """

    x: Tensor
    instances: Tensor
    weights: Tensor
    sizes: Tensor
    first_row: Tensor
    _sparse: SparsePoints | None = field(default=None, repr=False, compare=False)

    @property
    def n_instances(self) -> int:
        return len(self.sizes)

    def points(self, instance: int) -> Tensor:
        """Instance ``instance``'s points, ``(T_i, n_features)``."""
        first, size = int(self.first_row[instance]), int(self.sizes[instance])
        rows = -(-size // CHUNK)
        return self.x[first : first + rows].reshape(-1, self.x.shape[2])[:size]

    def point_index(self, instance_points: Tensor) -> Tensor:
        """Indices into ``x.reshape(-1, n_features)`` of points ``(n_instances, k)`` given by their index in each set."""
        return self.first_row.to(instance_points.device).unsqueeze(1) * CHUNK + instance_points  # (n_instances, k)

    def row_weights(self) -> Tensor:
        """``(n_rows,)``: each row's point weight ``1 / T_i`` (its padding aside)."""
        return 1.0 / self.sizes.to(self.x.device, self.x.dtype)[self.instances]

    def sparse(self) -> SparsePoints:
        """The nonzero entries and the padding (found once)."""
        if self._sparse is None:
            in_a_set = (self.weights != 0).unsqueeze(2)  # (n_rows, CHUNK, 1): padding holds no point
            rows, points, features = ((self.x != 0) & in_a_set).nonzero(as_tuple=True)
            padding_rows, padding_points = (self.weights == 0).nonzero(as_tuple=True)
            self._sparse = SparsePoints(rows, points, features, self.x[rows, points, features], padding_rows, padding_points)
        return self._sparse

    def to(self, device: torch.device) -> PackedSets:
        return PackedSets(*(t.to(device) for t in (self.x, self.instances, self.weights, self.sizes, self.first_row)))
