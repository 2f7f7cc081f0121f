import pytest
import torch

from lit_superposition.model import ToyModel, initial_weights, resolve_init_seeds


def test_forward_is_relu_of_wt_w_x_plus_b():
    model = ToyModel(n_instances=3, n_features=5, d_hidden=2, init_seeds=4)
    with torch.no_grad():
        model.b.normal_()
    x = torch.rand(3, 7, 5)  # (n_instances, batch, n_features)
    expected = torch.stack(
        [torch.relu(x[i] @ model.W[i].T @ model.W[i] + model.b[i]) for i in range(3)]
    )
    torch.testing.assert_close(model(x), expected)


def test_instance_init_matches_a_standalone_model_with_the_same_seed():
    model = ToyModel(n_instances=6, n_features=7, d_hidden=3, init_seeds=[11, 3, 42, 7, 0, 9])
    for i, seed in enumerate([11, 3, 42, 7, 0, 9]):
        alone = ToyModel(n_instances=1, n_features=7, d_hidden=3, init_seeds=[seed])
        assert torch.equal(model.W[i], alone.W[0])
    assert torch.equal(model.b, torch.zeros(6, 7))


def test_base_seed_gives_consecutive_seeds_and_xavier_scale():
    assert resolve_init_seeds(10, 3) == [10, 11, 12]
    model = ToyModel(n_instances=2, n_features=400, d_hidden=100, init_seeds=10)
    assert torch.equal(model.W[1], initial_weights(11, 100, 400))
    assert model.W.std().item() == pytest.approx((2 / 500) ** 0.5, rel=0.05)


def test_different_seeds_differ_and_reset_restores_init():
    model = ToyModel(n_instances=2, n_features=5, d_hidden=2)
    assert not torch.equal(model.W[0], model.W[1])
    init = model.W.detach().clone()
    with torch.no_grad():
        model.W.add_(1.0)
    model.reset_parameters()
    assert torch.equal(model.W, init)


@pytest.mark.parametrize("kwargs", [{"n_instances": 0}, {"d_hidden": -1}, {"init_seeds": [1, 2]}])
def test_bad_sizes_raise(kwargs):
    with pytest.raises(ValueError):
        ToyModel(**{"n_instances": 3, "n_features": 5, "d_hidden": 2, **kwargs})
