"""Checks of ``analysis.theory`` against brute-force Monte Carlo, published numbers and its own invariants."""

from __future__ import annotations

import math

import pytest
import torch

from lit_superposition.analysis.theory import (
    best_kgon,
    chen_closed_form_loss,
    chen_feature_terms,
    expected_loss,
    kgon_solutions,
    kgon_weights,
    optimize_template,
    template_loss,
)

DTYPE = torch.float64


@pytest.fixture(autouse=True)
def one_thread():
    # The test machine is shared; many small tensor ops run much faster without thread hand-offs.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def brute_force(W, b, p, importance=1.0, *, variant="relu_output", correlated=(), anticorrelated=(),
                samples=2_000_000, seed=1234):
    """Mean and standard error of the instance loss over ``samples`` fresh draws (written apart from theory.py)."""
    n_instances, _, n_features = W.shape
    p = torch.as_tensor(p, dtype=DTYPE).expand(n_features)
    importance = torch.as_tensor(importance, dtype=DTYPE).expand(n_features)
    generator = torch.Generator().manual_seed(seed)
    total = torch.zeros(n_instances, dtype=DTYPE)
    total_sq = torch.zeros(n_instances, dtype=DTYPE)
    chunk = 1 << 17
    for start in range(0, samples, chunk):
        size = min(chunk, samples - start)
        values = 1 - torch.rand(size, n_features, generator=generator, dtype=DTYPE)  # (size, n_features) in (0, 1]
        on = torch.rand(size, n_features, generator=generator, dtype=DTYPE) < p
        for members in correlated:
            on[:, members] = torch.rand(size, 1, generator=generator, dtype=DTYPE) < p[members[0]]
        for members in anticorrelated:
            # Category 0: none of the set; category j: member j - 1 alone.
            weights = torch.cat([1 - p[members].sum().reshape(1), p[members]]).clamp_min(0)
            pick = torch.multinomial(weights, size, replacement=True, generator=generator)
            on[:, members] = pick.unsqueeze(1) == torch.arange(1, len(members) + 1)
        x = values * on  # (size, n_features), shared by all instances
        hidden = torch.einsum("idf,bf->ibd", W, x)  # (n_instances, size, d_hidden)
        if variant == "hidden_relu":
            hidden = torch.relu(hidden)
        out = torch.einsum("idf,ibd->ibf", W, hidden) + b.unsqueeze(1)
        if variant != "linear_output":
            out = torch.relu(out)
        loss = (importance * (x - out) ** 2).mean(2)  # (n_instances, size)
        total += loss.sum(1)
        total_sq += (loss**2).sum(1)
    mean = total / samples
    return mean, ((total_sq / samples - mean**2) / (samples - 1)).sqrt()


def assert_agrees(result, mean, stderr):
    """Within 4 Monte Carlo standard errors plus the stated bound; and the check has power (SE < 1% of the loss)."""
    assert (stderr < 0.01 * mean).all(), f"brute force too noisy to test anything: {stderr / mean}"
    gap = (result.per_instance - mean).abs()
    allowed = 4 * stderr + result.error_bound
    assert (gap <= allowed).all(), f"gap {gap.tolist()} > allowed {allowed.tolist()}"
    torch.testing.assert_close(result.per_instance, result.per_feature.mean(1))


def random_weights(n_instances, d_hidden, n_features, *, seed, scale=0.8, bias_scale=0.2):
    generator = torch.Generator().manual_seed(seed)
    W = scale * torch.randn(n_instances, d_hidden, n_features, generator=generator, dtype=DTYPE)
    b = bias_scale * torch.randn(n_instances, n_features, generator=generator, dtype=DTYPE)
    return W, b


# ------------------------------------------------------------------------------------------------------------
# expected_loss against brute force
# ------------------------------------------------------------------------------------------------------------


def test_sparse_two_dimensional_five_features_matches_brute_force():
    pentagon_W, pentagon_b = kgon_weights(5, 5, 1.13, -0.25)
    W, b = random_weights(2, 2, 5, seed=0)
    W = torch.cat([pentagon_W.unsqueeze(0), W])  # (3, 2, 5)
    b = torch.cat([pentagon_b.unsqueeze(0), b])
    b[2] = b[2].abs()  # one instance with all-positive biases
    result = expected_loss(W, b, 0.05)
    assert result.method == "exact+qmc"
    assert (result.error_bound < 1e-4 * result.per_instance).all()  # far beyond what training batches resolve
    assert_agrees(result, *brute_force(W, b, 0.05))


