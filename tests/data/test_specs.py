import pytest
import torch

from scipy import stats

from lit_superposition.data.specs import (
    FeatureRamp,
    GeometricDecay,
    LogSweep,
    PerSetting,
    SeededRandom,
    SingleFeatureSweep,
    resolve_feature_probability,
    resolve_importance,
)
from lit_superposition.errors import ConfigError


def test_scalar_list_and_matrix_resolve_to_instance_by_feature():
    assert torch.equal(resolve_feature_probability(0.05, 3, 4), torch.full((3, 4), 0.05))
    per_feature = resolve_feature_probability([0.1, 0.2, 0.3, 0.4], 2, 4)
    assert torch.equal(per_feature[1], torch.tensor([0.1, 0.2, 0.3, 0.4]))
    matrix = [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]]
    assert torch.equal(resolve_feature_probability(matrix, 3, 2), torch.tensor(matrix))


def test_log_sweep_is_the_anthropic_notebook_sweep():
    p = resolve_feature_probability(LogSweep(start=1.0, end=0.05), 10, 5)
    expected = 20 ** -torch.linspace(0, 1, 10)
    torch.testing.assert_close(p[:, 0], expected)
    assert torch.equal(p[:, 0:1].expand(10, 5), p)


def test_geometric_decay_importance():
    importance = resolve_importance(GeometricDecay(base=0.9), 2, 5)
    torch.testing.assert_close(importance[0], 0.9 ** torch.arange(5.0))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: resolve_feature_probability(1.5, 2, 5), "feature_probability must be in (0, 1], got 1.5"),
        (lambda: resolve_feature_probability(0.0, 2, 5), "feature_probability must be in (0, 1], got 0"),
        (lambda: resolve_feature_probability([0.1, 0.2], 2, 5), "has 2 values, expected one per feature"),
        (lambda: resolve_feature_probability([[0.1] * 5], 2, 5), "matrix has shape (1, 5)"),
        (lambda: resolve_importance(-1.0, 2, 5), "importance must be finite and >= 0, got -1"),
        (lambda: resolve_importance([1, 1, float("nan"), 1, 1], 2, 5), "got nan (instance 0, feature 2)"),
        (lambda: LogSweep(start=0.0), "LogSweep start and end must be > 0"),
        (lambda: FeatureRamp(start=0.0, end=0.1), "FeatureRamp start and end must be > 0 with log spacing"),
        (lambda: FeatureRamp(0.1, 0.2, spacing="cubic"), "FeatureRamp spacing must be 'log' or 'linear'"),
        (lambda: SeededRandom(low=0.2, high=0.1), "SeededRandom needs low <= high"),
        (lambda: SeededRandom(low=0.0, high=0.1), "SeededRandom low must be > 0 when log_uniform"),
        (
            lambda: resolve_feature_probability(SingleFeatureSweep(0, 0.05, [1.0, 0.5]), 3, 5),
            "SingleFeatureSweep has 2 factors, expected one per setting (n_instances // repeats = 3)",
        ),
        (
            lambda: resolve_feature_probability(SingleFeatureSweep(7, 0.05, [1.0]), 1, 5),
            "SingleFeatureSweep feature 7 out of range: features are 0..4",
        ),
        (lambda: resolve_feature_probability(SingleFeatureSweep(0, 0.5, [3.0]), 1, 5), "got 1.5 (instance 0, feature 0)"),
        (lambda: resolve_importance(PerSetting([1.0, 2.0]), 3, 5), "PerSetting has 2 settings, expected one per setting"),
        (lambda: resolve_importance(1.0, 6, 5, repeats=4), "n_instances (6) must be a multiple of repeats (4)"),
        (lambda: resolve_importance(1.0, 6, 5, repeats=0), "repeats must be a positive integer, got 0"),
        (
            lambda: resolve_feature_probability([[0.1] * 5] * 6, 6, 5, repeats=2),
            "matrix has shape (6, 5), expected (n_instances // repeats, n_features) = (3, 5)",
        ),
    ],
)
def test_bad_values_raise_one_clear_line(call, message):
    with pytest.raises(ConfigError) as error:
        call()
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_feature_ramp_increases_or_decreases_along_features():
    down = resolve_feature_probability(FeatureRamp(start=0.1, end=0.01), 2, 5)
    torch.testing.assert_close(down[0], 0.1 * 0.1 ** torch.linspace(0, 1, 5))
    assert torch.equal(down[0], down[1]) and (down[0].diff() < 0).all()
    up = resolve_importance(FeatureRamp(start=0.5, end=1.0, spacing="linear"), 1, 6)
    torch.testing.assert_close(up[0], torch.linspace(0.5, 1.0, 6))


