import pytest
import torch

from lit_superposition.models import ReLUOutputModel, resolve_init_seeds, xavier_columns


def test_forward_is_relu_of_wt_w_x_plus_b():
    model = ReLUOutputModel(n_instances=3, n_features=5, d_hidden=2, init_seeds=4)
    with torch.no_grad():
        model.b.normal_()
    x = torch.rand(3, 7, 5)  # (n_instances, batch, n_features)
    expected = torch.stack(
        [torch.relu(x[i] @ model.W[i].T @ model.W[i] + model.b[i]) for i in range(3)]
    )
    torch.testing.assert_close(model(x), expected)


def test_instance_init_matches_a_standalone_model_with_the_same_seed():
    model = ReLUOutputModel(n_instances=6, n_features=7, d_hidden=3, init_seeds=[11, 3, 42, 7, 0, 9])
    for i, seed in enumerate([11, 3, 42, 7, 0, 9]):
        alone = ReLUOutputModel(n_instances=1, n_features=7, d_hidden=3, init_seeds=[seed])
        assert torch.equal(model.W[i], alone.W[0])
    assert torch.equal(model.b, torch.zeros(6, 7))


def test_base_seed_gives_consecutive_seeds_and_xavier_scale():
    assert resolve_init_seeds(10, 3) == [10, 11, 12]
    model = ReLUOutputModel(n_instances=2, n_features=400, d_hidden=100, init_seeds=10)
    assert torch.equal(model.W[1], xavier_columns(11, 100, 400))
    assert model.W.std().item() == pytest.approx((2 / 500) ** 0.5, rel=0.05)


def test_different_seeds_differ_and_reset_restores_init():
    model = ReLUOutputModel(n_instances=2, n_features=5, d_hidden=2)
    assert not torch.equal(model.W[0], model.W[1])
    init = model.W.detach().clone()
    with torch.no_grad():
        model.W.add_(1.0)
    model.reset_parameters()
    assert torch.equal(model.W, init)


@pytest.mark.parametrize("kwargs", [{"n_instances": 0}, {"d_hidden": -1}, {"init_seeds": [1, 2]}])
def test_bad_sizes_raise(kwargs):
    with pytest.raises(ValueError):
        ReLUOutputModel(**{"n_instances": 3, "n_features": 5, "d_hidden": 2, **kwargs})


@pytest.mark.parametrize("feature_major", [True, False])
def test_fused_reconstruction_loss_matches_autograd_of_the_plain_formula(feature_major):
    model = ReLUOutputModel(n_instances=3, n_features=5, d_hidden=2, init_seeds=1).double()
    with torch.no_grad():
        model.b.normal_(std=0.3)  # some ReLUs inactive, some active
    x = torch.rand(3, 64, 5, dtype=torch.float64) * (torch.rand(3, 64, 5, dtype=torch.float64) < 0.3)
    if feature_major:
        x = x.transpose(1, 2).contiguous().transpose(1, 2)
    importance = torch.rand(3, 5, dtype=torch.float64)
    weights = torch.rand(3, 5, dtype=torch.float64)  # an arbitrary upstream gradient

    fused = model.per_feature_loss(x, importance)
    (fused * weights).sum().backward()
    fused_grads = model.W.grad.clone(), model.b.grad.clone()
    model.zero_grad()
    plain = (x - model(x)).square().mean(dim=1) * importance
    (plain * weights).sum().backward()

    torch.testing.assert_close(fused, plain)
    torch.testing.assert_close(fused_grads, (model.W.grad, model.b.grad))
    assert torch.autograd.gradcheck(
        lambda W, b: _with(model, W, b).per_feature_loss(x, importance), (model.W.detach().clone().requires_grad_(),
                                                                               model.b.detach().clone().requires_grad_())
    )


def _with(model, W, b):
    """A ToyModel whose parameters are the given tensors (for gradcheck)."""
    clone = ReLUOutputModel(model.n_instances, model.n_features, model.d_hidden)
    del clone.W, clone.b
    clone.W, clone.b = W, b
    return clone


def test_reconstruction_loss_without_gradients_uses_the_plain_formula():
    model = ReLUOutputModel(n_instances=2, n_features=4, d_hidden=2)
    x = torch.rand(2, 16, 4)
    with torch.no_grad():
        loss = model.per_feature_loss(x, 2.0)
        torch.testing.assert_close(loss, 2.0 * (x - model(x)).square().mean(dim=1))
