"""The variants behind the contract: formulas, the registry, and the recorded initial state."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from lit_superposition.errors import ConfigError
from lit_superposition.models import (
    VARIANTS,
    HiddenReLUModel,
    LinearOutputModel,
    ReLUOutputModel,
    ToyModel,
    model_class,
    xavier_columns,
)


class TanhOutput(ToyModel):
    """A user's own variant: one class, one ``forward``."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(torch.einsum("ihf,ihg,ibg->ibf", self.W, self.W, x) + self.b.unsqueeze(1))


def _loop_reference(model: ToyModel, x: Tensor, hidden, output) -> Tensor:
    return torch.stack([output(hidden(x[i] @ model.W[i].T) @ model.W[i] + model.b[i]) for i in range(model.n_instances)])


@pytest.mark.parametrize(
    ("cls", "hidden", "output"),
    [
        (ReLUOutputModel, lambda h: h, torch.relu),
        (LinearOutputModel, lambda h: h, lambda y: y),
        (HiddenReLUModel, torch.relu, torch.relu),
    ],
)
def test_each_variant_computes_its_formula(cls, hidden, output):
    model = cls(n_instances=3, n_features=5, d_hidden=2, init_seeds=4)
    with torch.no_grad():
        model.b.normal_()
    x = torch.rand(3, 7, 5)  # (n_instances, batch, n_features)
    torch.testing.assert_close(model(x), _loop_reference(model, x, hidden, output))
    plain = (x - model(x)).square().mean(dim=1) * 0.5
    torch.testing.assert_close(model.per_feature_loss(x, 0.5), plain)


def test_only_models_with_a_hidden_relu_have_a_privileged_basis():
    assert {name: cls.privileged_basis for name, cls in VARIANTS.items()} == {
        "relu_output": False, "linear_output": False, "hidden_relu": True, "computation": True,
    }


def test_variants_by_name_and_by_class_path():
    assert model_class("linear_output") is LinearOutputModel
    assert model_class("tests.models.test_variants.TanhOutput") is TanhOutput


@pytest.mark.parametrize(
    ("variant", "message"),
    [
        ("linear", "model.variant 'linear' is not known: choose one of relu_output, linear_output, hidden_relu"),
        ("no_such_module.Model", "importing 'no_such_module' failed"),
        ("tests.models.test_variants.Missing", "has no 'Missing'"),
        ("torch.nn.Linear", "is not a ToyModel subclass"),
    ],
)
def test_bad_variants_are_one_line_config_errors(variant, message):
    with pytest.raises(ConfigError) as error:
        model_class(variant)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_every_variant_starts_from_the_same_seeded_init():
    for cls in VARIANTS.values():
        model = cls(n_instances=2, n_features=6, d_hidden=3, init_seeds=[5, 9])
        assert torch.equal(model.W[1], xavier_columns(9, 3, 6))
        assert torch.equal(model.initial_state()["W"], torch.stack([xavier_columns(5, 3, 6), xavier_columns(9, 3, 6)]))


def test_the_initial_state_is_recorded_data_that_checkpoints_carry():
    model = HiddenReLUModel(n_instances=2, n_features=4, d_hidden=2, init_seeds=0)
    start = {"W": torch.randn(2, 2, 4), "b": torch.randn(2, 4)}
    model.set_initial_state(start, init_seeds=[-1, 3])
    with torch.no_grad():
        model.W.add_(1.0)  # training moves the weights, not the record
    assert torch.equal(model.initial_state()["W"], start["W"]) and model.init_seeds == [-1, 3]
    state = model.state_dict()
    assert torch.equal(state["initial_W"], start["W"]) and torch.equal(state["initial_b"], start["b"])
    restored = HiddenReLUModel(n_instances=2, n_features=4, d_hidden=2, init_seeds=0)
    restored.load_state_dict(state)
    restored.reset_parameters()
    assert torch.equal(restored.W, start["W"])
    with pytest.raises(ValueError, match=r"initial W has shape \(2, 3, 4\)"):
        model.set_initial_state({"W": torch.zeros(2, 3, 4), "b": torch.zeros(2, 4)})
