"""Correlated and anticorrelated feature sets: exact co-activation, exclusion, marginals, magnitudes."""

import pytest
import torch
from scipy import stats

from lit_superposition.data import SparseFeatureDataModule, step_seed
from lit_superposition.errors import ConfigError

# 10 features: a correlated pair, a correlated triple, an anticorrelated pair, an anticorrelated
# triple with unequal p (the categorical generalization), and one independent feature.
CORRELATED = [[0, 1], [2, 3, 4]]
ANTICORRELATED = [[5, 6], [7, 8, 9]]
P = [
    # 0    1    2     3     4     5    6    7     8     9
    [0.1, 0.1, 0.3, 0.3, 0.3, 0.2, 0.2, 0.1, 0.3, 0.05],
    [0.5, 0.5, 0.05, 0.05, 0.05, 0.5, 0.5, 0.3, 0.3, 0.3],  # k·p = 1 exactly for [5, 6]
    [0.1, 0.1, 0.3, 0.3, 0.3, 0.2, 0.2, 0.1, 0.3, 0.05],  # same as instance 0
]
N_FEATURES = 10


def _data(instance_data, **kwargs):
    return SparseFeatureDataModule(
        3, N_FEATURES, feature_probability=P, batch_size=4096, instance_data=instance_data,
        correlated_sets=CORRELATED, anticorrelated_sets=ANTICORRELATED, **kwargs,
    )


def _stack(data, steps):
    return torch.cat([data.make_batch(step) for step in range(steps)], dim=1)  # (3, steps * 4096, 10)


@pytest.fixture(scope="module", params=["shared", "independent"])
def sample(request):
    return _stack(_data(request.param), 10)


def test_correlated_sets_are_all_active_or_none_exactly(sample):
    active = sample > 0
    for features in CORRELATED:
        first = active[..., features[0]]
        for f in features[1:]:
            assert torch.equal(active[..., f], first), (features, f)
        assert first.any() and not first.all()


def test_anticorrelated_sets_never_have_two_active(sample):
    active = sample > 0
    for features in ANTICORRELATED:
        assert active[..., features].sum(dim=-1).max() == 1


def test_every_marginal_frequency_within_three_standard_errors(sample):
    n = sample.shape[1]
    p = torch.tensor(P, dtype=torch.float64)
    frequency = (sample > 0).double().mean(dim=1)  # (3, 10)
    standard_error = (p * (1 - p) / n).sqrt()
    assert ((frequency - p).abs() <= 3 * standard_error).all(), (frequency, p)


def test_anticorrelated_set_is_active_with_probability_sum_of_p(sample):
    n = sample.shape[1]
    for features in ANTICORRELATED:
        total = torch.tensor(P, dtype=torch.float64)[:, features].sum(dim=1)  # (3,)
        frequency = (sample[..., features] > 0).any(dim=-1).double().mean(dim=1)
        standard_error = (total * (1 - total) / n).sqrt()
        assert ((frequency - total).abs() <= 3 * standard_error + 1e-12).all(), (features, frequency, total)


def test_active_magnitudes_are_uniform_on_open_zero_to_one(sample):
    for i in range(3):
        for f in range(N_FEATURES):
            active = sample[i, :, f][sample[i, :, f] > 0].double().numpy()
            assert stats.kstest(active, "uniform").pvalue > 1e-3, (i, f)
            assert active.max() <= 1.0


def test_magnitudes_inside_a_correlated_set_are_independent(sample):
    for features in CORRELATED:
        both = sample[0, :, features[0]] > 0
        a, b = sample[0, both, features[0]].double(), sample[0, both, features[1]].double()
        r = torch.corrcoef(torch.stack([a, b]))[0, 1]
        assert r.abs() < 4 / both.sum().sqrt(), r  # ~4 standard errors of a zero correlation


def test_shared_mode_instances_with_equal_p_see_identical_data():
    x = _data("shared").make_batch(step=3)
    assert torch.equal(x[0], x[2])
    assert not torch.equal(_data("independent").make_batch(step=3)[0], _data("independent").make_batch(step=3)[2])


