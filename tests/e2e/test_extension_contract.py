"""The extension contract: a callback written as Lightning's docs teach sees, at the default steps per call,
exactly what it would see with one step per call; Lightning's own callbacks behave as with one step per call."""

from __future__ import annotations

import ast
import inspect
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from datetime import timedelta

from pytorch_lightning.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint, Timer
from pytorch_lightning.cli import LightningCLI
from pytorch_lightning.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lit_superposition import LitToyModel, SparseFeatureDataModule
from lit_superposition.callbacks import FeatureLosses
from lit_superposition.errors import ConfigError
from lit_superposition.schedules import WarmupDecay
from lit_superposition.steps import AnyOf, AtSteps, CallPlan, EveryNSteps

PACKAGE = Path(__file__).resolve().parents[2] / "lit_superposition"


class PlainRecorder(pl.Callback):
    """What a Lightning user writes: per-batch hooks, global_step, the weights, batch, batch_idx and outputs."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.rows.append(("start", trainer.global_step, batch_idx, float(batch.sum())))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.rows.append(("end", trainer.global_step, batch_idx, float(batch.sum()), float(outputs["loss"]),
                          float(pl_module.model.W.detach().sum())))


def _fit(tmp_path: Path, steps_per_call: int, max_steps: int, callbacks: list, **trainer_kwargs) -> LitToyModel:
    module = LitToyModel(4, 6, d_hidden=2, steps_per_call=steps_per_call, **trainer_kwargs.pop("module", {}))
    data = SparseFeatureDataModule(4, 6, feature_probability=0.1, batch_size=32)
    trainer = pl.Trainer(max_steps=max_steps, max_epochs=-1, callbacks=callbacks, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path, **trainer_kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no steps-per-call (or any other) warning
        trainer.fit(module, data)
    return module


@pytest.fixture(scope="module")
def plain_runs(tmp_path_factory) -> dict[int, tuple[PlainRecorder, Path]]:
    """60 steps at the default steps per call and at 1, with a checkpoint every 25 steps (calls of 16 cut at 25 and 50)."""
    runs = {}
    for k in (16, 1):
        root = tmp_path_factory.mktemp(f"k{k}")
        recorder = PlainRecorder()
        checkpoint = ModelCheckpoint(dirpath=root / "checkpoints", every_n_train_steps=25, save_top_k=-1)
        logger = TensorBoardLogger(root, name="run", version=0)
        _fit(root, k, 60, [recorder, FeatureLosses(every_n_steps=10), checkpoint], logger=logger)
        runs[k] = (recorder, root / "checkpoints")
    return runs


def test_a_plain_callback_sees_exactly_what_it_sees_with_one_step_per_call(plain_runs):
    default, one = plain_runs[16][0].rows, plain_runs[1][0].rows
    assert len(one) == 120  # a start and an end for each of the 60 steps
    assert default == one
    assert [row[1] for row in one if row[0] == "end"] == list(range(1, 61))
    assert [row[2] for row in one if row[0] == "start"] == list(range(60))  # batch_idx: the step's index


def test_lightning_model_checkpoint_saves_the_same_steps_and_states(plain_runs):
    names = sorted(p.name for p in plain_runs[16][1].iterdir())
    assert names == sorted(p.name for p in plain_runs[1][1].iterdir()) == ["epoch=0-step=25.ckpt", "epoch=0-step=50.ckpt"]
    for name in names:
        a, b = (torch.load(run[1] / name, map_location="cpu", weights_only=False) for run in (plain_runs[16], plain_runs[1]))
        assert all(torch.equal(a["state_dict"][key], b["state_dict"][key]) for key in a["state_dict"])
        # Every callback's state is that of the checkpoint's step: the call ended there.
        state_a, state_b = (next(v for k, v in c["callbacks"].items() if k.startswith("FeatureLosses")) for c in (a, b))
        assert torch.equal(state_a["total"], state_b["total"]) and torch.equal(state_a["count"], state_b["count"])


def _lr_curve(run: Path) -> list[tuple[int, float]]:
    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    events.Reload()
    (tag,) = [tag for tag in events.Tags()["scalars"] if tag.startswith("lr-")]
    return [(event.step, event.value) for event in events.Scalars(tag)]


def test_learning_rate_monitor_logs_the_same_values_at_the_same_steps(tmp_path):
    curves = {}
    for k in (16, 1):
        logger = TensorBoardLogger(tmp_path, name=f"k{k}", version=0)
        schedule = lambda optimizer: WarmupDecay(optimizer, decay="cosine", warmup_steps=10, total_steps=70)  # noqa: E731
        _fit(tmp_path, k, 70, [LearningRateMonitor(logging_interval="step")], logger=logger, log_every_n_steps=5,
             enable_checkpointing=False, module={"lr_scheduler": schedule})
        curves[k] = _lr_curve(tmp_path / f"k{k}" / "version_0")
    assert len(curves[1]) == 14 and curves[16] == curves[1]
    assert len({value for _, value in curves[1]}) > 10  # the warmup and the decay, not one value


def test_schedules_and_the_call_plan_answer_without_a_trainer():
    plan = CallPlan(16, max_steps=100)
    assert plan.steps_this_call(0) == 16 and plan.steps_this_call(90) == 6  # max_steps ends the last call
    assert plan.steps_this_call(20) == 12  # calls stay aligned on multiples of 16 after a resume at 20
    assert plan.steps_this_call(20, required=[25, None, 20]) == 5  # the first step a callback requires
    every = EveryNSteps(200)
    assert every.is_due(400) and not every.is_due(401) and every.next_after(400) == 600
    snapshots = AtSteps([0, 3, 1, 10])
    assert snapshots.next_after(3) == 10 and snapshots.next_after(10) is None and snapshots.is_due(1)
    assert AnyOf(snapshots, EveryNSteps(4)).next_after(3) == 4


def test_lit_toy_model_knows_no_strategy_and_no_file_imports_it_for_helpers():
    source = (PACKAGE / "module.py").read_text()
    for word in ("shard", "all_reduce", "world_size", "DistributedDataParallel", "strategy"):
        assert word not in source, word
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "lit_superposition.module":
                assert {alias.name for alias in node.names} <= {"LitToyModel"}, path


def test_the_cli_overrides_no_private_lightning_cli_method():
    from lit_superposition.cli.lightning import LitSuperpositionCLI

    private = [name for name in vars(LitSuperpositionCLI) if name.startswith("_") and not name.startswith("__")
               and callable(getattr(LightningCLI, name, None))]
    assert private == []
    assert "optimizer" in inspect.signature(LitToyModel).parameters  # injected, not built by the CLI


class PlainLogger(pl.Callback):
    """Logs through the module, as Lightning's docs teach: self.log in a per-batch hook."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        pl_module.log("plain/step_loss", outputs["loss"], on_step=True, on_epoch=False)


