import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from lit_superposition import LitToyModel, SparseFeatureDataModule
from lit_superposition.callbacks.weight_patching import WeightPatching
from lit_superposition.errors import ConfigError
from lit_superposition.models import xavier_columns
from lit_superposition.analysis.patching import Triple, load_donor


class FirstStepProbe(Callback):
    """Records the weights and optimizer state just before the first optimizer step."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0:
            self.W = pl_module.model.W.detach().clone()
            self.b = pl_module.model.b.detach().clone()
            self.optimizer_state = dict(trainer.optimizers[0].state)


def _trainer(callbacks, steps=3):
    return pl.Trainer(
        max_steps=steps, max_epochs=-1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks,
    )


def _fit(n_instances, callbacks, steps=3, init_seeds=0):
    module = LitToyModel(n_instances=n_instances, n_features=6, d_hidden=2, init_seeds=init_seeds)
    trainer = _trainer(callbacks, steps)
    trainer.fit(module, SparseFeatureDataModule(n_instances=n_instances, n_features=6, feature_probability=0.057, batch_size=64))
    return trainer, module


def test_training_starts_from_the_patched_init_with_fresh_optimizer_state():
    probe = FirstStepProbe()
    triples = [Triple(base_seed=4, donor_seed=30, features=[5]), Triple(base_seed=8, donor_seed=37, features=[0, 2])]
    _, module = _fit(6, [WeightPatching(triples=triples), probe], init_seeds=1000)
    for k, triple in enumerate(triples):
        base, donor = xavier_columns(triple.base_seed, 2, 6), xavier_columns(triple.donor_seed, 2, 6)
        kept = [f for f in range(6) if f not in triple.features]
        assert torch.equal(probe.W[3 * k], base)
        assert torch.equal(probe.W[3 * k + 1][:, triple.features], donor[:, triple.features])
        assert torch.equal(probe.W[3 * k + 1][:, kept], base[:, kept])
        assert torch.equal(probe.W[3 * k + 2], donor)
    assert torch.equal(probe.b, torch.zeros(6, 6))
    assert probe.optimizer_state == {}
    assert module.model.init_seeds == [4, 4, 30, 8, 8, 37]


def test_instance_count_must_be_three_per_triple():
    with pytest.raises(ConfigError, match="data.n_instances must be 3"):
        _fit(4, [WeightPatching(triples=[Triple(base_seed=0, donor_seed=1, features=[1])])])


def test_donor_from_a_checkpoint_at_step_0_or_its_own_step(tmp_path):
    trainer, module = _fit(3, [], steps=5, init_seeds=[7, 8, 9])
    path = tmp_path / "donor.ckpt"
    trainer.save_checkpoint(path)
    at_init = load_donor(str(path), instance=1, step=0)
    assert torch.equal(at_init.state["W"], xavier_columns(8, 2, 6)) and at_init.seed == 8
    trained = load_donor(str(path), instance=1, step=5)
    assert torch.equal(trained.state["W"], module.model.W[1].detach())
    with pytest.raises(ConfigError, match="holds step 5"):
        load_donor(str(path), instance=1, step=3)


def test_requires_exactly_one_source():
    with pytest.raises(ConfigError, match="exactly one of triples and scan_report"):
        WeightPatching()
    with pytest.raises(ConfigError, match="scan_report '/nope.json' does not exist"):
        WeightPatching(scan_report="/nope.json")


def test_a_patch_runs_checkpoint_at_step_0_is_what_the_run_started_from(in_tmp):
    # The recorded initial state, not a recomputation from seeds: the patched instances started
    # from weights that no seed gives.
    from lit_superposition.cli import build_cli

    build_cli(["fit", "--config", "hexagon_patch.yaml", "--trainer.max_steps=20", "--trainer.enable_progress_bar=false",
               "--trainer.enable_model_summary=false"])
    run = in_tmp / "runs" / "hexagon_patch" / "version_0"
    snapshots = torch.load(run / "snapshots.pt", weights_only=True)
    assert snapshots["step"][0] == 0
    for instance in range(9):
        donor = load_donor(str(run / "checkpoints" / "last.ckpt"), instance=instance, step=0)
        assert torch.equal(donor.state["W"], snapshots["W"][0, instance]), instance
        assert torch.equal(donor.state["b"], snapshots["b"][0, instance]), instance
    patched = load_donor(str(run / "checkpoints" / "last.ckpt"), instance=1, step=0)
    assert not torch.equal(patched.state["W"], xavier_columns(12, 2, 6))  # base seed 12, with feature 3 from seed 37
