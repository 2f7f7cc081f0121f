"""Signed values (``values: signed``) and the ``target`` option: distribution, the map over every uniform, sets, bad input."""

import pytest
import torch
from scipy import stats

from lit_superposition.data import SparseFeatureDataModule
from lit_superposition.data import sets as sets_module
from lit_superposition.data.sets import signed_map
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
    # Both streams threshold the same uniforms at p, each rounding its own way, so in general they
    # may disagree where u is within a grid point of p (probability ~2^-24 per entry; the
    # exhaustive test below bounds it); on these seeds they agree entry for entry. A zero made by
    # the signed map would show up as a feature the uniform stream has active and the signed one not.
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


def test_the_signed_value_is_the_documented_map_of_the_uniform(streams):
    # x = A - u·B with A ≈ 1, B ≈ 2/p: u = (A - x) / B, so the uniform value is t = 1 - u/p ≈ (1 + x) / 2.
    x, t = streams
    both = (x != 0) & (t > 0)
    assert torch.allclose((1 + x[both].double()) / 2, t[both].double(), rtol=0, atol=1e-6)
    assert int(((x[both] > 0) != (t[both] > 0.5)).sum()) <= 2  # positive where u < p/2, but at the rounding of u = p/2


GRID = 1 << 24  # torch.rand's float32 draws on the CPU are k * 2^-24, k < 2^24
_RANDOM = torch.rand(12, generator=torch.Generator().manual_seed(7))
EXHAUSTIVE_P = [1.0, 0.5, 0.25, 2.0**-10, 0.057, 0.3333, 1 - 2.0**-24, 2.0**-23, 3e-7, *_RANDOM.clamp_min(1e-4).tolist()]


def _active_grid_points(p, values):
    """For each p, the stream's activity over all 2^24 grid uniforms: ``(len(p), GRID)`` bool."""
    data = SparseFeatureDataModule(1, len(p), [p], batch_size=8, values=values)
    u = (torch.arange(GRID, dtype=torch.float32) * 2.0**-24)[None, :, None].expand(1, GRID, len(p)).contiguous()
    return (data.values_of(u)[0] != 0).T


def test_over_every_grid_uniform_no_active_value_is_zero_and_activity_is_u_below_p():
    # The stream's own constants and code, fed every uniform torch.rand can draw (chunks of 1: the
    # kernel's vectorized loop; chunks of 3: its strided loop). A zero from the map would be a hole
    # in the active range [0, p') (a zero can only come near u = p/2); p' must be p to 2 grid points.
    chunks = [EXHAUSTIVE_P[k:k + 1] for k in range(0, 20)] + [EXHAUSTIVE_P[k:k + 3] for k in range(20, len(EXHAUSTIVE_P), 3)]
    for chunk in chunks:
        active, active_uniform = _active_grid_points(chunk, "signed"), _active_grid_points(chunk, "uniform")
        count, count_uniform = active.sum(dim=1), active_uniform.sum(dim=1)  # (len(chunk),)
        for f, p in enumerate(chunk):
            assert active[f, : count[f]].all() and not active[f, count[f] :].any(), (p, "activity is not a range [0, p')")
            assert abs(int(count[f]) - p * GRID) <= 2, (p, int(count[f]) - p * GRID)
            # The uniform stream's activity, for the record: the two differ by a grid point at most.
            assert abs(int(count[f]) - int(count_uniform[f])) <= 1, (p, int(count[f]), int(count_uniform[f]))


def test_signed_map_constants_are_the_documented_ones_nudged_at_most_a_few_ulps():
    p = torch.tensor(EXHAUSTIVE_P)
    start, slope, exact = signed_map(torch.zeros_like(p), p, "cpu")
    assert exact and start.dtype == slope.dtype == torch.float32
    assert ((1 - start.double()) * 2**24).round().le(4).all() and (start <= 1).all()  # A: 1, or a few ulps below
    torch.testing.assert_close(slope.double(), (start.double() + 1) / p.double(), rtol=2**-23, atol=0)
    # p = 1 and 1/2: with A = 1, u = p/2 would give exactly 1 - (p/2)(2/p) = 0, so A moved down.
    assert (start[:2] < 1).all()


def test_when_zeros_cannot_be_ruled_out_they_are_replaced(monkeypatch):
    # The fallback (not seen on any device so far): no nudges allowed, so A = 1 and u = 1/2 gives
    # 1 - (1/2)·2 = 0 at p = 1; the stream then replaces exact zeros by the smallest positive float.
    monkeypatch.setattr(sets_module, "MAX_NUDGES", 0)
    data = SparseFeatureDataModule(1, 1, 1.0, batch_size=8, values="signed")
    x = data.values_of(torch.tensor([0.0, 0.25, 0.5, 0.75]).reshape(1, 4, 1))
    assert torch.equal(x.flatten(), torch.tensor([1.0, 0.5, torch.finfo(torch.float32).tiny, -0.5]))


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


def test_sets_map_their_magnitudes_the_documented_way(set_streams):
    # x = A - u·B maps each feature's interval onto [-1, 1] as the magnitude t does onto (0, 1]: x ≈ 2t - 1.
    x, t = set_streams
    assert torch.equal(x != 0, t > 0)  # activity is the mask, shared by both
    assert torch.allclose(x.double(), torch.where(t > 0, 2 * t.double() - 1, 0), rtol=0, atol=1e-5)
    assert x.min() >= -1 and x.max() <= 1
    for i in range(x.shape[0]):
        for f in range(x.shape[2]):
            active = x[i, :, f][x[i, :, f] != 0].double().numpy()
            assert stats.kstest(active, "uniform", args=(-1, 2)).pvalue > 1e-3, (i, f)


def test_sets_over_every_grid_uniform_never_give_an_active_zero():
    # Every uniform the CPU can draw, for every feature (its own uniform or its set's): an active
    # feature is never 0 and stays in [-1, 1]; P_SETS's instance 2 has intervals whose midpoints
    # are grid points (p = 1/2, 1/4), where A = 1 would give exactly 0.
    p = P_SETS + [[0.5, 0.5, 0.25, 0.25, 0.25, 0.25, 0.75, 0.5, 0.25, 0.125]]
    data = _data("signed", feature_probability=p, instance_data="shared", **SETS)
    sets = data._device_state(torch.device("cpu"))[3]
    for chunk in torch.arange(GRID).split(1 << 21):
        u = (chunk.float() * 2.0**-24)[None, :, None].expand(1, len(chunk), 10).contiguous()
        x = data.values_of(u)  # (3, chunk, 10)
        g = u.index_select(-1, sets.source)
        active = (g >= sets.low) & (g < sets.high)
        assert torch.equal(x != 0, active)
        assert x.min() >= -1 and x.max() <= 1


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
