"""Signed values (``values: signed``) and the ``target`` option: distribution, exact map, sets, bad input."""

import pytest
import torch
from scipy import stats

from lit_superposition.data import SparseFeatureDataModule
from lit_superposition.data.sets import signed_values_
from lit_superposition.errors import ConfigError

P = [[0.5, 0.1, 0.02, 1.0], [0.3, 0.3, 0.05, 0.2]]  # (n_instances, n_features)
STEPS, BATCH = 12, 4096


def _data(values="signed", **kwargs):
    kwargs = {"feature_probability": P, "batch_size": BATCH, "data_seed": 3, **kwargs}
    return SparseFeatureDataModule(len(kwargs["feature_probability"]), len(kwargs["feature_probability"][0]), values=values, **kwargs)


def _stack(data):
    return torch.cat([data.make_batch(step) for step in range(STEPS)], dim=1)  # (n_instances, STEPS * BATCH, n_features)


@pytest.fixture(scope="module", params=["shared", "independent"])
def streams(request):
    """The signed stream and the uniform stream of the same seeds: (signed, uniform)."""
    return _stack(_data("signed", instance_data=request.param)), _stack(_data("uniform", instance_data=request.param))


def test_active_values_are_uniform_on_minus_one_to_one(streams):
    x, _ = streams
    for i in range(x.shape[0]):
        for f in range(x.shape[2]):
            active = x[i, :, f][x[i, :, f] != 0].double().numpy()
            assert stats.kstest(active, "uniform", args=(-1, 2)).pvalue > 1e-3, (i, f)
            assert active.min() >= -1 and active.max() <= 1


def test_no_active_feature_is_zero_and_activity_is_the_uniform_streams(streams):
    # Activity comes from the uniform stream (t > 0), independently of the signed map: a zero made
    # by the map would show up as a feature the uniform stream has active and the signed one not.
    x, t = streams
    assert torch.equal(x != 0, t > 0)
    assert not torch.signbit(x[x == 0]).any()  # inactive is +0, not -0


def test_activity_frequency_within_three_standard_errors(streams):
    x, _ = streams
    n = x.shape[1]
    p = torch.tensor(P, dtype=torch.float64)
    frequency = (x != 0).double().mean(dim=1)  # (n_instances, n_features)
    standard_error = (p * (1 - p) / n).sqrt()
    assert ((frequency - p).abs() <= 3 * standard_error + 1e-12).all(), (frequency, p)


def test_the_signed_value_is_the_documented_map_of_the_magnitude(streams):
    x, t = streams
    expected = torch.where(t > 0.5, 2 * t - 1, -2 * t)  # (n_instances, batch, n_features)
    assert torch.equal(x, expected)


def test_the_map_is_exact_at_its_edges():
    t = torch.tensor([0.0, 2.0**-30, 0.25, 0.5, 0.5 + 2.0**-24, 0.75, 1.0])
    x = signed_values_(t)
    assert torch.equal(x, torch.tensor([0.0, -(2.0**-29), -0.5, -1.0, 2.0**-23, 0.5, 1.0]))
    assert not torch.signbit(x[0]) and x.data_ptr() == t.data_ptr()  # +0, in place


def test_batches_keep_the_feature_major_layout_and_are_step_keyed():
    data = _data()
    x = data.make_batch(5)
    assert x.shape == (2, BATCH, 4) and x.transpose(1, 2).is_contiguous()
    assert torch.equal(x, _data().make_batch(5)) and not torch.equal(x, data.make_batch(6))


SETS = {"correlated_sets": [[0, 1], [2, 3, 4]], "anticorrelated_sets": [[5, 6], [7, 8, 9]]}
P_SETS = [[0.1, 0.1, 0.3, 0.3, 0.3, 0.2, 0.2, 0.1, 0.3, 0.05], [0.5, 0.5, 0.05, 0.05, 0.05, 0.5, 0.5, 0.3, 0.3, 0.3]]


@pytest.fixture(scope="module", params=["shared", "independent"])
def set_streams(request):
    kwargs = {"feature_probability": P_SETS, "instance_data": request.param, **SETS}
    return _stack(_data("signed", **kwargs)), _stack(_data("uniform", **kwargs))


def test_correlated_sets_switch_on_together_with_signed_values(set_streams):
    x, _ = set_streams
    active = x != 0
    for features in SETS["correlated_sets"]:
        for f in features[1:]:
            assert torch.equal(active[..., f], active[..., features[0]]), (features, f)
        assert active[..., features[0]].any()
        # Each member keeps its own value, and both signs: the values are not shared.
        both = active[..., features[0]]
        assert not torch.equal(x[..., features[0]][both], x[..., features[1]][both])


def test_anticorrelated_sets_still_have_at_most_one_active(set_streams):
    x, _ = set_streams
    for features in SETS["anticorrelated_sets"]:
        count = (x[..., features] != 0).sum(dim=-1)
        assert count.max() == 1 and (count == 1).any()


def test_sets_apply_the_same_signed_map_to_their_magnitudes(set_streams):
    x, t = set_streams
    assert torch.equal(x, torch.where(t > 0.5, 2 * t - 1, -2 * t))
    for i in range(x.shape[0]):
        for f in range(x.shape[2]):
            active = x[i, :, f][x[i, :, f] != 0].double().numpy()
            assert stats.kstest(active, "uniform", args=(-1, 2)).pvalue > 1e-3, (i, f)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"values": "uniform", "target": "abs"}, "target 'abs' needs values 'signed', got values 'uniform'"),
        ({"values": "gaussian"}, "values must be 'uniform' or 'signed', got 'gaussian'"),
        ({"values": "signed", "target": "square"}, "target must be 'identity' or 'abs', got 'square'"),
    ],
)
def test_bad_values_and_targets_raise_one_line(kwargs, message):
    with pytest.raises(ConfigError) as error:
        SparseFeatureDataModule(2, 4, 0.1, **kwargs)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_abs_with_signed_values_is_accepted():
    data = SparseFeatureDataModule(2, 4, 0.1, values="signed", target="abs")
    assert (data.values, data.target) == ("signed", "abs")
