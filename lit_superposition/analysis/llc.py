"""The local learning coefficient (LLC, λ̂) of every instance at once, by batched SGLD.

Pure torch (and scipy for one p-value), no Lightning.

**What is estimated** (Lau et al. 2023; Chen et al. 2023). For the empirical loss ``L_n`` of an
instance on ``n`` points and its trained weights ``w*``, SGLD samples the tempered posterior
localized at ``w*``, ``p(w) ∝ exp(−nβ L_n(w) − γ/2 ‖w − w*‖²)``, with the step::

    Δw = −(ε/2) (nβ ∇L_batch(w) + γ (w − w*)) + N(0, ε)

and ``λ̂ = nβ · (mean over the draws of L_batch(w_t) − L_n(w*))``, per chain, then averaged over
chains. ``L_batch(w_t)`` is the minibatch loss of step ``t`` at the weights before that step (the
forward pass that gives the gradient; devinterp records the same). ``L_n(w*)`` is the exact mean of
the per-point loss over all ``n`` points; devinterp's ``init_loss`` instead averages random
minibatches (``n_chains`` of them in 1.x, 32 in 2.x), whose noise, times nβ, shifts every chain's
λ̂ alike. The per-point loss is the training loss of one instance: ``per_feature_loss``
(importance-weighted) averaged over features.

**One step for every chain of every instance.** Instances are independent models in one tensor,
so the sampler builds a model of the same class with ``n_instances × n_chains`` rows (row
``i · n_chains + c`` is instance ``i``'s chain ``c``, started at ``w*`` of instance ``i``), and one
backward pass of the summed per-row loss gives every chain its own gradient.

**Nothing shared between instances.** Each (instance, chain, step) draws one SplitMix64 sequence
seeded by ``splitmix64(splitmix64(splitmix64(splitmix64(seed) ^ instance_key) ^ chain) ^
splitmix64(step))``, in vectorized int64 tensor operations (:func:`splitmix64`, bitwise equal to the
datamodule's): its first ``batch_size`` numbers pick the minibatch (with replacement), the next
ones give the noise (24-bit uniforms, Box–Muller). ``instance_key`` is the instance's index in its
run, so instance 7 estimated alone with key 7 draws the chains it draws inside a batch of 64. On a
CPU the estimate is then bitwise the same (checked in ``tests/analysis/test_llc.py`` for the
bundled variants): elementwise operations and reductions along a row do not depend on the other
rows, and torch's batched matrix products give each matrix the same result whatever the batch
count, except for a batch of one, which takes another kernel; so a lone chain runs beside a copy
of itself. The sampler never touches the model's weights or the global random state.

**Defaults, from a regular model.** The linear-output model ``x' = WᵀW x + b`` with
``d_hidden = n_features = F`` has an exact minimum at ``W* = I``, ``b* = 0`` (``x' = x``, loss 0) on
any data. Near it, with ``W = Q(I + S + K)``, ``S`` symmetric and ``K`` antisymmetric,
``x' − x ≈ 2Sx + b``: ``K`` moves along the orbit ``W → QW`` (``F(F−1)/2`` exactly flat directions)
and the loss is a positive definite quadratic form in ``(S, b)`` whenever ``E[(x, 1)(x, 1)ᵀ]`` is, so
the minimum is regular in ``d = F(F+1)/2 + F`` free parameters and ``λ = d/2``. For finite γ and ε
the quadratic form gives the exact target: a Hessian eigenvalue ``h`` is a Gaussian mode of
curvature ``a = nβh + γ`` in which the discretized chain has variance ``1 / (a (1 − εa/4))``, so
``E[λ̂] = Σ_h ½ nβh / (a (1 − εa/4))`` ("reference" below; Hessian by autograd).

The defaults: 8 chains, 1000 burn-in steps, 2000 draws, minibatches of 256, ``ε = 0.3 / nβ`` and
``γ = nβ / 400``. Scaling ε and γ with nβ keeps the dynamics in units of the loss the same for every
``n`` (``Δw = −(εnβ/2)(∇L + (γ/nβ)(w − w*)) + N(0, ε)``): ``εnβ = 0.3`` keeps the discretization's
excess variance ``εa/4`` under 7% in the stiffest mode below (``h ≈ 0.9``) while the softest
(``h ≈ 0.016``) settles in ``1/(ε(nβh + γ)) ≈ 180`` steps, well inside the burn-in; ``γ/nβ = 1/400``
biases a mode by ``γ/(nβh + γ)``, 13% for that softest mode and at most 3% of λ here (γ = 100, common
in the literature at ``n = 10⁴``, would be 37 times stronger). Measured on the model above with
Chen et al.'s data law (one feature active per point, uniform on (0, 1]), sample seed 0, one run
each (± is the spread over the 8 chains divided by √8):

====== === ===== ================ ============== ========= =========
n      F   d/2   γ                λ̂              λ̂ / d/2   reference
====== === ===== ================ ============== ========= =========
1 000  3   4.5   default (0.362)  4.66 ± 0.13    1.03      4.60
1 000  6   13.5  default (0.362)  10.26 ± 0.19   0.76      13.17
10 000 3   4.5   default (2.71)   4.55 ± 0.08    1.01      4.59
10 000 3   4.5   10× (27.1)       4.10 ± 0.05    0.91      4.19
10 000 6   13.5  default (2.71)   13.34 ± 0.26   0.99      13.16
10 000 6   13.5  10× (27.1)       10.07 ± 0.17   0.75      10.30
100 000 3  4.5   default (21.7)   4.48 ± 0.07    0.99      4.59
100 000 6  13.5  default (21.7)   13.09 ± 0.29   0.97      13.16
====== === ===== ================ ============== ========= =========

Over 32 instances of the same model (``n = 10⁴``) the defaults average 4.65 (F = 3) and 13.70
(F = 6): within 4% of ``d/2``, and 10× the default γ lowers λ̂ by what the Gaussian modes predict.
At ``n = 1000`` with ``F = 6`` (nβ = 145) the posterior reaches beyond the quadratic region and λ̂
falls short of both: a finite-``n`` effect, not a sampler one.

**Diagnostics** (:class:`ChainWarning`): a chain whose loss is not finite, a chain with λ̂ < 0, and a
trend: an instance whose chains' λ̂ from the second half of the draws differs from that of the
first half (t-test across its independent chains, p < 0.01, by more than 5% of λ̂; one chain's own
slope cannot tell a trend from its slow fluctuations). Measured on the model above with 32
instances: at the defaults 1 of 64 instance estimates flagged; with ε/10 and no burn-in (λ̂ 8% and
26% low for F = 3, 6) 4 and 28 of 32; with ε/100 and no burn-in (45% and 74% low) 16 and 32 of 32.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import torch
from scipy import stats
from torch import Tensor

from lit_superposition.errors import ConfigError
from lit_superposition.models.base import ToyModel

__all__ = [
    "EPSILON_NBETA",
    "GAMMA_PER_NBETA",
    "ChainWarning",
    "LLCEstimate",
    "LLCSettings",
    "devinterp_estimate",
    "estimate_llc",
    "normals",
    "splitmix64",
]

Target = Literal["identity", "abs"]
Progress = Callable[[int, int], Any]

_MASK64 = (1 << 64) - 1


def _signed(value: int) -> int:
    """The int64 with the same 64 bits as the unsigned ``value``."""
    value &= _MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


_GOLDEN = _signed(0x9E3779B97F4A7C15)
_MIX1 = _signed(0xBF58476D1CE4E5B9)
_MIX2 = _signed(0x94D049BB133111EB)

#: Points per forward pass when the loss at ``w*`` is summed over the whole sample (bounds memory;
#: a constant, so that the sum's order does not depend on how many instances share the tensor).
_CHUNK = 4096
#: A trend is flagged when the chains' mean drift has a p-value below _TREND_P and moves λ̂ by
#: more than _TREND_SIZE of its value (see :func:`_drift`).
_TREND_P = 0.01
_TREND_SIZE = 0.05


def _shift_right(x: Tensor, bits: int) -> Tensor:
    """The logical right shift of int64 ``x`` (torch's ``>>`` is arithmetic)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def splitmix64(x: Tensor) -> Tensor:
    """SplitMix64's output function on an int64 tensor (two's complement of the unsigned values).

    Bitwise the same as ``lit_superposition.data.datamodule._splitmix64`` of each element: int64
    addition and multiplication wrap around on every torch device, and the shifts are made logical.
    """
    x = x + _GOLDEN
    x = (x ^ _shift_right(x, 30)) * _MIX1
    x = (x ^ _shift_right(x, 27)) * _MIX2
    return x ^ _shift_right(x, 31)


def _counters(count: int, device: torch.device) -> Tensor:
    """``j · golden`` for ``j < count``: added to a key, the states of a SplitMix64 sequence."""
    return torch.arange(count, dtype=torch.int64, device=device) * _GOLDEN


def _uniform(bits24: Tensor, dtype: torch.dtype) -> Tensor:
    """``(k + 0.5) / 2²⁴`` for 24-bit integers ``k``: uniform on (0, 1], never 0 (so ``log`` is finite)."""
    return (bits24.to(dtype) + 0.5) * 2.0**-24


def _box_muller(hashes: Tensor, count: int, dtype: torch.dtype) -> Tensor:
    """``count`` standard normals per row from ``ceil(count / 2)`` 64-bit hashes per row.

    One hash gives two 24-bit uniforms (bits 40-63 and 16-39), which Box–Muller turns into two
    normals (tails cut near 5.9 σ by the 24-bit grid).
    """
    radius = _uniform(_shift_right(hashes, 40), dtype).log_().mul_(-2.0).sqrt_()
    angle = _uniform(_shift_right(hashes, 16) & 0xFFFFFF, dtype).mul_(2 * math.pi)
    return torch.cat([radius * angle.cos(), radius * angle.sin()], dim=1)[:, :count]


def normals(keys: Tensor, count: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Standard normals, ``count`` per key, each row a pure function of its key: ``(len(keys), count)``.

    The same construction as the sampler's noise: the SplitMix64 sequence seeded with the key, then
    Box–Muller.
    """
    pairs = -(-count // 2)
    return _box_muller(splitmix64(keys.unsqueeze(1) + _counters(pairs, keys.device)), count, dtype)


#: The default step size is ``EPSILON_NBETA / nβ`` and the default localization ``GAMMA_PER_NBETA · nβ``:
#: the sampler's dynamics in units of the loss (``Δw = −(ε nβ/2)(∇L + (γ/nβ)(w − w*)) + N(0, ε)``) then do
#: not depend on ``n`` (see the module docstring for the measurements behind the numbers).
EPSILON_NBETA = 0.3
GAMMA_PER_NBETA = 1 / 400


@dataclass(frozen=True)
class LLCSettings:
    """SGLD hyperparameters of an LLC estimate, with the field's names (Lau et al. 2023).

    ``None`` means the default computed from ``n`` (:meth:`resolved` gives the numbers), so
    ``dataclasses.replace(settings, n=...)`` keeps the defaults' meaning.

    Args:
        n: Dataset size: the points of the sample ``L_n`` is measured on.
        nbeta: Inverse temperature times ``n``; default ``n / log n``.
        epsilon: SGLD step size ε; default ``0.3 / nβ``.
        gamma: Localization strength γ, the pull towards the trained weights; default ``nβ / 400``.
        n_chains: Chains per instance (at least 2 for the spread and the trend test).
        n_draws: Draws per chain: the steps after burn-in whose losses enter λ̂.
        n_burnin: Steps per chain before the first draw.
        batch_size: Points per minibatch, drawn with replacement from the ``n``.
        seed: Seeds the chains' minibatches and noise, with each instance's key and chain index.
    """

    n: int = 10_000
    nbeta: float | None = None
    epsilon: float | None = None
    gamma: float | None = None
    n_chains: int = 8
    n_draws: int = 2000
    n_burnin: int = 1000
    batch_size: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        for name, minimum in (("n", 2), ("n_chains", 1), ("n_draws", 1), ("n_burnin", 0), ("batch_size", 1), ("seed", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ConfigError(f"llc.{name} must be an integer >= {minimum}, got {value!r}")
        if self.seed > _MASK64:
            raise ConfigError(f"llc.seed must be below 2**64, got {self.seed!r}")
        if self.batch_size > self.n:
            raise ConfigError(f"llc.batch_size must be at most n ({self.n}), got {self.batch_size!r}")
        for name, positive in (("nbeta", True), ("epsilon", True), ("gamma", False)):
            value = getattr(self, name)
            if value is None:
                continue
            allowed = f"a finite number {'> 0' if positive else '>= 0'}, or null for the default"
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise ConfigError(f"llc.{name} must be {allowed}, got {value!r}")
            if value < 0 or (positive and value == 0):
                raise ConfigError(f"llc.{name} must be {allowed}, got {value!r}")

    def resolved(self) -> LLCSettings:
        """These settings with every default replaced by its number (what an estimate records)."""
        nbeta = float(self.nbeta) if self.nbeta is not None else self.n / math.log(self.n)
        epsilon = float(self.epsilon) if self.epsilon is not None else EPSILON_NBETA / nbeta
        gamma = float(self.gamma) if self.gamma is not None else GAMMA_PER_NBETA * nbeta
        return replace(self, nbeta=nbeta, epsilon=epsilon, gamma=gamma)

    @property
    def n_steps(self) -> int:
        """SGLD steps per chain: burn-in and draws."""
        return self.n_burnin + self.n_draws


@dataclass(frozen=True)
class ChainWarning:
    """A chain, or all chains of an instance, that may not have settled.

    Attributes:
        instance: The instance's position in the estimate (row of :attr:`LLCEstimate.mean`).
        instance_key: The instance's key (its index in the source run).
        chain: The chain; ``None`` for a warning about the instance's chains together (``"trend"``).
        kind: ``"nonfinite"``: a NaN or infinite loss. ``"negative"``: λ̂ < 0, the sampler found lower
            loss than ``w*``, which is then not a local minimum at this temperature. ``"trend"``: the
            loss of the instance's chains moved between the first and the second half of the draws
            (see :attr:`LLCEstimate.drift`).
        message: One line for a report.
    """

    instance: int
    instance_key: int
    chain: int | None
    kind: Literal["nonfinite", "negative", "trend"]
    message: str


@dataclass(frozen=True)
class LLCEstimate:
    """λ̂ per instance and chain, the loss traces and the diagnostics (CPU tensors).

    Attributes:
        mean: ``(n_instances,)`` λ̂ averaged over chains.
        std: ``(n_instances,)`` its standard deviation over chains (NaN with one chain).
        per_chain: ``(n_instances, n_chains)`` λ̂ of each chain.
        traces: ``(n_instances, n_chains, n_draws)`` the minibatch loss of every draw.
        init_loss: ``(n_instances,)`` ``L_n(w*)``, the mean loss over all ``n`` points at the trained weights.
        settings: The hyperparameters, resolved (every default a number).
        instance_keys: The key (index in the source run) of each instance.
        drift: ``(n_instances, n_chains)`` λ̂ of the second half of the draws minus λ̂ of the first
            half: near 0 for a settled chain, positive while the loss still rises.
        drift_pvalue: ``(n_instances,)`` p-value of the t-test of the mean drift over the instance's
            chains against 0 (NaN with one chain).
        warnings: What may not have settled (see :class:`ChainWarning`).
    """

    mean: Tensor
    std: Tensor
    per_chain: Tensor
    traces: Tensor
    init_loss: Tensor
    settings: LLCSettings
    instance_keys: tuple[int, ...]
    drift: Tensor
    drift_pvalue: Tensor
    warnings: tuple[ChainWarning, ...] = field(default=())

    def record(self, instance: int) -> dict[str, Any]:
        """One instance's estimate as plain values for strict JSON: mean, std, per chain, ``L_n(w*)``, the
        resolved hyperparameters and the warnings' messages. A value that is not finite (the std of one
        chain, the λ̂ of a diverged chain) is ``None`` (JSON ``null``): a warning says why."""
        return {
            "mean": _finite_or_none(self.mean[instance]),
            "std": _finite_or_none(self.std[instance]),
            "per_chain": [_finite_or_none(v) for v in self.per_chain[instance]],
            "init_loss": _finite_or_none(self.init_loss[instance]),
            "settings": asdict(self.settings),
            "warnings": [w.message for w in self.warnings if w.instance == instance],
        }


def _finite_or_none(value: Tensor) -> float | None:
    """``float(value)``, or None where it is NaN or infinite (strict JSON has neither)."""
    number = float(value)
    return number if math.isfinite(number) else None


def estimate_llc(
    model: ToyModel,
    sample: Tensor,
    settings: LLCSettings | None = None,
    importance: Tensor | float = 1.0,
    target: Target = "identity",
    instances: Sequence[int] | None = None,
    instance_keys: Sequence[int] | None = None,
    progress: Progress | None = None,
) -> LLCEstimate:
    """λ̂ of every instance (or of ``instances``) of ``model`` at its current weights, in one batched pass.

    Args:
        model: A :class:`ToyModel`; its weights are ``w*`` and are not changed. Its variant
            (``model.variant_class``) must build with ``cls(n_instances, n_features, d_hidden)``.
        sample: ``(n_instances, n, n_features)`` points per instance, or ``(1, n, n_features)``
            shared by every instance: the data ``L_n`` is measured on.
        settings: The SGLD hyperparameters; ``settings.n`` must be the sample's ``n`` (default: the
            defaults with the sample's ``n``).
        importance: Per-feature importance, anything that broadcasts to ``(n_instances, n_features)``.
        target: What the model's output should be: ``"identity"`` (``x``) or ``"abs"`` (``|x|``).
        instances: Which of the model's instances to estimate (default: all), in this order.
        instance_keys: Each estimated instance's key, its index in the source run (default: its
            index in ``model``); an instance's chains depend only on ``(seed, key, chain)``.
        progress: Called as ``progress(steps_done, n_steps)`` after every SGLD step (burn-in
            included: a step costs the same either way), for a progress bar.

    Returns:
        The estimate, on the CPU; row ``j`` belongs to ``instances[j]``.

    Raises:
        ConfigError: one line, for a sample, importance, instance list or target that does not fit.
    """
    rows, keys = _instances(model, instances, instance_keys)
    if settings is None:
        settings = LLCSettings(n=sample.shape[1]) if isinstance(sample, Tensor) and sample.dim() == 3 else LLCSettings()
    _check_sample(model, sample, settings)
    settings = settings.resolved()
    if target not in ("identity", "abs"):
        raise ConfigError(f"llc target must be 'identity' or 'abs', got {target!r}")
    device, dtype = model.W.device, model.W.dtype
    # A callback may call this under no_grad or inference mode: the sampler needs gradients of its own copy.
    with torch.inference_mode(False), torch.enable_grad():
        row_index = torch.as_tensor(rows, device=device)
        star = {name: getattr(model, name).detach()[row_index].clone() for name in model.parameter_names}  # w*, (k, ...)
        instance_importance = _importance(model, importance)[row_index]  # (k, n_features)
        sample = sample.to(device=device, dtype=dtype)
        if sample.shape[0] > 1:
            sample = sample[row_index]  # (k, n, n_features): each estimated instance's own points
        init_loss = _full_loss(model, star, sample, instance_importance, target)  # (k,) float64
        traces = _sample_chains(model, star, sample, instance_importance, target, keys, settings, progress)
    return _summarize(traces.cpu(), init_loss.cpu(), settings, keys)


def _instances(
    model: ToyModel, instances: Sequence[int] | None, instance_keys: Sequence[int] | None
) -> tuple[list[int], list[int]]:
    """The model's rows to estimate and their keys, checked."""
    rows = list(range(model.n_instances)) if instances is None else [int(i) for i in instances]
    if not rows or any(not 0 <= i < model.n_instances for i in rows):
        raise ConfigError(
            f"llc instances must be a non-empty list of indices in [0, {model.n_instances}), got {instances!r}"
        )
    keys = list(rows) if instance_keys is None else [int(k) for k in instance_keys]
    if len(keys) != len(rows) or any(not 0 <= k <= _MASK64 for k in keys):
        raise ConfigError(
            f"llc instance_keys must be one integer in [0, 2**64) per estimated instance ({len(rows)}),"
            f" got {instance_keys!r}"
        )
    return rows, keys