def test_three_dimensional_six_features_matches_brute_force():
    W, b = random_weights(2, 3, 6, seed=1)
    importance = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5]
    result = expected_loss(W, b, 0.1, importance)
    assert_agrees(result, *brute_force(W, b, 0.1, importance))


@pytest.mark.parametrize("p, n_features", [(0.5, 5), (1.0, 6)])
def test_dense_features_match_brute_force(p, n_features):
    W, b = random_weights(2, 2, n_features, seed=2)
    result = expected_loss(W, b, p)
    assert (result.error_bound > 0).all()  # patterns with ≥ 4 active features are estimated, and say so
    assert_agrees(result, *brute_force(W, b, p))


def test_three_features_are_exact_even_when_all_are_active():
    W, b = random_weights(2, 2, 3, seed=3, scale=1.0, bias_scale=0.4)
    result = expected_loss(W, b, 1.0)
    assert result.method == "exact" and (result.error_bound == 0).all()
    assert_agrees(result, *brute_force(W, b, 1.0))


def test_patterns_of_three_match_a_fine_slicing_of_the_third_input():
    # Slice the third input: a midpoint rule over its value of exact two-input losses (bias shifted by G·w).
    W, b = random_weights(1, 2, 3, seed=11, scale=1.0, bias_scale=0.4)
    exact = expected_loss(W, b, 1.0).per_feature[0, :2]
    G = W[0].T @ W[0]  # (3, 3)
    nodes = (torch.arange(4000, dtype=DTYPE) + 0.5) / 4000
    sliced_b = b[0, :2] + nodes.unsqueeze(1) * G[:2, 2]  # (4000, 2)
    sliced = expected_loss(W[:, :, :2].expand(4000, -1, -1), sliced_b, 1.0).per_feature.mean(0)
    torch.testing.assert_close(exact, sliced, rtol=1e-6, atol=0)


def test_correlated_and_anticorrelated_sets_match_brute_force():
    W, b = random_weights(2, 2, 7, seed=4)
    p = [0.2, 0.2, 0.2, 0.1, 0.3, 0.25, 0.05]
    sets = {"correlated": ([0, 1, 2],), "anticorrelated": ([3, 4, 5],)}
    result = expected_loss(W, b, p, correlated_sets=sets["correlated"], anticorrelated_sets=sets["anticorrelated"])
    assert_agrees(result, *brute_force(W, b, p, **sets))
    # The sets matter: the same weights with independent features have a clearly different loss.
    independent = expected_loss(W, b, p)
    assert ((independent.per_instance - result.per_instance).abs() > 0.01 * result.per_instance).any()


def test_linear_output_is_exact_with_sets():
    W, b = random_weights(2, 3, 7, seed=5)
    p = [0.3, 0.3, 0.1, 0.2, 0.4, 0.3, 0.6]
    sets = {"correlated": ([0, 1],), "anticorrelated": ([2, 3, 4],)}
    result = expected_loss(W, b, p, variant="linear_output", correlated_sets=sets["correlated"],
                           anticorrelated_sets=sets["anticorrelated"])
    assert result.method == "exact" and (result.error_bound == 0).all()
    assert_agrees(result, *brute_force(W, b, p, variant="linear_output", **sets))


def test_hidden_relu_and_many_features_fall_back_to_monte_carlo():
    W, b = random_weights(2, 3, 5, seed=6)
    result = expected_loss(W, b, 0.3, variant="hidden_relu", mc_samples=1 << 17)
    assert result.method == "monte_carlo" and (result.error_bound > 0).all()
    mean, stderr = brute_force(W, b, 0.3, variant="hidden_relu", samples=500_000)
    assert ((result.per_instance - mean).abs() <= 4 * torch.hypot(stderr, result.error_bound)).all()

    W, b = random_weights(2, 5, 20, seed=7, scale=0.5)
    sets = {"correlated": ([0, 1, 2, 3],), "anticorrelated": ([4, 5, 6, 7, 8],)}
    result = expected_loss(W, b, 0.1, mc_samples=1 << 17, correlated_sets=sets["correlated"],
                           anticorrelated_sets=sets["anticorrelated"])
    assert result.method == "monte_carlo"
    mean, stderr = brute_force(W, b, 0.1, samples=500_000, **sets)
    assert ((result.per_instance - mean).abs() <= 4 * torch.hypot(stderr, result.error_bound)).all()


