"""λ̂ of a run's instances on the run's own data law: the sample, the estimate, and what a run keeps of it; no Lightning.

Shared by ``lit-superposition llc`` (after a run) and :class:`~lit_superposition.callbacks.LLCOverTraining`
(during one), so both draw the same sample and write the same records.

**The sample** (:func:`draw_samples`): a run with finite training sets (``data.dataset_size``) is
measured on them, each instance on its own set (``n`` is its size, and instances of equal size share
one pass); a run on the endless stream on ``n`` points of its law, the datamodule's
``values_of(u)`` for uniforms ``u`` from ``torch.Generator().manual_seed(sample_seed)``: one draw
for every instance in shared mode, one per instance in independent mode, as training draws its
batches, but from a seed of its own (training seeds every batch with SplitMix64 of
``(data_seed, rank, step)``), so the points are fresh ones of the same law.

**What a run keeps** (:class:`LLCResult`): per instance, ``report.json``'s ``llc`` record
(:meth:`~lit_superposition.analysis.llc.LLCEstimate.record` with the step and the sample), and
``llc.pt``, the latest estimate's per-chain loss traces (every ``stride``-th draw, at most
:data:`MAX_TRACE_POINTS`) for the report page's figure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from lit_superposition.analysis.llc import LLCEstimate, LLCSettings, Target, estimate_llc
from lit_superposition.errors import ConfigError
from lit_superposition.models.base import ToyModel

#: Points of a stream sample when ``n`` is not given (the estimator's default).
DEFAULT_N = LLCSettings().n
#: Draws per chain kept in ``llc.pt`` (and in TensorBoard's trace curves): enough for a figure.
MAX_TRACE_POINTS = 500


@dataclass
class Sample:
    """Points some instances are measured on.

    Attributes:
        instances: The instances (rows of the model).
        points: ``(len(instances), n, n_features)``: each instance's points, in that order.
        description: What the points are, for the record (``"training set"`` or ``"stream, sample_seed S"``).
    """

    instances: list[int]
    points: Tensor
    description: str


def draw_samples(data: Any, n: int | None, sample_seed: int, device: torch.device | str = "cpu") -> list[Sample]:
    """The run's sample: its training sets (one :class:`Sample` per set size), or ``n`` points of its stream.

    Args:
        data: The run's datamodule (:class:`~lit_superposition.data.SparseFeatureDataModule`: ``values_of``,
            ``dataset_size``, ``training_sets``, ``instance_data``, ``n_instances``, ``n_features``).
        n: Points of the stream (default :data:`DEFAULT_N`); must be None for finite training sets,
            whose size is ``n``.
        sample_seed: Seeds the stream sample.
        device: Where the points go.

    Raises:
        ConfigError: one line, for ``n`` with finite sets or a bad ``n`` or seed.
    """
    sizes = getattr(data, "dataset_size", None)
    if sizes is not None:
        if n is not None:
            raise ConfigError(
                f"llc.n is the size of each instance's training set here (data.dataset_size = {sorted(set(sizes))}): leave it unset"
            )
        sets = data.training_sets(device)
        samples = []
        for size in sorted(set(sizes)):
            rows = [i for i, s in enumerate(sizes) if s == size]
            points = torch.stack([sets.points(i) for i in rows]).to(device)  # (len(rows), size, n_features)
            samples.append(Sample(rows, points, "training set"))
        return samples
    n = DEFAULT_N if n is None else n
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ConfigError(f"llc.n must be an integer >= 2, got {n!r}")
    if isinstance(sample_seed, bool) or not isinstance(sample_seed, int) or not 0 <= sample_seed < 2**63:
        raise ConfigError(f"llc.sample_seed must be an integer in [0, 2**63), got {sample_seed!r}")
    draws = data.n_instances if data.instance_data == "independent" else 1
    generator = torch.Generator(device=device).manual_seed(sample_seed)
    u = torch.rand(draws, n, data.n_features, device=device, generator=generator)  # (draws, n, n_features)
    points = data.values_of(u)  # (n_instances, n, n_features)
    return [Sample(list(range(data.n_instances)), points, f"stream, sample_seed {sample_seed}")]


@dataclass
class LLCResult:
    """λ̂ of some instances at one step, from one or more passes (one per sample).

    Attributes:
        step: The training step of the weights.
        instances: The instances, in order.
        estimates: The pass of each instance and its row there: ``(estimate, row)`` per instance.
        descriptions: What each instance's points were.
    """

    step: int
    instances: list[int]
    estimates: list[tuple[LLCEstimate, int]]
    descriptions: list[str]

    def record(self, position: int) -> dict[str, Any]:
        """``report.json``'s ``llc`` of the instance at ``position``: the estimate's record, the step and the sample."""
        estimate, row = self.estimates[position]
        return {**estimate.record(row), "step": self.step, "sample": self.descriptions[position]}

    def column(self, name: str) -> Tensor:
        """One per-instance tensor of the estimates (``mean``, ``std``, ``init_loss``), in instance order."""
        return torch.stack([getattr(estimate, name)[row].double() for estimate, row in self.estimates])

    @property
    def nbeta(self) -> Tensor:
        """``(k,)`` float64: each instance's nβ (the sets' sizes may differ)."""
        return torch.tensor([estimate.settings.nbeta for estimate, _ in self.estimates], dtype=torch.float64)

    @property
    def warnings(self) -> list[str]:
        """Every warning's message, in instance order."""
        return [w.message for estimate, row in self.estimates for w in estimate.warnings if w.instance == row]

    def traces(self) -> tuple[Tensor, Tensor]:
        """Every ``stride``-th draw of every chain: ``(k, n_chains, kept)`` float32 and the draws' indices ``(kept,)``."""
        n_draws = self.estimates[0][0].traces.shape[2]
        draws = torch.arange(0, n_draws, -(-n_draws // MAX_TRACE_POINTS))  # (kept,)
        return torch.stack([estimate.traces[row][:, draws].float() for estimate, row in self.estimates]), draws

    def trace_file(self) -> dict[str, Any]:
        """``llc.pt``: ``step``, ``instances`` ``(k,)``, ``traces`` ``(k, n_chains, kept)``, ``draws`` ``(kept,)``,
        ``init_loss``, ``nbeta``, ``mean`` ``(k,)`` (load with ``torch.load(path, weights_only=True)``)."""
        traces, draws = self.traces()
        return {
            "step": self.step, "instances": torch.tensor(self.instances, dtype=torch.long), "traces": traces, "draws": draws,
            "init_loss": self.column("init_loss"), "nbeta": self.nbeta, "mean": self.column("mean"),
        }


def _members(model: ToyModel, instances: list[int], importance: Tensor | float) -> tuple[ToyModel, Tensor | float]:
    """``model`` itself where ``instances`` are all of it, else a model of its variant holding just their rows, and
    their importance."""
    if instances == list(range(model.n_instances)):
        return model, importance
    index = torch.tensor(instances, device=model.W.device)
    members = model.variant_class(len(instances), model.n_features, model.d_hidden).to(device=model.W.device, dtype=model.W.dtype)
    with torch.no_grad():
        for name in model.parameter_names:
            getattr(members, name).copy_(getattr(model, name).detach()[index])
    if isinstance(importance, Tensor) and importance.dim() == 2 and importance.shape[0] == model.n_instances:
        importance = importance[index]  # (len(instances), n_features)
    return members, importance


def estimate_run(
    model: ToyModel,
    samples: list[Sample],
    settings: LLCSettings,
    step: int,
    importance: Tensor | float = 1.0,
    target: Target = "identity",
    instances: list[int] | None = None,
    progress: Callable[[int, int], Any] | None = None,
) -> LLCResult:
    """λ̂ of ``instances`` (default: all) of ``model`` at its current weights, one batched pass per sample.

    Each instance's key is its index in the run, so its chains do not depend on which instances are
    estimated with it. ``settings.n`` is each sample's size (unset defaults follow it); on a finite
    training set ``batch_size`` is capped at the set's size.

    Args:
        progress: Called as ``progress(steps_done, total_steps)`` over all passes.
    """
    chosen = list(range(model.n_instances)) if instances is None else list(instances)
    groups = [(sample, [i for i in chosen if i in sample.instances]) for sample in samples]
    groups = [(sample, rows) for sample, rows in groups if rows]
    total = settings.n_steps * len(groups)
    found: dict[int, tuple[LLCEstimate, int, str]] = {}
    for done, (sample, rows) in enumerate(groups):
        n = sample.points.shape[1]
        capped = min(settings.batch_size, n) if sample.description == "training set" else settings.batch_size
        group_settings = replace(settings, n=n, batch_size=capped)
        offset = done * settings.n_steps
        report = None if progress is None else (lambda steps, _, offset=offset: progress(offset + steps, total))
        # The sample's instances as a model of their own: an instance's chains depend on its key alone,
        # so this is bitwise its estimate inside the whole model (analysis/llc.py).
        members, member_importance = _members(model, sample.instances, importance)
        estimate = estimate_llc(members, sample.points, group_settings, member_importance, target,
                                instances=[sample.instances.index(i) for i in rows], instance_keys=rows, progress=report)
        for row, instance in enumerate(rows):
            found[instance] = (estimate, row, sample.description)
    missing = [i for i in chosen if i not in found]
    if missing:
        raise ConfigError(f"llc instances {missing} have no sample")
    return LLCResult(step, chosen, [found[i][:2] for i in chosen], [found[i][2] for i in chosen])