def test_what_a_plain_callback_logs_with_self_log_reaches_the_loggers_at_the_same_steps(tmp_path):
    curves = {}
    for k in (16, 1):
        logger = TensorBoardLogger(tmp_path, name=f"k{k}", version=0)
        _fit(tmp_path, k, 40, [PlainLogger()], logger=logger, log_every_n_steps=5, enable_checkpointing=False)
        events = EventAccumulator(str(tmp_path / f"k{k}" / "version_0"), size_guidance={"scalars": 0})
        events.Reload()
        curves[k] = [(e.step, e.value) for e in events.Scalars("plain/step_loss")]
    assert len(curves[1]) == 8 and curves[16] == curves[1]


@pytest.mark.parametrize("steps_per_call", [16, 1])
def test_timer_stops_after_the_step_at_which_its_time_runs_out(tmp_path, monkeypatch, steps_per_call):
    """Lightning's Timer on a clock that reads one second per optimizer step: 5 s stop the run at step 5,
    not at the end of a call of 16."""
    import pytorch_lightning.callbacks.timer as timer_module

    recorder = PlainRecorder()
    trainer = pl.Trainer(max_steps=100, max_epochs=-1, callbacks=[recorder, Timer(duration=timedelta(seconds=5), interval="step")],
                         enable_progress_bar=False, enable_model_summary=False, logger=False, default_root_dir=tmp_path)
    monkeypatch.setattr(timer_module, "time", SimpleNamespace(monotonic=lambda: float(trainer.global_step)))  # the Timer's clock only
    trainer.fit(LitToyModel(4, 6, d_hidden=2, steps_per_call=steps_per_call),
                SparseFeatureDataModule(4, 6, feature_probability=0.1, batch_size=32))
    assert trainer.global_step == 5
    assert [row[1] for row in recorder.rows if row[0] == "end"] == [1, 2, 3, 4, 5]


def test_early_stopping_is_refused_in_one_line_rather_than_never_running(tmp_path):
    with pytest.raises(ConfigError, match=r"^EarlyStopping never runs here .*max_steps") as error:
        _fit(tmp_path, 16, 10, [EarlyStopping(monitor="train/loss")], logger=False)
    assert "\n" not in str(error.value)