def test_expected_loss_is_differentiable():
    W, b = random_weights(1, 2, 5, seed=8)
    W.requires_grad_(True)
    (grad,) = torch.autograd.grad(expected_loss(W, b, 0.1).per_instance.sum(), W)
    step = 1e-6
    W_plus = W.detach().clone()
    W_plus[0, 1, 3] += step
    W_minus = W.detach().clone()
    W_minus[0, 1, 3] -= step
    numeric = (expected_loss(W_plus, b, 0.1).per_instance - expected_loss(W_minus, b, 0.1).per_instance) / (2 * step)
    assert grad[0, 1, 3].item() == pytest.approx(numeric.item(), rel=1e-5)


# ------------------------------------------------------------------------------------------------------------
# Chen et al. (2023)
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d_hidden, c", [(2, 5), (3, 6)])
def test_chen_closed_form_matches_one_hot_expected_loss(d_hidden, c):
    W, b = random_weights(4, d_hidden, c, seed=10 + c, scale=1.0, bias_scale=0.5)
    b[0] = b[0].abs()  # all biases positive
    b[1] = -b[1].abs()  # all negative
    W[2, :, 0] = 0.0  # a dead feature
    b[2, 0] = -0.1
    polygon_W, polygon_b = kgon_weights(5, c, 1.17046, -0.28230) if d_hidden == 2 else (None, None)
    if polygon_W is not None:
        W[3], b[3] = polygon_W, polygon_b
    # Their distribution: exactly one feature on, uniform among the c: one anticorrelated set with p = 1/c.
    result = expected_loss(W, b, 1 / c, anticorrelated_sets=[list(range(c))])
    assert result.method == "exact"
    torch.testing.assert_close(result.per_feature * 3 * c, chen_feature_terms(W, b), rtol=1e-6, atol=1e-12)
    torch.testing.assert_close(result.per_instance * c, chen_closed_form_loss(W, b), rtol=1e-6, atol=1e-12)
    assert chen_feature_terms(W, b)[2, 0].item() == pytest.approx(1.0)  # a dead feature adds exactly 1 to H


def test_chen_closed_form_reproduces_published_kgons():
    # k-gon critical points (norm l*, bias b*) and losses L(k, c) = (h_k + c - k) / (3c) reported by Chen et al.
    pentagon = torch.tensor([1.17046, -0.28230], dtype=DTYPE, requires_grad=True)
    W, b = kgon_weights(5, 5, pentagon[0], pentagon[1])
    loss = chen_closed_form_loss(W, b)
    assert 15 * loss.item() == pytest.approx(0.23738, abs=5e-6)  # h_5, published to 5 decimals
    (grad,) = torch.autograd.grad(loss, pentagon)
    assert grad.abs().max().item() < 1e-4  # the published point is a critical point of our formula

    assert chen_closed_form_loss(*kgon_weights(6, 6, 1.32053, -0.61814)).item() == pytest.approx(0.04819, abs=1e-5)
    assert chen_feature_terms(*kgon_weights(7, 7, 1.44839, -0.96691)).sum().item() == pytest.approx(1.74870, abs=1e-4)
    assert chen_closed_form_loss(*kgon_weights(5, 6, 1.17046, -0.28230)).item() == pytest.approx(0.06874, abs=1e-5)
    # "5⁺": the unused feature at its best positive bias 1/(2c) saves exactly 1/144.
    plus = chen_closed_form_loss(*kgon_weights(5, 6, 1.17046, -0.28230, [0.0] * 5 + [1 / 12]))
    assert plus.item() == pytest.approx(0.06874 - 1 / 144, abs=1e-5)
    assert chen_closed_form_loss(*kgon_weights(4, 5, 1.0, 0.0)).item() == pytest.approx(1 / 15)


# ------------------------------------------------------------------------------------------------------------
# k-gon templates
# ------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def six_feature_solutions():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    solutions = kgon_solutions(6, 0.057)
    torch.set_num_threads(previous)
    return solutions


def test_kgon_weights_geometry():
    W, b = kgon_weights(5, 7, 1.2, -0.3, 0.05, features=[6, 0, 1, 2, 3])
    assert W.shape == (2, 7) and b.shape == (7,)
    on = [6, 0, 1, 2, 3]
    torch.testing.assert_close(W[:, on].norm(dim=0), torch.full((5,), 1.2, dtype=DTYPE))
    cosines = (W[:, on].T @ W[:, on]) / 1.2**2
    torch.testing.assert_close(cosines[0, 1], torch.tensor(math.cos(2 * math.pi / 5), dtype=DTYPE))
    assert (W[:, [4, 5]] == 0).all() and b[[4, 5]].tolist() == [0.05, 0.05]
    assert b[on].tolist() == [-0.3] * 5