def _check_sample(model: ToyModel, sample: Tensor, settings: LLCSettings) -> None:
    allowed = (
        f"({model.n_instances}, {settings.n}, {model.n_features}) (n_instances, n, n_features)"
        f" or (1, {settings.n}, {model.n_features})"
    )
    if not isinstance(sample, Tensor) or sample.dim() != 3 or not sample.is_floating_point():
        got = tuple(sample.shape) if isinstance(sample, Tensor) else type(sample).__name__
        raise ConfigError(f"llc sample must be a floating tensor of shape {allowed}, got {got}")
    if sample.shape[0] not in (1, model.n_instances) or sample.shape[2] != model.n_features:
        raise ConfigError(f"llc sample must have shape {allowed}, got {tuple(sample.shape)}")
    if sample.shape[1] != settings.n:
        raise ConfigError(
            f"llc sample has {sample.shape[1]} points per instance but llc.n is {settings.n}: they must be equal"
        )


def _importance(model: ToyModel, importance: Tensor | float) -> Tensor:
    """``importance`` as ``(n_instances, n_features)`` on the model's device."""
    value = torch.as_tensor(importance, dtype=model.W.dtype, device=model.W.device)
    try:
        return value.expand(model.n_instances, model.n_features)
    except RuntimeError:
        raise ConfigError(
            f"llc importance of shape {tuple(value.shape)} does not broadcast to (n_instances, n_features)"
            f" = ({model.n_instances}, {model.n_features})"
        ) from None


