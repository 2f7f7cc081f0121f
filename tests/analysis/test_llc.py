"""The batched LLC estimator: a regular model's d/2, devinterp's estimate, independence, diagnostics, bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch

from lit_superposition.analysis.llc import LLCSettings, devinterp_estimate, estimate_llc, normals, splitmix64
from lit_superposition.errors import ConfigError
from lit_superposition.models import VARIANTS, LinearOutputModel, ReLUOutputModel


def chen_points(n: int, n_features: int, seed: int = 0, rows: int = 1) -> torch.Tensor:
    """Chen et al.'s data law: exactly one feature active per point, chosen uniformly, uniform on (0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    which = torch.randint(n_features, (rows, n), generator=generator)
    value = 1 - torch.rand(rows, n, generator=generator)
    return torch.zeros(rows, n, n_features).scatter_(2, which.unsqueeze(2), value.unsqueeze(2))  # (rows, n, n_features)


def identity_model(n_features: int, n_instances: int = 1, scale: float = 1.0) -> LinearOutputModel:
    """``x' = WᵀW x + b`` at ``W = scale · I``, ``b = 0``: for scale 1 an exact minimum (``x' = x``) on any data."""
    model = LinearOutputModel(n_instances, n_features, n_features)
    with torch.no_grad():
        model.W.copy_(scale * torch.eye(n_features).expand(n_instances, -1, -1))
        model.b.zero_()
    return model


def quadratic_reference(points: torch.Tensor, settings: LLCSettings) -> float:
    """The expected λ̂ of SGLD on the quadratic approximation of the identity model's loss at its minimum.

    For a loss ``½ wᵀHw`` localized by γ, every Hessian eigenvalue ``h > 0`` is a Gaussian mode with
    curvature ``a = nβ h + γ``; the discretized chain (step ε) has variance ``1 / (a (1 − ε a / 4))``
    there, so ``E[nβ · ½ h w²] = ½ nβ h / (a (1 − ε a / 4))`` (→ ½ per mode as γ, ε → 0: λ = d/2).
    The Hessian comes from autograd on the exact float64 loss, independently of the estimator.
    """
    n_features = points.shape[2]
    xT = points.double().transpose(1, 2)  # (1, n_features, n)

    def loss(flat: torch.Tensor) -> torch.Tensor:
        W, b = flat[: n_features**2].view(1, n_features, n_features), flat[n_features**2:].view(1, n_features, 1)
        return (torch.baddbmm(b, W.transpose(1, 2), torch.bmm(W, xT)) - xT).square().mean()

    start = torch.cat([torch.eye(n_features).flatten(), torch.zeros(n_features)]).double()
    h = torch.linalg.eigvalsh(torch.autograd.functional.hessian(loss, start))
    h = h[h > 1e-9]  # the orbit W → QW is exactly flat: F(F-1)/2 zero eigenvalues
    s = settings.resolved()
    a = s.nbeta * h + s.gamma
    return float((0.5 * s.nbeta * h / (a * (1 - s.epsilon * a / 4))).sum())


@pytest.fixture
def one_thread():
    """The statistical checks run thousands of steps on tensors of a few thousand numbers, where
    threads only add synchronization (a lot of it on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- the regular model: λ̂ = d/2 with the defaults --------------------------------------------------


@pytest.fixture(scope="module")
def regular_points() -> dict[int, torch.Tensor]:
    return {n_features: chen_points(10_000, n_features) for n_features in (3, 6)}


@pytest.mark.parametrize("n_features", [3, 6])
def test_defaults_give_half_the_free_parameters_at_a_regular_minimum(regular_points, n_features, one_thread):
    """At ``W = I`` the linear model is regular in ``d = F(F+1)/2 + F`` parameters: λ = d/2 (4.5 and 13.5)."""
    points = regular_points[n_features]
    estimate = estimate_llc(identity_model(n_features), points, LLCSettings())
    half_d = (n_features * (n_features + 1) / 2 + n_features) / 2
    assert float(estimate.init_loss[0]) == 0.0  # an exact minimum
    assert abs(float(estimate.mean[0]) / half_d - 1) < 0.1, (float(estimate.mean[0]), half_d)  # measured 1.01 and 0.99
    assert estimate.warnings == ()  # settled, positive, finite


def test_strong_localization_pulls_the_estimate_down_as_the_quadratic_form_says(regular_points, one_thread):
    """With 10 × the default γ the estimate drops a quarter below d/2, to the Gaussian modes' value."""
    points = regular_points[6]
    settings = LLCSettings(gamma=10 * LLCSettings().resolved().gamma)
    estimate = estimate_llc(identity_model(6), points, settings)
    reference = quadratic_reference(points, settings)
    assert reference < 0.8 * 13.5  # the localization's bias is large here, so the check discriminates
    assert abs(float(estimate.mean[0]) / reference - 1) < 0.06, (float(estimate.mean[0]), reference)  # measured 0.98