def test_batches_with_sets_are_pure_functions_of_seed_rank_and_step():
    data, again = _data("shared", data_seed=5), _data("shared", data_seed=5)
    assert torch.equal(data.make_batch(9, rank=1), again.make_batch(9, rank=1))
    assert not torch.equal(data.make_batch(9, rank=0), data.make_batch(9, rank=1))
    assert not torch.equal(data.make_batch(9), data.make_batch(10))


def test_sets_reuse_the_plain_streams_uniforms():
    # The first member of each set reads its own uniform with the plain interval [0, p) as well.
    plain = SparseFeatureDataModule(3, N_FEATURES, feature_probability=P, batch_size=4096)
    assert not plain.feature_sets
    x, y = plain.make_batch(4)[..., [0, 2, 5, 7]], _data("shared").make_batch(4)[..., [0, 2, 5, 7]]
    assert torch.equal(x > 0, y > 0)
    torch.testing.assert_close(x, y)


def test_no_sets_path_is_the_single_uniform_draw():
    data = SparseFeatureDataModule(2, 4, feature_probability=0.25, batch_size=64, data_seed=1)
    generator = torch.Generator().manual_seed(step_seed(1, 0, 6))
    u = torch.rand(1, 64, 4, generator=generator)
    expected = torch.where(u < 0.25, 1 - u / 0.25, 0.0).expand(2, 64, 4)
    torch.testing.assert_close(data.make_batch(6), expected)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"correlated_sets": [[0, 1], [1, 2]]}, "feature 1 is in two sets (correlated_sets [0, 1] and correlated_sets [1, 2])"),
        ({"correlated_sets": [[0, 1]], "anticorrelated_sets": [[1, 2]]}, "feature 1 is in two sets"),
        ({"anticorrelated_sets": [[3, 3]]}, "feature 3 is in two sets"),
        ({"correlated_sets": [[0, 5]]}, "correlated_sets [0, 5]: feature index 5 out of range: features are 0..4"),
        ({"anticorrelated_sets": [[-1, 2]]}, "feature index -1 out of range"),
        ({"correlated_sets": [[2]]}, "correlated_sets [2] has 1 feature(s): a set needs at least 2"),
        (
            {"feature_probability": 0.4, "anticorrelated_sets": [[0, 1, 2]]},
            "anticorrelated_sets [0, 1, 2] is active with probability k·p = Σp = 1.2 > 1",
        ),
        (
            {"feature_probability": [0.1, 0.2, 0.1, 0.1, 0.1], "correlated_sets": [[0, 1]]},
            "correlated_sets [0, 1] needs equal feature_probability within the set, got 0.1 (feature 0) and 0.2",
        ),
        ({"n_instances": 6, "repeats": 4}, "n_instances (6) must be a multiple of repeats (4)"),
        ({"repeats": 0}, "repeats must be a positive integer, got 0"),
    ],
)
def test_bad_sets_raise_one_clear_line(kwargs, message):
    kwargs = {"n_instances": 2, "n_features": 5, **kwargs}
    with pytest.raises(ConfigError) as error:
        SparseFeatureDataModule(**kwargs)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_exactly_one_active_is_chen_et_al_s_law():
    from scipy.stats import chisquare

    data = SparseFeatureDataModule(2, 6, exactly_one_active=True, batch_size=6000)
    x = data.make_batch(3)  # (2, 6000, 6)
    assert ((x != 0).sum(dim=2) == 1).all()  # exactly one active feature in every point
    counts = (x[0] != 0).sum(dim=0).tolist()
    assert chisquare(counts).pvalue > 1e-3  # chosen uniformly
    active = x[x != 0]
    assert 0 < float(active.min()) and float(active.max()) <= 1  # the usual magnitudes
    with pytest.raises(ConfigError, match="exactly_one_active makes every feature one anticorrelated set"):
        SparseFeatureDataModule(2, 6, exactly_one_active=True, correlated_sets=[[0, 1]])