def _model_of(model: ToyModel, state: dict[str, Tensor]) -> ToyModel:
    """A model of ``model``'s variant whose instances hold ``state`` (one row per instance)."""
    n_rows = next(iter(state.values())).shape[0]
    copy = model.variant_class(n_rows, model.n_features, model.d_hidden).to(device=model.W.device, dtype=model.W.dtype)
    with torch.no_grad():
        for name, value in state.items():
            getattr(copy, name).copy_(value)
    return copy


def _row_loss(model: ToyModel, x: Tensor, importance: Tensor, target: Target) -> Tensor:
    """Each row's loss, ``per_feature_loss`` averaged over features: ``(n_rows,)`` for ``x`` of
    shape ``(n_rows, batch, n_features)``."""
    goal = x.abs() if target == "abs" else None
    return model.per_feature_loss(x, importance, goal).mean(dim=1)


def _at_least_two(rows: Tensor) -> Tensor:
    """``rows`` with its one row repeated when it has one: a batched matrix product of a single
    matrix takes another CPU kernel than a batch of several, with other rounding, so a lone instance
    or chain would not match its row inside a batch."""
    return rows.repeat_interleave(2, dim=0) if rows.shape[0] == 1 else rows


@torch.no_grad()
def _full_loss(model: ToyModel, star: dict[str, Tensor], sample: Tensor, importance: Tensor, target: Target) -> Tensor:
    """``L_n(w*)`` per instance: the mean per-point loss over the whole sample, ``(k,)`` float64."""
    k, n = importance.shape[0], sample.shape[1]
    reference = _model_of(model, {name: _at_least_two(value) for name, value in star.items()})
    importance = _at_least_two(importance)
    sample_t = sample.transpose(1, 2)  # (1 or k, n_features, n)
    total = torch.zeros(reference.n_instances, dtype=torch.float64, device=sample.device)
    for start in range(0, n, _CHUNK):  # chunks of points, to bound memory
        chunk = sample_t[:, :, start:start + _CHUNK].contiguous()  # (1 or k, n_features, chunk): the models' fast layout
        x = chunk.expand(reference.n_instances, -1, -1).transpose(1, 2)  # (rows, chunk, n_features)
        total += _row_loss(reference, x, importance, target).double() * x.shape[1]
    return total[:k] / n