def test_seeded_random_is_reproducible_log_uniform_and_shared_by_instances():
    p = resolve_feature_probability(SeededRandom(low=0.01, high=0.1, seed=3), 4, 2000)
    assert torch.equal(p, resolve_feature_probability(SeededRandom(low=0.01, high=0.1, seed=3), 4, 2000))
    assert not torch.equal(p, resolve_feature_probability(SeededRandom(low=0.01, high=0.1, seed=4), 4, 2000))
    assert (p >= 0.01).all() and (p <= 0.1).all() and torch.equal(p[0], p[3])
    # log10 p is uniform on [-2, -1]
    assert stats.kstest((p[0].double().log10() + 2).numpy(), "uniform").pvalue > 1e-3
    linear = resolve_feature_probability(SeededRandom(0.2, 0.4, seed=0, log_uniform=False), 1, 2000)
    assert stats.kstest(((linear[0].double() - 0.2) / 0.2).numpy(), "uniform").pvalue > 1e-3
    per_instance = resolve_feature_probability(SeededRandom(0.01, 0.1, per_instance=True), 4, 5)
    assert not torch.equal(per_instance[0], per_instance[1])


def test_single_feature_sweep_varies_one_feature_per_setting():
    p = resolve_feature_probability(SingleFeatureSweep(feature=2, base=0.05, factors=[2.0, 1.0, 0.4]), 3, 5)
    torch.testing.assert_close(p[:, 2], torch.tensor([0.1, 0.05, 0.02]))
    others = p[:, [0, 1, 3, 4]]
    assert torch.equal(others, torch.full_like(others, 0.05))


def test_per_setting_stacks_one_spec_per_setting():
    importance = resolve_importance(PerSetting([GeometricDecay(0.9), 1.0, [1, 2, 3, 4, 5]]), 3, 5)
    torch.testing.assert_close(importance[0], 0.9 ** torch.arange(5.0))
    assert torch.equal(importance[1], torch.ones(5)) and torch.equal(importance[2], torch.arange(1.0, 6.0))


def test_repeats_resolve_per_setting_then_repeat_each_row():
    p = resolve_feature_probability(LogSweep(start=1.0, end=0.05), 12, 3, repeats=4)  # 3 settings x 4
    expected = (20 ** -torch.linspace(0, 1, 3)).repeat_interleave(4)
    torch.testing.assert_close(p[:, 0], expected)
    matrix = resolve_importance([[1.0, 2.0], [3.0, 4.0]], 6, 2, repeats=3)
    assert torch.equal(matrix, torch.tensor([[1.0, 2.0]] * 3 + [[3.0, 4.0]] * 3))
    sweep = resolve_feature_probability(SingleFeatureSweep(0, 0.05, [1.0, 0.5]), 4, 2, repeats=2)
    torch.testing.assert_close(sweep[:, 0], torch.tensor([0.05, 0.05, 0.025, 0.025]))
    # Per-feature and scalar specs are unaffected by repeats.
    assert torch.equal(resolve_importance(GeometricDecay(0.5), 4, 3, repeats=2), resolve_importance(GeometricDecay(0.5), 4, 3))