# --- devinterp -----------------------------------------------------------------------------------


def _hexagon(points: torch.Tensor) -> ReLUOutputModel:
    """A ReLU-output model near the hexagon minimum of 6 features in 2 dimensions on ``points``."""
    model = ReLUOutputModel(1, 6, 2)
    angles = torch.arange(6) * 2 * math.pi / 6
    with torch.no_grad():
        model.W.copy_(torch.stack([angles.cos(), angles.sin()]).unsqueeze(0))
        model.b.fill_(-0.2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        optimizer.zero_grad()
        model.per_feature_loss(points).mean().backward()
        optimizer.step()
    return model


@pytest.mark.parametrize("case", ["regular", "hexagon"])
def test_devinterp_agrees_within_the_chains_spread(case, one_thread):
    """One instance, the same weights, data, loss, ``L_n(w*)`` and hyperparameters through devinterp's sampler.

    Tolerance: the two means differ by at most 4 standard errors of their difference,
    ``4 · sqrt((s₁² + s₂²) / C)`` over ``C`` independent chains each, and the chains' spreads agree
    within a factor 3. The step size is 6.7 times the default (``ε nβ = 2``, both samplers share its
    bias): the chains mix within the burn-in, so the check is sharp. Measured: |difference| / spread
    1.7 (regular) and 1.3 (hexagon); with this estimator's noise scaled by 0.8, 20.2 and 6.3.
    """
    pytest.importorskip("devinterp")
    points = chen_points(4000, 3 if case == "regular" else 6, seed=1)
    model = identity_model(3) if case == "regular" else _hexagon(points)
    settings = LLCSettings(n=4000, epsilon=2 * math.log(4000) / 4000, n_chains=8, n_draws=300, n_burnin=100, seed=3)
    ours = estimate_llc(model, points, settings)
    theirs = devinterp_estimate(model, 0, points, settings, init_loss=float(ours.init_loss[0]))
    their_chains = torch.tensor([theirs[f"llc-chain/{c}"] for c in range(settings.n_chains)], dtype=torch.float64)
    assert their_chains.mean().item() == pytest.approx(theirs["llc/mean"], rel=1e-5)
    spread = math.sqrt((float(ours.std[0]) ** 2 + float(their_chains.std()) ** 2) / settings.n_chains)
    assert abs(float(ours.mean[0]) - theirs["llc/mean"]) <= 4 * spread, (float(ours.mean[0]), theirs["llc/mean"], spread)
    assert 1 / 3 < float(ours.std[0]) / float(their_chains.std()) < 3
    assert float(ours.mean[0]) > 1  # both measure something, not a degenerate 0


# --- independence ---------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["relu_output", "hidden_relu", "computation"])
def test_an_instance_alone_gives_bitwise_its_estimate_inside_the_batch(variant):
    """Instance 7 of 16, estimated alone (a one-instance model, key 7) or inside the batch: the same bits."""
    cls = VARIANTS[variant]
    model = cls(16, 6, 3, init_seeds=11)
    points = chen_points(3000, 6, seed=2, rows=16)
    target = "identity"
    if variant == "computation":
        points = points * (torch.rand(points.shape, generator=torch.Generator().manual_seed(4)) < 0.5).mul(2).sub(1)
        target = "abs"
    importance = 0.9 ** torch.arange(6.0)
    settings = LLCSettings(n=3000, n_chains=4, n_draws=30, n_burnin=10, batch_size=300, seed=9)
    batched = estimate_llc(model, points, settings, importance, target)
    alone = cls(1, 6, 3)
    with torch.no_grad():
        for name in model.parameter_names:
            getattr(alone, name).copy_(getattr(model, name)[7:8])
    solo = estimate_llc(alone, points[7:8], settings, importance, target, instance_keys=[7])
    picked = estimate_llc(model, points, settings, importance, target, instances=[7])
    for single in (solo, picked):
        assert torch.equal(single.traces[0], batched.traces[7])
        assert torch.equal(single.init_loss[0], batched.init_loss[7])
        assert torch.equal(single.per_chain[0], batched.per_chain[7])
    assert not torch.equal(batched.traces[7], batched.traces[8])  # instances do differ


def test_a_shared_sample_and_a_single_chain_are_independent_too():
    model = ReLUOutputModel(5, 6, 2, init_seeds=0)
    points = chen_points(2000, 6, seed=5)  # (1, n, n_features): every instance's data
    settings = LLCSettings(n=2000, n_chains=1, n_draws=20, n_burnin=5, batch_size=128)
    batched = estimate_llc(model, points, settings)
    alone = estimate_llc(model, points, settings, instances=[3])
    assert torch.equal(alone.traces[0], batched.traces[3]) and torch.equal(alone.init_loss[0], batched.init_loss[3])
    assert torch.isnan(batched.std).all()  # no spread from one chain


def test_the_model_and_the_global_random_state_are_left_alone():
    model = ReLUOutputModel(3, 6, 2, init_seeds=0)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    rng = torch.get_rng_state()
    calls = []
    with torch.no_grad():  # as a callback may call it
        estimate_llc(model, chen_points(500, 6), LLCSettings(n=500, n_chains=2, n_draws=6, n_burnin=2, batch_size=50),
                     progress=lambda done, total: calls.append((done, total)))
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)
    assert calls == [(step, 8) for step in range(1, 9)]  # once per step, burn-in included


