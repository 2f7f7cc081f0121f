"""FeatureLosses logs the mean over every step of the interval, not one sample."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from lit_superposition.callbacks import FeatureLosses
from tests.callbacks.conftest import make_trainer, small_setup


class Recorder(pl.Callback):
    def __init__(self) -> None:
        self.losses: list[torch.Tensor] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(outputs["per_feature_loss"].clone())  # every step: a plain callback gets each one


def test_logged_loss_is_the_interval_mean(tmp_path):
    module, data = small_setup(n_instances=4, n_features=5, feature_probability=0.3)
    recorder_cb = Recorder()
    callback = FeatureLosses(every_n_steps=4, instances=[1, 3])
    trainer, recorder = make_trainer(tmp_path, [callback, recorder_cb], max_steps=8)
    trainer.fit(module, data)
    per_step = torch.stack(recorder_cb.losses)  # (8, n_instances, n_features)
    for step, window in ((4, slice(0, 4)), (8, slice(4, 8))):
        mean = per_step[window].mean(dim=0)
        for i in (1, 3):
            for f in range(5):
                logged = recorder.metrics[f"feature_loss/instance_{i:03d}/feature_{f:02d}"][step]
                assert abs(logged - float(mean[i, f])) < 1e-6
        # The mean of the window, not its last sample: on these instances the two differ.
        assert (mean[[1, 3]] - per_step[window.stop - 1][[1, 3]]).abs().max() > 1e-4
    torch.testing.assert_close(callback.interval_mean, per_step[4:].mean(dim=0))
    assert not any("instance_000" in tag for tag in recorder.metrics if tag.startswith("feature_loss"))


def test_state_dict_round_trip_keeps_the_partial_interval(tmp_path):
    module, data = small_setup()
    callback = FeatureLosses(every_n_steps=5)
    trainer, _ = make_trainer(tmp_path, [callback], max_steps=7)
    trainer.fit(module, data)
    state = callback.state_dict()
    assert int(state["count"]) == 2  # steps 6 and 7 since the last log
    restored = FeatureLosses(every_n_steps=5)
    restored.load_state_dict(state)
    trainer, _ = make_trainer(tmp_path, [restored], max_steps=1)
    restored.setup(trainer, module, "fit")
    assert int(restored.mean.count) == 2
    torch.testing.assert_close(restored.mean.total, state["total"])
