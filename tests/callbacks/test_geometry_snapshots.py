"""GeometrySnapshots: schedule, step 0 = the initialization, atomic writes, resume."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from lit_superposition.analysis import files as atomic
from lit_superposition.callbacks import GeometrySnapshots
from lit_superposition.callbacks.geometry_snapshots import snapshot_schedule
from lit_superposition.errors import ConfigError
from tests.callbacks.conftest import make_trainer, small_setup


def load(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def test_step_zero_is_the_initialization_and_the_last_step_is_the_final_weights(tmp_path):
    module, data = small_setup(n_instances=3, n_features=5)
    trainer, _ = make_trainer(tmp_path, [GeometrySnapshots(spacing="log", n_snapshots=5)], max_steps=30)
    trainer.fit(module, data)
    snapshots = load(Path(trainer.log_dir) / "snapshots.pt")
    assert snapshots["step"].dtype == torch.long and snapshots["step"][0] == 0 and snapshots["step"][-1] == 30
    assert snapshots["W"].shape == (len(snapshots["step"]), 3, 2, 5) and snapshots["b"].shape == (len(snapshots["step"]), 3, 5)
    init = module.model.initial_state()
    torch.testing.assert_close(snapshots["W"][0], init["W"], rtol=0, atol=0)
    torch.testing.assert_close(snapshots["b"][0], init["b"], rtol=0, atol=0)
    torch.testing.assert_close(snapshots["W"][-1], module.model.W.detach(), rtol=0, atol=0)
    assert snapshots["init_seeds"].tolist() == [0, 1, 2]
    assert not torch.equal(snapshots["W"][0], snapshots["W"][-1])


def test_step_zero_is_what_training_started_from_after_on_fit_start_changes(tmp_path):
    class Patch(pl.Callback):  # stands in for WeightPatching, which edits the init in on_fit_start
        def on_fit_start(self, trainer, pl_module):
            with torch.no_grad():
                pl_module.model.W[1].copy_(pl_module.model.initial_state()["W"][0])

    module, data = small_setup(n_instances=2)
    trainer, _ = make_trainer(tmp_path, [GeometrySnapshots(n_snapshots=3), Patch()], max_steps=3)
    trainer.fit(module, data)
    W0 = load(Path(trainer.log_dir) / "snapshots.pt")["W"][0]
    torch.testing.assert_close(W0[1], module.model.initial_state()["W"][0], rtol=0, atol=0)


def test_schedules_always_include_zero_and_the_last_step():
    log = snapshot_schedule(10_000, "log", 50, 50)
    assert log[0] == 0 and log[-1] == 10_000 and 1 in log and len(log) <= 51
    assert log == sorted(set(log))
    assert snapshot_schedule(100, "linear", 50, 30) == [0, 30, 60, 90, 100]


def test_linear_spacing_defaults_to_log_every_n_steps(tmp_path):
    module, data = small_setup()
    trainer, _ = make_trainer(tmp_path, [GeometrySnapshots(spacing="linear")], max_steps=10, log_every_n_steps=4)
    trainer.fit(module, data)
    assert load(Path(trainer.log_dir) / "snapshots.pt")["step"].tolist() == [0, 4, 8, 10]


def _interrupting_save(fail_on_call: int):
    """torch.save that writes half of the bytes, then raises, on call number ``fail_on_call``."""
    real_save, calls = torch.save, {"n": 0}

    def save(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == fail_on_call:
            real_save(obj, f, *args, **kwargs)
            data = Path(f).read_bytes()
            Path(f).write_bytes(data[: len(data) // 2])
            raise OSError("disk full (simulated)")
        return real_save(obj, f, *args, **kwargs)

    return save


def test_an_interrupted_write_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "snapshots.pt"
    atomic.atomic_torch_save({"W": torch.ones(3)}, path)
    monkeypatch.setattr(atomic.torch, "save", _interrupting_save(1))
    with pytest.raises(OSError, match="simulated"):
        atomic.atomic_torch_save({"W": torch.zeros(1000)}, path)
    torch.testing.assert_close(load(path)["W"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["snapshots.pt"]  # no temporary file left behind


def test_a_run_interrupted_mid_write_keeps_the_earlier_snapshots(tmp_path, monkeypatch):
    module, data = small_setup()
    monkeypatch.setattr(atomic.torch, "save", _interrupting_save(3))
    trainer, _ = make_trainer(tmp_path, [GeometrySnapshots(spacing="linear", every_n_steps=2)], max_steps=10)
    with pytest.raises(OSError, match="simulated"):
        trainer.fit(module, data)
    run = Path(trainer.log_dir)
    snapshots = load(run / "snapshots.pt")
    assert snapshots["step"].tolist() == [0, 2]
    torch.testing.assert_close(snapshots["W"][0], module.model.initial_state()["W"], rtol=0, atol=0)
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_resume_keeps_step_zero_and_continues_the_schedule(tmp_path):
    module, data = small_setup()
    first = GeometrySnapshots(spacing="linear", every_n_steps=3)
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    trainer = pl.Trainer(max_steps=7, max_epochs=-1, callbacks=[first, checkpoint], default_root_dir=tmp_path / "a",
                         enable_progress_bar=False, enable_model_summary=False, logger=False)
    trainer.fit(module, data)
    resumed_module, data = small_setup()
    second = GeometrySnapshots(spacing="linear", every_n_steps=3)
    trainer = pl.Trainer(max_steps=12, max_epochs=-1, callbacks=[second], default_root_dir=tmp_path / "b",
                         enable_progress_bar=False, enable_model_summary=False, logger=False, enable_checkpointing=False)
    trainer.fit(resumed_module, data, ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    snapshots = load(tmp_path / "b" / "snapshots.pt")
    assert snapshots["step"].tolist() == [0, 3, 6, 7, 9, 12]
    torch.testing.assert_close(snapshots["W"][0], module.model.initial_state()["W"], rtol=0, atol=0)


def test_bad_arguments_raise_config_error():
    with pytest.raises(ConfigError, match="spacing must be 'log' or 'linear'"):
        GeometrySnapshots(spacing="cubic")
    with pytest.raises(ConfigError, match="n_snapshots must be an integer >= 2"):
        GeometrySnapshots(n_snapshots=1)


def test_without_tensorboard_it_warns_once_and_still_snapshots(tmp_path):
    module, data = small_setup()
    with pytest.warns(UserWarning, match="no TensorBoard logger") as record:
        trainer, _ = make_trainer(tmp_path, [GeometrySnapshots(n_snapshots=3, figure_every_n_steps=2)], max_steps=6)
        trainer.fit(module, data)
    assert sum("no TensorBoard logger" in str(w.message) for w in record) == 1
    assert (Path(trainer.log_dir) / "snapshots.pt").is_file()


def test_run_files_get_the_mode_of_any_new_file(tmp_path):
    # The atomic write's temporary file is 0600; the file it becomes must respect the umask.
    old = os.umask(0o022)
    try:
        atomic.atomic_write_text("{}", tmp_path / "report.json")
        atomic.atomic_torch_save({"step": torch.tensor([0])}, tmp_path / "snapshots.pt")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "report.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "snapshots.pt").stat().st_mode) == 0o644
