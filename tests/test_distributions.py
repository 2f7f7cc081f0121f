import pytest
import torch

from lit_superposition.distributions import (
    GeometricDecay,
    LogSweep,
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
    ],
)
def test_bad_values_raise_one_clear_line(call, message):
    with pytest.raises(ConfigError) as error:
        call()
    assert message in str(error.value)
    assert "\n" not in str(error.value)