def test_the_counter_based_randomness_is_splitmix64_and_normal():
    from scipy import stats

    def reference(x: int) -> int:
        """SplitMix64's output function on Python integers, as its author wrote it (Vigna 2015)."""
        x = (x + 0x9E3779B97F4A7C15) % 2**64
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) % 2**64
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) % 2**64
        return x ^ (x >> 31)

    def signed(values: list[int]) -> torch.Tensor:
        return torch.tensor([v - 2**64 if v >= 2**63 else v for v in values])

    # SplitMix64's published test vector: the first outputs of the generator seeded with 1234567.
    states = signed([(1234567 + j * 0x9E3779B97F4A7C15) % 2**64 for j in range(5)])
    vector = [6457827717110365317, 3203168211198807973, 9817491932198370423, 4593380528125082431, 16408922859458223821]
    assert [int(h) % 2**64 for h in splitmix64(states)] == vector
    values = [0, 1, 7, 2**63 - 1, 2**63, 2**64 - 1, 0x9E3779B97F4A7C15, *range(1000, 1100)]
    assert [int(h) % 2**64 for h in splitmix64(signed(values))] == [reference(v) for v in values]
    keys = torch.arange(4000)
    z = normals(keys, 50)  # (4000, 50)
    assert stats.kstest(z.flatten().double().numpy(), "norm").pvalue > 1e-3
    order = torch.randperm(4000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(normals(keys[order], 50), z[order])  # each row a pure function of its key


# --- diagnostics ----------------------------------------------------------------------------------


def test_a_diverging_instance_is_flagged_and_does_not_touch_its_neighbour():
    points = chen_points(2000, 3, seed=6)
    model = identity_model(3, n_instances=2)
    settings = LLCSettings(n=2000, n_chains=3, n_draws=40, n_burnin=5, batch_size=100)
    importance = torch.tensor([[1.0], [1e7]])  # instance 1's steps are far too large
    both = estimate_llc(model, points, settings, importance)
    alone = estimate_llc(model, points, settings, importance, instances=[0])
    assert {(w.instance, w.chain, w.kind) for w in both.warnings} == {(1, c, "nonfinite") for c in range(3)}
    assert torch.equal(both.traces[0], alone.traces[0]) and torch.isfinite(both.traces[0]).all()
    assert math.isnan(float(both.mean[1]))


def test_weights_off_the_minimum_give_a_negative_estimate_and_a_warning(one_thread):
    points = chen_points(2000, 3, seed=7)
    estimate = estimate_llc(identity_model(3, scale=1.2), points, LLCSettings(n=2000, n_chains=4, n_draws=200, n_burnin=50))
    assert (estimate.per_chain < 0).all()
    assert [w.kind for w in estimate.warnings] == ["negative"] * 4
    assert "< 0" in estimate.warnings[0].message


def test_chains_that_have_not_settled_are_flagged_as_a_trend(one_thread):
    """A step size 100 times too small and no burn-in: the loss still rises from ``L_n(w*)`` through the draws."""
    points = chen_points(10_000, 3, seed=8)
    settings = LLCSettings(epsilon=LLCSettings().resolved().epsilon / 100, n_chains=8, n_draws=1000, n_burnin=0)
    estimate = estimate_llc(identity_model(3), points, settings)
    (warning,) = estimate.warnings
    assert warning.kind == "trend" and warning.chain is None
    assert (estimate.drift[0] > 0).all() and float(estimate.drift_pvalue[0]) < 1e-3  # measured 3e-4
    assert float(estimate.mean[0]) < 0.5 * 4.5  # the estimate it warns about is far off


def test_the_record_is_json_with_the_resolved_hyperparameters():
    settings = LLCSettings(n=1000, n_chains=2, n_draws=8, n_burnin=2, batch_size=64)
    estimate = estimate_llc(identity_model(3), chen_points(1000, 3), settings)
    record = json.loads(json.dumps(estimate.record(0)))
    assert set(record) == {"mean", "std", "per_chain", "init_loss", "settings", "warnings"}
    assert len(record["per_chain"]) == 2
    assert record["settings"]["nbeta"] == pytest.approx(1000 / math.log(1000))
    assert record["settings"]["epsilon"] == pytest.approx(0.3 / record["settings"]["nbeta"])
    assert record["settings"]["gamma"] == pytest.approx(record["settings"]["nbeta"] / 400)


def test_the_record_of_one_chain_or_a_diverged_chain_is_strict_json():
    """No NaN in report.json: the std of one chain and a diverged chain's λ̂ are null, with a warning for the latter."""
    settings = LLCSettings(n=1000, n_chains=1, n_draws=8, n_burnin=2, batch_size=64)
    importance = torch.tensor([[1.0], [1e7]])  # instance 1's steps are far too large: it diverges
    estimate = estimate_llc(identity_model(3, n_instances=2), chen_points(1000, 3), settings, importance)
    calm, diverged = (json.loads(json.dumps(estimate.record(i), allow_nan=False)) for i in (0, 1))
    assert calm["std"] is None and calm["mean"] == pytest.approx(float(estimate.mean[0]))
    assert diverged["mean"] is None and diverged["per_chain"] == [None] and "not finite" in diverged["warnings"][0]


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n", 1), ("n", 10.5), ("nbeta", 0.0), ("nbeta", -3.0), ("nbeta", math.inf), ("epsilon", 0),
        ("epsilon", math.nan), ("gamma", -1.0), ("gamma", "strong"), ("n_chains", 0), ("n_draws", 0),
        ("n_burnin", -1), ("batch_size", 0), ("batch_size", 20_000), ("seed", -1), ("seed", 2**64), ("n_chains", True),
    ],
)
def test_bad_hyperparameters_are_one_line_errors_naming_the_field(field, value):
    with pytest.raises(ConfigError) as error:
        LLCSettings(**{field: value})
    message = str(error.value)
    assert "\n" not in message and f"llc.{field}" in message and repr(value) in message


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"sample": torch.zeros(2, 100, 6)}, "shape"),
        ({"sample": torch.zeros(1, 99, 6)}, "llc.n is 100"),
        ({"sample": torch.zeros(1, 100, 6, dtype=torch.int64)}, "floating"),
        ({"importance": torch.ones(4)}, "importance"),
        ({"instances": [3]}, "instances"),
        ({"instance_keys": [0, 1]}, "instance_keys"),
        ({"target": "square"}, "target"),
    ],
)
def test_bad_inputs_are_one_line_errors(change, words):
    model = ReLUOutputModel(3, 6, 2)
    arguments = {
        "sample": torch.zeros(1, 100, 6), "importance": 1.0, "target": "identity", "instances": None, "instance_keys": None,
    }
    arguments.update(change)
    with pytest.raises(ConfigError) as error:
        estimate_llc(model, arguments.pop("sample"), LLCSettings(n=100, batch_size=10), **arguments)
    assert "\n" not in str(error.value) and words in str(error.value)