def _row_keys(keys: list[int], seed: int, n_chains: int, device: torch.device) -> Tensor:
    """Each chain's key, ``splitmix64(splitmix64(splitmix64(seed) ^ key) ^ chain)``: ``(k · n_chains,)`` int64,
    instance-major (row ``i · n_chains + c`` is instance ``i``'s chain ``c``)."""
    seed_key = splitmix64(torch.tensor(_signed(seed), device=device))
    instance_keys = splitmix64(seed_key ^ torch.tensor([_signed(k) for k in keys], device=device))  # (k,)
    chains = torch.arange(n_chains, device=device).repeat(len(keys))  # (k · n_chains,)
    return splitmix64(instance_keys.repeat_interleave(n_chains) ^ chains)


def _sample_chains(
    model: ToyModel,
    star: dict[str, Tensor],
    sample: Tensor,
    importance: Tensor,
    target: Target,
    keys: list[int],
    settings: LLCSettings,
    progress: Progress | None,
) -> Tensor:
    """Run every chain of every instance as one instanced model; returns the draws' minibatch losses,
    ``(k, n_chains, n_draws)``."""
    n_chains, batch, n = settings.n_chains, settings.batch_size, settings.n
    k, n_features, device = len(keys), sample.shape[2], sample.device
    # Row i · n_chains + c is instance i's chain c; a lone chain runs beside a copy of itself (see _at_least_two).
    centers = {name: _at_least_two(w.repeat_interleave(n_chains, dim=0)) for name, w in star.items()}  # (n_rows, ...)
    chains = _model_of(model, centers)
    n_rows = chains.n_instances
    parameters = [getattr(chains, name) for name in centers]
    sizes = [p[0].numel() for p in parameters]
    row_importance = _at_least_two(importance.repeat_interleave(n_chains, dim=0))  # (n_rows, n_features)
    row_keys = _at_least_two(_row_keys(keys, settings.seed, n_chains, device))  # (n_rows,)
    step_codes = splitmix64(torch.arange(settings.n_steps, device=device))  # (n_steps,)
    # Step t of a row draws one SplitMix64 sequence from splitmix64(row key ^ code of t): its first
    # batch_size hashes pick the minibatch, the next ceil(n_parameters / 2) give the noise.
    counters = _counters(batch + -(-sum(sizes) // 2), device)  # (batch + noise pairs,)

    # Rows come in groups that read one sample each (one group when the sample is shared, else
    # instance i's chains): a gather along the points of a broadcast view picks every row's
    # minibatch in the (n_rows, n_features, batch) layout the models like, copying nothing else.
    sample_t = sample.transpose(1, 2).contiguous()  # (groups, n_features, n)
    groups = sample_t.shape[0]
    per_group = n_rows // groups
    source = sample_t.unsqueeze(1).expand(groups, per_group, n_features, n)  # a view

    nbeta, gamma, epsilon = settings.nbeta, settings.gamma, settings.epsilon
    noise_scale, drift_scale = math.sqrt(epsilon), epsilon / 2
    traces = torch.empty(n_rows, settings.n_draws, dtype=sample.dtype, device=device)
    for step in range(settings.n_steps):
        hashes = splitmix64(splitmix64(row_keys ^ step_codes[step]).unsqueeze(1) + counters)  # (n_rows, batch + pairs)
        points = _shift_right(hashes[:, :batch], 1) % n  # (n_rows, batch): with replacement
        index = points.view(groups, per_group, 1, batch).expand(-1, -1, n_features, -1)
        x = torch.gather(source, 3, index).view(n_rows, n_features, batch).transpose(1, 2)  # (n_rows, batch, n_features)
        for p in parameters:
            p.grad = None
        loss = _row_loss(chains, x, row_importance, target)  # (n_rows,)
        loss.sum().backward()  # each row's gradient is its own: the rows never interact
        if step >= settings.n_burnin:
            traces[:, step - settings.n_burnin] = loss.detach()
        noise = _box_muller(hashes[:, batch:], sum(sizes), sample.dtype)  # (n_rows, n_parameters)
        with torch.no_grad():
            for p, center, chunk in zip(parameters, centers.values(), noise.split(sizes, dim=1)):
                grad = torch.zeros_like(p) if p.grad is None else p.grad
                drift = grad * nbeta + (p - center) * gamma
                p.sub_(drift * drift_scale).add_(chunk.view_as(p) * noise_scale)
        if progress is not None:
            progress(step + 1, settings.n_steps)
    return traces[:k * n_chains].view(k, n_chains, settings.n_draws)


def _summarize(traces: Tensor, init_loss: Tensor, settings: LLCSettings, keys: list[int]) -> LLCEstimate:
    """λ̂ per chain and instance, the drift test and the warnings."""
    losses = traces.double()  # (k, n_chains, n_draws)
    per_chain = settings.nbeta * (losses.mean(dim=2) - init_loss.unsqueeze(1))  # (k, n_chains)
    mean = per_chain.mean(dim=1)
    std = per_chain.std(dim=1) if settings.n_chains > 1 else torch.full_like(mean, math.nan)
    drift, pvalue = _drift(losses, settings.nbeta)
    nonfinite = ~torch.isfinite(losses)  # (k, n_chains, n_draws)
    first = nonfinite.int().argmax(dim=2)  # (k, n_chains): the first non-finite draw
    broken = nonfinite.any(dim=2)  # (k, n_chains)
    moved = drift.mean(dim=1)  # (k,)
    trend = (pvalue < _TREND_P) & (moved.abs() > _TREND_SIZE * mean.abs())  # (k,); False where NaN
    warnings = [
        ChainWarning(
            i, keys[i], c, "nonfinite",
            f"instance {keys[i]} chain {c}: the loss is not finite from draw {int(first[i, c])} on (step size too large?)",
        )
        for i, c in broken.nonzero().tolist()
    ]
    warnings += [
        ChainWarning(
            i, keys[i], c, "negative",
            f"instance {keys[i]} chain {c}: λ̂ = {float(per_chain[i, c]):.3g} < 0, the sampler found lower loss"
            " than the trained weights",
        )
        for i, c in ((per_chain < 0) & ~broken).nonzero().tolist()
    ]
    warnings += [
        ChainWarning(
            i, keys[i], None, "trend",
            f"instance {keys[i]}: the chains' λ̂ moved by {float(moved[i]):+.3g} from the first to the second half of"
            f" the draws (p = {float(pvalue[i]):.1g}): not settled, more burn-in or a larger step size",
        )
        for (i,) in trend.nonzero().tolist()
    ]
    return LLCEstimate(
        mean=mean, std=std, per_chain=per_chain, traces=traces, init_loss=init_loss, settings=settings,
        instance_keys=tuple(keys), drift=drift, drift_pvalue=pvalue, warnings=tuple(warnings),
    )


def _drift(losses: Tensor, nbeta: float) -> tuple[Tensor, Tensor]:
    """Each chain's drift and each instance's p-value: ``(k, n_chains)``, ``(k,)``.

    The drift of a chain is λ̂ of the second half of its draws minus λ̂ of the first half. One
    chain's trace cannot tell a trend from its own slow fluctuations, but an instance's chains are
    independent: their drifts' spread is the yardstick, and a t-test of their mean against 0
    (``n_chains − 1`` degrees of freedom) gives the p-value (NaN with one chain).
    """
    half = losses.shape[-1] // 2
    drift = nbeta * (losses[..., half:].mean(dim=-1) - losses[..., :half].mean(dim=-1))  # (k, n_chains)
    n_chains = drift.shape[1]
    if n_chains < 2 or half == 0:
        return drift, torch.full_like(drift[:, 0], math.nan)
    statistic = drift.mean(dim=1) / (drift.std(dim=1) / math.sqrt(n_chains))
    pvalue = torch.from_numpy(2 * stats.t.sf(statistic.abs().numpy(), n_chains - 1))
    return drift, torch.where(drift.std(dim=1) == 0, (drift.mean(dim=1) == 0).double(), pvalue)  # equal drifts: exact


def devinterp_estimate(
    model: ToyModel,
    instance: int,
    sample: Tensor,
    settings: LLCSettings,
    importance: Tensor | float = 1.0,
    target: Target = "identity",
    init_loss: float | None = None,
) -> dict[str, Any]:
    """The same estimate of one instance by devinterp's sampler (``devinterp>=1.3,<2``, the test extra).

    The reference of the cross-check and the benchmark: the instance is wrapped as a plain
    ``nn.Module`` that maps a minibatch ``(batch, n_features)`` to its loss, each chain draws its
    minibatches with replacement from the same sample (seeded from ``(seed, instance, chain)``), and
    devinterp's SGLD runs the chains one after the other. devinterp records the same quantity per
    draw (the minibatch loss before the step) and computes ``nβ · (mean − init_loss)``.

    Args:
        init_loss: ``L_n(w*)``; default: this module's exact value (devinterp's own would average
            ``n_chains`` minibatches, and it computes its own where this is exactly 0).

    Returns:
        devinterp's result: ``llc/mean``, ``llc/std``, ``llc-chain/{c}``, ``loss/trace``.
    """
    import warnings as python_warnings

    from devinterp.optim.sgld import SGLD
    from devinterp.slt.sampler import estimate_learning_coeff_with_summary
    from torch.utils.data import DataLoader, Dataset, RandomSampler

    _check_sample(model, sample, settings)
    settings = settings.resolved()
    row = torch.tensor([instance], device=model.W.device)
    star = {name: getattr(model, name).detach()[row].clone() for name in model.parameter_names}
    one_importance = _importance(model, importance)[row]  # (1, n_features)
    points = sample[instance if sample.shape[0] > 1 else 0].to(device=model.W.device, dtype=model.W.dtype)  # (n, n_features)
    if init_loss is None:
        init_loss = float(_full_loss(model, star, points.unsqueeze(0), one_importance, target)[0])

    class OneInstance(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = _model_of(model, star)

        def forward(self, x: Tensor) -> Tensor:
            return _row_loss(self.model, x.unsqueeze(0), one_importance, target)[0]

    class Points(Dataset):
        """The sample's points; a list of indices fetches a whole minibatch at once (not point by point)."""

        def __len__(self) -> int:
            return len(points)

        def __getitem__(self, index: int) -> Tensor:
            return points[index]

        def __getitems__(self, indices: list[int]) -> tuple[Tensor, ...]:
            return points[indices].unbind(0)  # the rows the default collate stacks again

    # devinterp copies the loader into every chain: a sampler without a generator of its own draws from
    # the global generator, which devinterp seeds per chain, so chains get their own minibatches.
    draws = RandomSampler(range(settings.n), replacement=True, num_samples=settings.n_steps * settings.batch_size)
    loader = DataLoader(Points(), batch_size=settings.batch_size, sampler=draws)
    # Each chain's seed from (seed, instance, chain), as this module keys its own chains.
    seeds = [int(key) % 2**32 for key in _row_keys([instance], settings.seed, settings.n_chains, torch.device("cpu"))]
    with torch.random.fork_rng(devices=[]), python_warnings.catch_warnings():
        python_warnings.simplefilter("ignore")
        return estimate_learning_coeff_with_summary(
            OneInstance(), loader,
            evaluate=lambda module, batch: module(batch),
            sampling_method=SGLD,
            optimizer_kwargs={"lr": settings.epsilon, "localization": settings.gamma, "nbeta": settings.nbeta},
            num_draws=settings.n_draws, num_chains=settings.n_chains, num_burnin_steps=settings.n_burnin,
            init_loss=init_loss, seed=seeds, device=model.W.device, verbose=False,
        )
