import pytest
import torch
from scipy import stats

from lit_superposition.data import SparseFeatureDataModule, step_seed
from lit_superposition.errors import ConfigError

P = [[0.05, 0.2, 0.5, 1.0], [0.3, 0.05, 0.1, 0.7], [0.05, 0.2, 0.5, 1.0]]


def _stack(data, steps, rank=0):
    return torch.cat([data.make_batch(step, rank=rank) for step in range(steps)], dim=1)


@pytest.mark.parametrize("instance_data", ["shared", "independent"])
def test_activity_frequency_within_three_standard_errors(instance_data):
    data = SparseFeatureDataModule(3, 4, feature_probability=P, batch_size=4096, instance_data=instance_data)
    x = _stack(data, 10)  # (3, 40960, 4)
    n = x.shape[1]
    p = torch.tensor(P)
    frequency = (x > 0).float().mean(dim=1)
    standard_error = (p * (1 - p) / n).sqrt().clamp_min(1e-12)
    assert ((frequency - p).abs() <= 3 * standard_error + 1e-6).all(), (frequency, p)


@pytest.mark.parametrize("instance_data", ["shared", "independent"])
def test_active_values_are_uniform_by_ks_test(instance_data):
    data = SparseFeatureDataModule(3, 4, feature_probability=P, batch_size=4096, instance_data=instance_data)
    x = _stack(data, 5)
    for i in range(3):
        for f in range(4):
            active = x[i, :, f][x[i, :, f] > 0].double().numpy()
            assert stats.kstest(active, "uniform").pvalue > 1e-3, (i, f)
            assert active.min() > 0.0 and active.max() <= 1.0


def test_shared_mode_one_draw_serves_every_instance():
    data = SparseFeatureDataModule(3, 4, feature_probability=P, batch_size=2048, instance_data="shared")
    x = data.make_batch(step=7)
    assert torch.equal(x[0], x[2])  # equal p, same data
    # Each instance thresholds the same uniform: a feature active at p = 0.05 is active at p = 0.3.
    assert ((x[0, :, 0] > 0) <= (x[1, :, 0] > 0)).all()


def test_independent_mode_draws_per_instance():
    data = SparseFeatureDataModule(3, 4, feature_probability=P, batch_size=2048, instance_data="independent")
    x = data.make_batch(step=7)
    assert not torch.equal(x[0], x[2])


def test_batches_are_pure_functions_of_seed_rank_and_step():
    data = SparseFeatureDataModule(2, 5, feature_probability=0.3, batch_size=256, data_seed=3)
    again = SparseFeatureDataModule(2, 5, feature_probability=0.3, batch_size=256, data_seed=3)
    assert torch.equal(data.make_batch(5, rank=1), again.make_batch(5, rank=1))
    assert not torch.equal(data.make_batch(5, rank=0), data.make_batch(5, rank=1))
    assert not torch.equal(data.make_batch(5), data.make_batch(6))
    other_seed = SparseFeatureDataModule(2, 5, feature_probability=0.3, batch_size=256, data_seed=4)
    assert not torch.equal(data.make_batch(5), other_seed.make_batch(5))
    seeds = {step_seed(s, r, k) for s in range(3) for r in range(3) for k in range(50)}
    assert len(seeds) == 450 and max(seeds) < 2**63


def test_loader_yields_only_step_keys():
    data = SparseFeatureDataModule(2, 5)
    keys = iter(data.train_dataloader())
    assert [next(keys) for _ in range(3)] == [0, 1, 2]  # they mark Lightning's calls: make_batch(step) draws


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"feature_probability": 1.5}, "feature_probability must be in (0, 1]"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"instance_data": "mixed"}, "instance_data must be 'shared' or 'independent'"),
    ],
)
def test_bad_settings_raise(kwargs, message):
    with pytest.raises(ConfigError) as error:
        SparseFeatureDataModule(2, 5, **kwargs)
    assert message in str(error.value)


@pytest.mark.parametrize("instance_data", ["shared", "independent"])
def test_batch_is_feature_major_and_thresholds_one_uniform_per_feature(instance_data):
    data = SparseFeatureDataModule(3, 4, feature_probability=P, batch_size=2048, data_seed=5, instance_data=instance_data)
    x = data.make_batch(step=3)
    assert x.shape == (3, 2048, 4) and x.transpose(1, 2).is_contiguous()  # the batch axis is contiguous
    generator = torch.Generator().manual_seed(step_seed(5, 0, 3))
    u = torch.rand(1 if instance_data == "shared" else 3, 2048, 4, generator=generator)
    p = torch.tensor(P).unsqueeze(1)  # (n_instances, 1, n_features)
    assert torch.equal(x > 0, (u < p).expand_as(x))
    torch.testing.assert_close(x, torch.where(u < p, 1 - u / p, torch.zeros(())))


@pytest.mark.parametrize("instance_data", ["shared", "independent"])
@pytest.mark.parametrize("kind", ["plain", "signed", "sets"])
def test_a_slice_of_the_instances_draws_bitwise_their_rows_of_the_whole_batch(instance_data, kind):
    # 150 instances: three draw blocks of 64 in independent mode, and slices that cut through them.
    settings = {"plain": {}, "signed": {"values": "signed"}, "sets": {"correlated_sets": [[0, 1]], "anticorrelated_sets": [[2, 3]]}}
    probability = torch.linspace(0.02, 0.3, 150).unsqueeze(1).expand(150, 4).tolist()
    data = SparseFeatureDataModule(150, 4, probability, batch_size=33, instance_data=instance_data, **settings[kind])
    whole = data.make_batch(step=5)  # (150, 33, 4)
    for rows in (slice(0, 50), slice(50, 100), slice(60, 130), slice(149, 150), slice(0, 150)):
        assert torch.equal(data.make_batch(step=5, instances=rows), whole[rows]), rows


def test_independent_draw_blocks_are_distinct_streams():
    data = SparseFeatureDataModule(128, 4, 1.0, batch_size=16, instance_data="independent")
    x = data.make_batch(step=0)  # p = 1: every value is its uniform's image
    assert not torch.equal(x[0], x[64]) and not torch.equal(x[1], x[65])
