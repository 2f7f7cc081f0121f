import pytest
import pytorch_lightning as pl
import torch

from lit_superposition import LitToyModel, SparseFeatureDataModule
from lit_superposition.data.specs import GeometricDecay
from lit_superposition.errors import ConfigError


def test_loss_is_importance_weighted_mean_summed_over_instances():
    module = LitToyModel(n_instances=3, n_features=4, d_hidden=2, importance=GeometricDecay(0.5))
    x = torch.rand(3, 16, 4)
    loss, per_feature = module.objective(x)
    x_hat = module.model(x)
    importance = 0.5 ** torch.arange(4.0)
    expected_per_feature = (importance * (x - x_hat) ** 2).mean(dim=1)
    torch.testing.assert_close(per_feature, expected_per_feature)
    torch.testing.assert_close(loss, sum((importance * (x[i] - x_hat[i]) ** 2).mean() for i in range(3)))


def _fit(steps=30, data_seed=0, init_seeds=0, **trainer_kwargs):
    module = LitToyModel(n_instances=4, n_features=5, d_hidden=2, init_seeds=init_seeds)
    data = SparseFeatureDataModule(n_instances=4, n_features=5, feature_probability=0.1, batch_size=64, data_seed=data_seed)
    trainer = pl.Trainer(
        max_steps=steps, max_epochs=-1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, **trainer_kwargs,
    )
    trainer.fit(module, data)
    return module


def test_same_seeds_give_bitwise_identical_weights_and_others_differ():
    first, second = _fit(), _fit()
    assert torch.equal(first.model.W, second.model.W) and torch.equal(first.model.b, second.model.b)
    assert not torch.equal(first.model.W, _fit(data_seed=1).model.W)
    assert not torch.equal(first.model.W, _fit(init_seeds=100).model.W)


class _Outputs(pl.Callback):
    """Keeps what on_train_batch_end gets: per step for a plain callback."""

    def __init__(self):
        self.outputs = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.outputs.append(outputs)


def test_each_step_delivers_its_loss_and_per_feature_loss_through_outputs():
    recorder = _Outputs()
    _fit(steps=3, callbacks=[recorder])
    assert len(recorder.outputs) == 3
    for outputs in recorder.outputs:
        assert outputs["per_feature_loss"].shape == (4, 5) and not outputs["per_feature_loss"].requires_grad
        assert outputs["loss"] == outputs["per_feature_loss"].mean(dim=1).sum()


def test_instances_are_validated():
    with pytest.raises(ConfigError, match="out of range"):
        LitToyModel(n_instances=2, n_features=5, instances=[0, 5])


def test_repeats_resolve_importance_per_setting_and_keep_init_seeds_distinct():
    from lit_superposition.data.specs import SingleFeatureSweep

    module = LitToyModel(6, 3, importance=SingleFeatureSweep(feature=1, base=1.0, factors=[2.0, 0.5]), repeats=3)
    assert module.repeats == 3
    torch.testing.assert_close(module.importance[:, 1], torch.tensor([2.0, 2.0, 2.0, 0.5, 0.5, 0.5]))
    assert module.model.init_seeds == [0, 1, 2, 3, 4, 5]
    with pytest.raises(ConfigError, match=r"n_instances \(6\) must be a multiple of repeats \(4\)"):
        LitToyModel(6, 3, repeats=4)


def test_losses_are_logged_on_logging_steps_with_instances_summing_to_the_total(tmp_path):
    from pytorch_lightning.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    module = LitToyModel(n_instances=4, n_features=5, d_hidden=2, instances=[0, 1, 2, 3])
    data = SparseFeatureDataModule(n_instances=4, n_features=5, feature_probability=0.1, batch_size=64)
    logger = TensorBoardLogger(tmp_path, name="run", version=0)
    trainer = pl.Trainer(
        max_steps=20, max_epochs=-1, logger=logger, log_every_n_steps=5, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(module, data)
    events = EventAccumulator(str(tmp_path / "run" / "version_0"))
    events.Reload()
    total = events.Scalars("train/loss")
    instances = [events.Scalars(f"train_loss/instance_{i:03d}") for i in range(4)]
    assert [e.step for e in total] == [4, 9, 14, 19]
    assert all([e.step for e in series] == [4, 9, 14, 19] for series in instances)
    for k, event in enumerate(total):
        assert event.value == pytest.approx(sum(series[k].value for series in instances), rel=1e-5)
    assert trainer.callback_metrics["train/loss"].device.type == "cpu"  # read after every step: no device sync