def test_pentagon_is_best_for_five_sparse_features():
    solutions = kgon_solutions(5, 0.05)
    assert [s.k for s in solutions] == [1, 2, 3, 4, 5]
    pentagon = best_kgon(solutions)
    assert pentagon.k == 5
    # A trained model learns a regular pentagon with norms ≈ 1.13 and a slightly negative bias.
    assert 1.05 < pentagon.norm < 1.25 and pentagon.bias < 0
    assert all(s.loss > pentagon.loss for s in solutions if s.k != 5)


def test_six_features_pentagon_versus_hexagon(six_feature_solutions):
    losses = {s.k: s.loss for s in six_feature_solutions}
    best = best_kgon(six_feature_solutions)
    assert best.loss == min(losses.values()) and best.k == min(losses, key=losses.get)
    assert losses[5] < losses[2] and losses[6] < losses[2]
    # Exact numbers, checked once against 8.4M brute-force samples: hexagon lower by 1.43e-4 ± 0.06e-4.
    assert losses[6] < losses[5]
    for s in six_feature_solutions:
        print(f"6 features, p=0.057: k={s.k} loss={s.loss:.8f} norm={s.norm:.5f} bias={s.bias:.5f}")


def test_template_loss_equals_solution_loss(six_feature_solutions):
    p = 0.057
    for solution in six_feature_solutions:
        W, b = kgon_weights(solution.k, 6, solution.norm, solution.bias, p / 2)
        assert expected_loss(W, b, p).per_instance.item() == pytest.approx(solution.loss, rel=1e-10)
        assert template_loss(solution.k, [p] * 6, 1.0, solution.norm, solution.bias) == pytest.approx(solution.loss,
                                                                                                         rel=1e-12)


def test_optimize_template_with_non_uniform_probabilities(six_feature_solutions):
    uniform = optimize_template(5, [0.057] * 6)
    pentagon = next(s for s in six_feature_solutions if s.k == 5)
    assert uniform.loss == pytest.approx(pentagon.loss, rel=1e-9)
    assert uniform.norm == pytest.approx(pentagon.norm, abs=1e-4)

    p = [0.05, 0.05, 0.05, 0.05, 0.02, 0.08]
    solution = optimize_template(5, p, features=[0, 1, 2, 3, 5])
    assert solution.features == (0, 1, 2, 3, 5)
    assert solution.loss == pytest.approx(template_loss(5, p, 1.0, solution.norm, solution.bias, solution.features))
    for d_norm, d_bias in [(0.02, 0.0), (-0.02, 0.0), (0.0, 0.02), (0.0, -0.02)]:
        nearby = template_loss(5, p, 1.0, solution.norm + d_norm, solution.bias + d_bias, solution.features)
        assert nearby > solution.loss


# ------------------------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda W, b: expected_loss(W, b, -0.1), "feature_probability must lie in"),
        (lambda W, b: expected_loss(W, b, 1.5), "feature_probability must lie in"),
        (lambda W, b: expected_loss(W[0, 0], b, 0.1), "W must be"),
        (lambda W, b: expected_loss(W.unsqueeze(0), b, 0.1), "W must be"),
        (lambda W, b: expected_loss(W, b[:, :3], 0.1), "b must be"),
        (lambda W, b: expected_loss(W, b, [0.1, 0.2]), "feature_probability has 2 entries"),
        (lambda W, b: expected_loss(W, b, 0.1, -1.0), "importance must be"),
        (lambda W, b: expected_loss(W, b, 0.5, anticorrelated_sets=[[0, 1, 2]]), "total feature_probability 1.5"),
        (lambda W, b: expected_loss(W, b, [0.1, 0.2, 0.1, 0.1], correlated_sets=[[0, 1]]), "share one"),
        (lambda W, b: expected_loss(W, b, 0.1, correlated_sets=[[0, 1]], anticorrelated_sets=[[1, 2]]),
         "more than one"),
        (lambda W, b: expected_loss(W, b, 0.1, correlated_sets=[[0, 9]]), "outside"),
        (lambda W, b: expected_loss(W, b, 0.1, variant="tanh"), "variant must be"),
        (lambda W, b: kgon_solutions(5, [0.05] * 5), "scalar feature_probability"),
        (lambda W, b: kgon_weights(6, 5, 1.0, 0.0), "k must be in"),
        (lambda W, b: template_loss(2, 0.05), "per-feature list"),
    ],
)
def test_bad_input_raises_clear_value_error(call, message):
    W, b = random_weights(2, 2, 4, seed=9)
    with pytest.raises(ValueError, match=message) as error:
        call(W, b)
    assert "\n" not in str(error.value)
