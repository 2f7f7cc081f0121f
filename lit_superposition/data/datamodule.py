"""The sparse feature stream: the loader yields step keys; the batch is drawn on the training device."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from torch import Tensor
from typing_extensions import override

from lit_superposition.data.finite import (
    TEST_SET_KEY,
    TRAINING_SET_KEY,
    DatasetSizeLike,
    PackedSets,
    PointScaling,
    check_point_scaling,
    draw_set,
    pack,
    resolve_dataset_size,
    scale_to_unit_norm,
)
from lit_superposition.data.grid import PhaseGrid
from lit_superposition.data.sets import FeatureSets, signed_map
from lit_superposition.data.specs import SpecLike, check_repeats, resolve_feature_probability
from lit_superposition.errors import ConfigError

InstanceData = Literal["shared", "independent"]
Values = Literal["uniform", "signed"]
Target = Literal["identity", "abs"]

_MASK64 = (1 << 64) - 1

#: Step keys from here on are evaluation draws (the end-of-fit report's): fresh points of the law,
#: also in a run with finite training sets. Training never reaches them.
EVALUATION_STEP = 10**9

#: Instances per draw in independent mode: block ``k`` (instances ``64k`` to ``64k + 63``) has its own
#: generator seed, so a rank that trains a slice of the instances (instance sharding) draws only the
#: blocks it needs, and a run of up to 64 instances draws exactly as before blocks existed.
DRAW_BLOCK = 64


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def step_seed(data_seed: int, rank: int, step: int) -> int:
    """The generator seed of one batch: a well-mixed function of ``(data_seed, rank, step)``.

    Batch ``k`` is a pure function of these three numbers, which gives exact resume and distinct
    data per DDP rank without ever storing or copying data.
    """
    return _splitmix64(_splitmix64(_splitmix64(data_seed) ^ rank) ^ step) >> 1  # manual_seed takes < 2**63


def block_seed(seed: int, block: int) -> int:
    """The seed of independent-mode draw block ``block`` of the batch whose :func:`step_seed` is ``seed``."""
    return seed if block == 0 else _splitmix64(seed ^ _splitmix64(block)) >> 1


class StepKeys:
    """An endless stream of integer keys: one per Lightning call."""

    def __iter__(self) -> Iterator[int]:
        return itertools.count()


class SparseFeatureDataModule(pl.LightningDataModule):
    """Sparse features: feature ``f`` of instance ``i`` is 0 with probability ``1 - p[i, f]``, else uniform on (0, 1].

    With ``values: signed`` an active feature is instead uniform on [-1, 1] (never 0): ``x = A - u·B``
    of the same one uniform ``u``, at the same cost (see :meth:`make_batch`); with ``target: abs``
    the model is asked for ``|x|`` (computation in superposition, ARENA 1.3.1).

    Features not in a set are independent. In a correlated set one draw decides whether all its
    features are active together (magnitudes independent); in an anticorrelated set at most one
    feature is active. Either way each feature keeps its marginal probability ``p[i, f]``.

    Args:
        n_instances: Models trained side by side, all repeats together (linked to the model by the CLI).
        n_features: Features per instance (linked to the model by the CLI).
        feature_probability: ``p``: a scalar, per-feature list, matrix or spec (see ``lit_superposition.data.specs``).
        batch_size: Samples per step and instance.
        data_seed: Seeds the stream; batch ``k`` depends only on ``(data_seed, global_rank, k)``.
        instance_data: ``"shared"``: one uniform draw per step serves every instance, each with its
            own threshold, so instances with equal ``p`` see identical data. ``"independent"``: every
            instance draws its own batch, as in ARENA.
        correlated_sets: Disjoint sets of feature indices (each of size >= 2) that are active
            together; features in one set must have equal ``p`` in each instance.
        anticorrelated_sets: Disjoint sets of feature indices of which at most one is active: the set
            is active with probability ``Σ p`` (``k·p`` for ``k`` features of equal ``p``), then one
            feature is chosen with probability ``p_f / Σ p``; ``Σ p <= 1`` is required.
        repeats: Instances per setting (linked to the model): instance ``i`` is setting
            ``i // repeats``, repeat ``i % repeats``; per-instance specs give one row per setting.
        values: What an active feature's value is: ``"uniform"`` on (0, 1], or ``"signed"``,
            uniform on [-1, 1] without 0, from the same one uniform per feature (see :meth:`make_batch`).
        target: What the model's output should be (linked to the model): ``"identity"``, ``x``
            itself, or ``"abs"``, ``|x|``. ``abs`` needs ``values: signed``; with uniform values it is
            an error, not a warning: ``|x| = x`` there, so the run would silently train plain
            reconstruction under a name that says computation, and every measurement of it would
            answer a question nobody asked.
        dataset_size: Finite data (Anthropic 2023): each instance trains on a fixed set of this many
            points, drawn once from the same law (:mod:`~lit_superposition.data.finite`): one
            number, one per setting, or a spec over the settings (e.g. ``LogSweep``, rounded); null
            (default) is the endless stream.
        full_batch: With ``dataset_size``: every step trains on each instance's whole set (the
            paper's); false: on ``batch_size`` points drawn from it each step.
        scale_points: ``"unit_norm"`` scales every point to norm 1 (all-zero points stay zero), as the
            finite-data paper and ARENA do; ``"none"`` (default) keeps them.
        test_size: With ``dataset_size``: points per instance of the held-out test set (its own seed).
        exactly_one_active: Chen et al.'s (2023) law: exactly one feature is active in every point,
            chosen uniformly, its value drawn as usual (``feature_probability`` is then ``1/n_features``).
        grid: A phase diagram's grid of settings (:class:`~lit_superposition.data.grid.PhaseGrid`):
            one feature's importance by a feature's (or every feature's) probability, ``repeats``
            instances per point; it sets the probability per point over ``feature_probability``,
            and the CLI links it to the model, which sets the importance.

    Example::

        data = SparseFeatureDataModule(n_instances=8, n_features=5, feature_probability=0.05)
        x = data.make_batch(step=0)  # (n_instances, batch_size, n_features)
        paired = SparseFeatureDataModule(4, 4, 0.05, correlated_sets=[[0, 1]], anticorrelated_sets=[[2, 3]])
        signed = SparseFeatureDataModule(7, 20, 0.1, values="signed", target="abs")
    """

    def __init__(
        self,
        n_instances: int,
        n_features: int,
        feature_probability: SpecLike = 0.05,
        batch_size: int = 1024,
        data_seed: int = 0,
        instance_data: InstanceData = "shared",
        correlated_sets: list[list[int]] | None = None,
        anticorrelated_sets: list[list[int]] | None = None,
        repeats: int = 1,
        values: Values = "uniform",
        target: Target = "identity",
        grid: PhaseGrid | None = None,
        exactly_one_active: bool = False,
        dataset_size: DatasetSizeLike | None = None,
        full_batch: bool = True,
        scale_points: PointScaling = "none",
        test_size: int = 1024,
    ) -> None:
        super().__init__()
        for name, value in (("n_instances", n_instances), ("n_features", n_features), ("batch_size", batch_size),
                            ("test_size", test_size)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if instance_data not in ("shared", "independent"):
            raise ConfigError(f"instance_data must be 'shared' or 'independent', got {instance_data!r}")
        if values not in ("uniform", "signed"):
            raise ConfigError(f"values must be 'uniform' or 'signed', got {values!r}")
        if target not in ("identity", "abs"):
            raise ConfigError(f"target must be 'identity' or 'abs', got {target!r}")
        if target == "abs" and values == "uniform":
            raise ConfigError(
                "target 'abs' needs values 'signed', got values 'uniform': uniform values are positive,"
                " so |x| = x and the run would train plain reconstruction (use target 'identity')"
            )
        check_repeats(repeats, n_instances)
        if exactly_one_active:
            if anticorrelated_sets or correlated_sets or grid is not None:
                raise ConfigError("exactly_one_active makes every feature one anticorrelated set: give no other sets and no grid")
            # One anticorrelated set of every feature at p = 1/n: the set is always active, one feature each time.
            feature_probability, anticorrelated_sets = 1.0 / n_features, [list(range(n_features))]
        self.exactly_one_active = exactly_one_active
        check_point_scaling(scale_points)
        self.dataset_size = resolve_dataset_size(dataset_size, n_instances, repeats)  # T_i per instance, or None
        self.full_batch, self.scale_points, self.test_size = full_batch, scale_points, test_size
        self._sets: dict[torch.device, PackedSets] = {}
        self._test_sets: dict[torch.device, Tensor] = {}
        self._points: dict[torch.device, Tensor] = {}
        self.n_instances, self.n_features, self.repeats = n_instances, n_features, repeats
        self.batch_size, self.data_seed, self.instance_data = batch_size, data_seed, instance_data
        self.values, self.target = values, target
        self.feature_probability = resolve_feature_probability(feature_probability, n_instances, n_features, repeats)
        self.grid = grid
        if grid is not None:
            grid.check(n_instances, n_features, repeats)
            self.feature_probability = grid.apply_probability(self.feature_probability, repeats)
        self.feature_sets = FeatureSets(
            self.feature_probability, correlated_sets or [], anticorrelated_sets or []
        )
        self._on_device: dict[tuple[torch.device, int, int], tuple[Any, ...]] = {}

    def _device_state(self, device: torch.device, instances: slice | None = None) -> tuple[Any, ...]:
        """``(start, scale, exact, sets, generator)`` on ``device`` for ``instances`` (default: all), made
        once per device and slice: the plain stream is ``addcmul(start, u, scale)``, ``(1, -1/p)`` for
        uniform values and ``(A, -B)`` of :func:`~lit_superposition.data.sets.signed_map` for signed ones."""
        rows = slice(0, self.n_instances) if instances is None else instances
        key = (device, rows.start, rows.stop)
        state = self._on_device.get(key)
        if state is None:
            canonical = (torch.empty(0, device=device).device, rows.start, rows.stop)  # "cuda" and "cuda:0" share one state
            state = self._on_device.get(canonical)
            if state is None:
                state = self._make_device_state(canonical[0], rows)
            self._on_device[key] = self._on_device[canonical] = state
        return state

    def _make_device_state(self, device: torch.device, rows: slice) -> tuple[Any, ...]:
        signed = self.values == "signed"
        p = self.feature_probability[rows]  # (n_rows, n_features); every constant is per instance and feature
        sets = None
        if self.feature_sets:
            sets = self.feature_sets if rows == slice(0, self.n_instances) else FeatureSets(
                p, self.feature_sets.correlated_sets, self.feature_sets.anticorrelated_sets
            )
            sets = sets.to(device, signed=signed)
        p = p.to(device).unsqueeze(2)  # (n_rows, n_features, 1)
        start, scale, exact = torch.ones((), device=device), -p.reciprocal(), True
        if signed and sets is None:
            start, slope, exact = signed_map(torch.zeros_like(p), p, device)  # (n_rows, n_features, 1)
            scale = slope.neg()
        return start, scale, exact, sets, torch.Generator(device=device)

    def make_batch(
        self, step: int, rank: int = 0, device: torch.device | str = "cpu", instances: slice | None = None
    ) -> Tensor:
        """Draw batch ``step`` of rank ``rank`` on ``device``, for all instances or the slice ``instances``.

        A slice's batch is bitwise the same rows of the whole batch: shared mode draws the one shared
        uniform, independent mode only the draw blocks (:data:`DRAW_BLOCK` instances each) the slice
        overlaps. Instance sharding relies on this.

        One uniform draw per feature gives both the mask and the value, which halves the random
        numbers the reference loop draws, and an active feature is never exactly 0, so activity is
        observable as ``x != 0``. ``values: uniform``: ``x = max(1 - u / p, 0)``, 0 when ``u >= p`` and,
        given ``u < p``, uniform on (0, 1]. ``values: signed``: ``x = A - u·B`` where that is above
        -1, else 0, with ``A ≈ 1``, ``B ≈ 2/p`` per instance and feature
        (:func:`~lit_superposition.data.sets.signed_map`): ``u`` in [0, p) goes onto (-1, 1], so an
        active feature is uniform on [-1, 1], positive when ``u < p/2``; ``A`` is nudged down a few
        float32 ulps where needed so that no uniform this device can draw gives exactly 0. Both are
        two passes over the batch. Activity is ``u`` below ``p`` as the float32 arithmetic rounds
        it, for each stream its own way: the signed stream's active uniforms are ``[0, p')`` with
        ``p'`` within two 2^-24 grid points of ``p``, so its activity can differ from the uniform
        stream's of the same seed only where ``u`` is within a grid point or two of ``p`` (a
        probability of a few 2^-24 per feature and sample).

        With ``dataset_size`` a training step's batch comes from the training sets instead: every
        set, packed (:class:`~lit_superposition.data.finite.PackedSets`), or ``batch_size`` points
        of each; step keys from :data:`EVALUATION_STEP` on still draw fresh points of the law.

        Returns:
            ``(n_instances, batch_size, n_features)`` features (``n_instances`` of the slice), laid out
            in memory with the batch axis contiguous (``x.transpose(1, 2)`` is contiguous): the layout in which the model's products
            are fastest.
        """
        device = torch.device(device)
        if self.dataset_size is not None and step < EVALUATION_STEP:
            return self._finite_batch(step, device, instances)
        start, *_, generator = self._device_state(device, instances)
        seed = step_seed(self.data_seed, rank, step)
        if self.instance_data == "shared":
            generator.manual_seed(seed)
            u = torch.rand(1, self.batch_size, self.n_features, device=start.device, generator=generator)
            return self._scaled(self.values_of(u, instances))
        rows = slice(0, self.n_instances) if instances is None else instances
        # Each block of DRAW_BLOCK instances has its own seed: a slice draws only the blocks it overlaps.
        first, end = rows.start // DRAW_BLOCK, -(-rows.stop // DRAW_BLOCK)
        blocks = []
        for block in range(first, end):  # one block for up to 64 instances: not a loop over instances
            generator.manual_seed(block_seed(seed, block))
            size = min(DRAW_BLOCK, self.n_instances - block * DRAW_BLOCK)
            blocks.append(torch.rand(size, self.batch_size, self.n_features, device=start.device, generator=generator))
        u = blocks[0] if len(blocks) == 1 else torch.cat(blocks)  # (instances of the blocks, batch, n_features)
        offset = first * DRAW_BLOCK
        if rows.start != offset or rows.stop != offset + len(u):
            u = u[rows.start - offset:rows.stop - offset]
        return self._scaled(self.values_of(u, instances))

    def _scaled(self, x: Tensor) -> Tensor:
        """``x`` as the law gives it: each point at unit norm where ``scale_points`` says so."""
        return scale_to_unit_norm(x) if self.scale_points == "unit_norm" else x

    def values_of(self, u: Tensor, instances: slice | None = None) -> Tensor:
        """The batch :meth:`make_batch` returns for the uniforms ``u``, on ``u``'s device.

        Args:
            u: ``(n_draws, batch, n_features)`` uniforms on [0, 1); ``n_draws`` is 1 (shared) or the
                number of instances (independent).
            instances: The slice of the instances ``u`` is for (default: all).

        Returns:
            ``(n_instances, batch, n_features)`` features (``n_instances`` of the slice), batch axis contiguous in memory.
        """
        start, scale, exact, sets, _ = self._device_state(u.device, instances)
        n_rows = self.n_instances if instances is None else instances.stop - instances.start
        if sets is not None:
            x = sets.sample(u, signed=self.values == "signed")  # (n_rows, batch, n_features)
            return x.transpose(1, 2).contiguous().transpose(1, 2)
        xT = torch.empty(n_rows, self.n_features, u.shape[1], device=u.device)
        # One pass writes the feature-major layout: 1 - u / p, or A - u·B; the second works in place.
        torch.addcmul(start, u.transpose(1, 2), scale, out=xT)  # (n_rows, n_features, batch)
        if self.values == "uniform":
            return xT.clamp_min_(0).transpose(1, 2)
        if not exact:  # never seen: signed_map could not rule out an exact 0
            xT.masked_fill_(xT == 0, torch.finfo(xT.dtype).tiny)
        return torch.nn.functional.threshold_(xT, -1.0, 0.0).transpose(1, 2)  # x > -1 kept, the rest +0

    def _draw_points(self, instance: int, n_points: int, key: int, device: torch.device) -> Tensor:
        """``n_points`` points of instance ``instance`` from the stream's law, ``(n_points, n_features)``.

        Each instance has its own generator (independent mode) or all share one (shared mode), so a
        set never depends on the other instances.
        """
        row = instance if self.instance_data == "independent" else 0
        generator = torch.Generator(device=device).manual_seed(step_seed(self.data_seed, 1 + row, key))
        u = torch.rand(1, n_points, self.n_features, device=device, generator=generator)
        return self.values_of(u, instances=slice(instance, instance + 1))[0]

    def training_sets(self, device: torch.device | str = "cpu") -> PackedSets:
        """Every instance's training set on ``device``, packed (drawn once, the first time)."""
        device = torch.empty(0, device=device).device
        if self.dataset_size is None:
            raise ConfigError("this run has no training sets: data.dataset_size is null (the endless stream)")
        if device not in self._sets:
            sets = [draw_set(lambda i, n, key: self._draw_points(i, n, key, device), i, size, TRAINING_SET_KEY, self.scale_points)
                    for i, size in enumerate(self.dataset_size)]
            self._sets[device] = pack(sets, self.n_features)
        return self._sets[device]

    def test_set(self, device: torch.device | str = "cpu") -> Tensor:
        """Every instance's held-out test points ``(n_instances, test_size, n_features)``, from a seed of their own."""
        device = torch.empty(0, device=device).device
        if device not in self._test_sets:
            points = [draw_set(lambda i, n, key: self._draw_points(i, n, key, device), i, self.test_size, TEST_SET_KEY, self.scale_points)
                      for i in range(self.n_instances)]
            self._test_sets[device] = torch.stack(points).transpose(1, 2).contiguous().transpose(1, 2)
        return self._test_sets[device]

    def _finite_batch(self, step: int, device: torch.device, instances: slice | None) -> PackedSets | Tensor:
        if instances is not None:
            raise ConfigError("data.dataset_size trains whole sets in one process: instance sharding splits a stream, not a set")
        sets = self.training_sets(device)
        if self.full_batch:
            return sets
        # batch_size points of each set, with replacement, keyed by the step: exact resume.
        generator = torch.Generator(device=device).manual_seed(step_seed(self.data_seed, 0, step))
        u = torch.rand(self.n_instances, self.batch_size, device=device, generator=generator)
        chosen = (u * sets.sizes.to(device).unsqueeze(1)).long()  # (n_instances, batch): each set's own points
        points = self._point_major(device)[sets.point_index(chosen)]  # (n_instances, batch, n_features)
        return points.transpose(1, 2).contiguous().transpose(1, 2)

    def _point_major(self, device: torch.device) -> Tensor:
        """The packed points as ``(n_rows * CHUNK, n_features)``, for drawing minibatches (made once)."""
        if device not in self._points:
            self._points[device] = self.training_sets(device).x.reshape(-1, self.n_features)
        return self._points[device]

    @override
    def setup(self, stage: str) -> None:
        if self.dataset_size is not None and self.trainer is not None and self.trainer.world_size > 1:
            raise ConfigError(
                "data.dataset_size trains each instance on its whole set in one process: run it on one device"
                " (instance sharding and DDP split a stream, not a set)"
            )

    def definition(self) -> dict[str, Any]:
        """What defines the data: a checkpoint of other data is not resumed with this one."""
        return {
            "feature_probability": self.feature_probability.tolist(), "values": self.values, "target": self.target,
            "instance_data": self.instance_data, "exactly_one_active": self.exactly_one_active,
            "dataset_size": self.dataset_size, "full_batch": self.full_batch, "scale_points": self.scale_points,
            "correlated_sets": self.feature_sets.correlated_sets,
            "anticorrelated_sets": self.feature_sets.anticorrelated_sets,
        }

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"definition": self.definition()}

    @override
    def train_dataloader(self) -> Iterator[int]:
        # Keys that only mark Lightning's calls: the module draws every optimizer step's batch with
        # make_batch(step) on the training device. A plain iterator: no worker, no collation, no copy.
        return StepKeys()
