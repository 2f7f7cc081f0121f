"""RunCheckpoint, GracefulStop and NonFiniteLossStop in real Trainer runs."""

from __future__ import annotations

import os
import signal

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import TensorBoardLogger

from lit_superposition.callbacks import GracefulStop, NonFiniteLossStop, RunCheckpoint
from lit_superposition.data import SparseFeatureDataModule
from lit_superposition.errors import ConfigError, NonFiniteLossError
from lit_superposition.module import LitToyModel
from tests.conftest import load_checkpoint


def _trainer(tmp_path, max_steps, callbacks, every=10):
    checkpoint = RunCheckpoint(dirpath=tmp_path / "checkpoints", save_last=True, every_n_train_steps=every)
    return pl.Trainer(
        max_steps=max_steps, max_epochs=-1, log_every_n_steps=5, enable_progress_bar=False, enable_model_summary=False,
        logger=TensorBoardLogger(tmp_path, name="", version=""), callbacks=[*callbacks, checkpoint],
    )


def _data():
    return SparseFeatureDataModule(n_instances=8, n_features=5, batch_size=64)


def test_last_checkpoint_is_written_where_training_stopped(tmp_path):
    trainer = _trainer(tmp_path, max_steps=25, callbacks=[])
    trainer.fit(LitToyModel(n_instances=8, n_features=5), _data())
    # Plain ModelCheckpoint would leave last.ckpt at step 20, the last periodic save.
    assert load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 25
    assert (tmp_path / "checkpoints" / "epoch=0-step=20.ckpt").is_file()


class SendSignal(Callback):
    def __init__(self, signum, at_step):
        self.signum, self.at_step = signum, at_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.at_step:
            os.kill(os.getpid(), self.signum)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_cleanly_after_the_step_and_saves_last(tmp_path, signum):
    before = signal.getsignal(signum)
    stop = GracefulStop()
    trainer = _trainer(tmp_path, max_steps=10_000, callbacks=[SendSignal(signum, at_step=7), stop])
    trainer.fit(LitToyModel(n_instances=8, n_features=5), _data())
    assert stop.received == signum and stop.stopped_at_step == 7 and trainer.global_step == 7
    assert trainer.state.status == "finished"  # the ordinary end: on_train_end and on_fit_end ran
    assert load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 7
    assert list(tmp_path.glob("events.out.tfevents.*"))
    assert signal.getsignal(signum) == before


class Diverging(LitToyModel):
    """Instances 2 and 5 get a NaN loss at step 37."""

    def objective(self, x):
        loss, per_feature_loss = super().objective(x)
        if self.global_step == 37:
            poison = torch.ones_like(per_feature_loss)
            poison[[2, 5]] = float("nan")
            per_feature_loss = per_feature_loss * poison
            loss = per_feature_loss.mean(dim=1).sum()
        return loss, per_feature_loss


def test_nonfinite_loss_names_step_and_instances_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer = _trainer(tmp_path, max_steps=100, callbacks=[NonFiniteLossStop(check_every_n_steps=50)])
    with pytest.raises(NonFiniteLossError, match=r"at step 37 in instances 2, 5 \(of 8\).*kept: .*last\.ckpt"):
        trainer.fit(Diverging(n_instances=8, n_features=5), _data())
    # The save at step 40 was refused: last.ckpt is step 30's, with finite weights.
    last = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert last["global_step"] == 30
    assert all(t.isfinite().all() for t in last["state_dict"].values())
    assert not (tmp_path / "checkpoints" / "epoch=0-step=40.ckpt").exists()


def test_nonfinite_loss_is_found_at_the_end_without_any_checkpoint(tmp_path):
    trainer = _trainer(tmp_path, max_steps=39, callbacks=[NonFiniteLossStop(check_every_n_steps=1000)], every=1000)
    with pytest.raises(NonFiniteLossError, match=r"at step 37 in instances 2, 5 .*no checkpoint was written yet"):
        trainer.fit(Diverging(n_instances=8, n_features=5), _data())
    assert not (tmp_path / "checkpoints" / "last.ckpt").exists()


@pytest.mark.parametrize(("make", "message"), [
    (lambda: NonFiniteLossStop(check_every_n_steps=0), "check_every_n_steps must be a positive integer"),
    (lambda: GracefulStop(sync_every_n_steps=0), "sync_every_n_steps must be a positive integer"),
])
def test_settings_are_validated(make, message):
    with pytest.raises(ConfigError, match=message):
        make()
