"""FeatureGradNorms logs exactly the per-feature gradient norms autograd gives on a hand-written loss."""

from __future__ import annotations

import pytest
import torch

from lit_superposition.callbacks import FeatureGradNorms
from lit_superposition.errors import ConfigError
from tests.callbacks.conftest import make_trainer, small_setup


def hand_loss(W: torch.Tensor, b: torch.Tensor, x: torch.Tensor, importance: torch.Tensor) -> torch.Tensor:
    """Σ_i mean_{batch, f} I[i, f] (x - ReLU(Wᵀ W x + b))², written out sample by sample in einsum."""
    h = torch.einsum("ihf,ibf->ibh", W, x)
    x_hat = torch.relu(torch.einsum("ihf,ibh->ibf", W, h) + b[:, None, :])
    return (importance[:, None, :] * (x - x_hat) ** 2).mean(dim=(1, 2)).sum()


def test_grad_norms_equal_autograd_on_a_hand_computed_loss(tmp_path):
    module, data = small_setup(n_instances=3, n_features=4, feature_probability=0.5)
    module.importance.copy_(torch.tensor([[1.0, 0.9, 0.81, 0.73]]).expand(3, 4))
    init = module.model.initial_state()
    W = init["W"].clone().requires_grad_(True)
    b = (init["b"] + 0.0).requires_grad_(True)
    hand_loss(W, b, data.make_batch(0), module.importance).backward()  # batch 0 is what step 1 trains on
    expected_W, expected_b = W.grad.norm(dim=1), b.grad.abs()  # (n_instances, n_features)

    trainer, recorder = make_trainer(tmp_path, [FeatureGradNorms(every_n_steps=1, instances=[0, 2])], max_steps=1)
    trainer.fit(module, data)

    for i in (0, 2):
        for f in range(4):
            assert recorder.metrics[f"grad_norm_W/instance_{i:03d}/feature_{f:02d}"][1] == pytest.approx(
                float(expected_W[i, f]), rel=1e-5, abs=1e-9
            )
            assert recorder.metrics[f"grad_norm_b/instance_{i:03d}/feature_{f:02d}"][1] == pytest.approx(
                float(expected_b[i, f]), rel=1e-5, abs=1e-9
            )
    assert not any("instance_001" in tag for tag in recorder.metrics)  # only the chosen instances


def test_interval_defaults_to_log_every_n_steps(tmp_path):
    module, data = small_setup()
    trainer, recorder = make_trainer(tmp_path, [FeatureGradNorms()], max_steps=12, log_every_n_steps=4)
    trainer.fit(module, data)
    assert sorted(recorder.metrics["grad_norm_W/instance_000/feature_00"]) == [4, 8, 12]
    assert {tag.split("/")[1] for tag in recorder.metrics if tag.startswith("grad_norm")} == {
        "instance_000", "instance_001", "instance_002"
    }


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"every_n_steps": 0}, "every_n_steps must be a positive integer"),
    ({"instances": []}, "instances must be a non-empty list"),
])
def test_bad_arguments_raise_config_error(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        FeatureGradNorms(**kwargs)


def test_instances_out_of_range_raise_at_setup(tmp_path):
    module, data = small_setup(n_instances=2)
    trainer, _ = make_trainer(tmp_path, [FeatureGradNorms(instances=[5])])
    with pytest.raises(ConfigError, match=r"instances \[5\] out of range"):
        trainer.fit(module, data)
