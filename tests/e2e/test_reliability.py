"""Exact resume, interrupts, divergence, determinism and multi-process training, through the CLI."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lit_superposition.cli import build_cli
from lit_superposition.data import SparseFeatureDataModule
from lit_superposition.models import VARIANTS
from tests.conftest import assert_bitwise_equal, cli_env, load_checkpoint, run_command

QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["state_dict"]


def _callback_state(checkpoint: dict, name: str) -> dict:
    return next(state for key, state in checkpoint["callbacks"].items() if key.startswith(name))


def test_resume_from_a_checkpoint_is_bitwise_exact(in_tmp):
    # Adam's moments, the cosine schedule, the data stream and the instruments (pentagon.yaml has
    # them on: snapshots, interval-mean losses every 100 steps, the report) must all continue where
    # they stopped. Checkpoints every 70 steps cut the loss interval in the middle.
    args = [
        "fit", "--config", "pentagon.yaml", *QUIET, "--trainer.max_steps=250", "--trainer.log_every_n_steps=10",
        "--checkpoint.every_n_train_steps=70", "--checkpoint.save_top_k=-1",
        "--model.lr_scheduler", "WarmupDecay", "--model.lr_scheduler.decay=cosine", "--model.lr_scheduler.warmup_steps=20",
    ]
    build_cli(args)
    run = in_tmp / "runs" / "pentagon" / "version_0"
    checkpoints = run / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == [
        "epoch=0-step=140.ckpt", "epoch=0-step=210.ckpt", "epoch=0-step=70.ckpt", "last.ckpt"
    ]
    straight = load_checkpoint(checkpoints / "last.ckpt")
    assert straight["global_step"] == 250  # last.ckpt is where the run ended, not the last periodic save
    straight_snapshots = torch.load(run / "snapshots.pt", weights_only=True)
    straight_report = json.loads((run / "report.json").read_text())
    mid_interval = load_checkpoint(checkpoints / "epoch=0-step=70.ckpt")
    assert _callback_state(mid_interval, "FeatureLosses")["count"].min() > 0  # an unfinished interval is saved

    cli = build_cli([*args, "--ckpt_path", str(checkpoints / "epoch=0-step=70.ckpt")])
    assert cli.trainer.global_step == 250
    resumed = load_checkpoint(checkpoints / "last.ckpt")
    assert_bitwise_equal(straight["state_dict"], resumed["state_dict"])
    for a, b in zip(straight["optimizer_states"][0]["state"].values(), resumed["optimizer_states"][0]["state"].values()):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert straight["lr_schedulers"] == resumed["lr_schedulers"]
    for name in ("FeatureLosses", "GeometrySnapshots"):
        assert_bitwise_equal(_callback_state(straight, name), _callback_state(resumed, name))
    # The snapshot schedule continued: the same steps (step 0 included) with the same weights.
    resumed_snapshots = torch.load(run / "snapshots.pt", weights_only=True)
    assert resumed_snapshots["step"].tolist() == straight_snapshots["step"].tolist()
    assert resumed_snapshots["step"][0] == 0 and resumed_snapshots["step"][-1] == 250
    assert torch.equal(resumed_snapshots["W"], straight_snapshots["W"])
    # The report is complete and the same.
    assert json.loads((run / "report.json").read_text()) == straight_report
    # One run, one directory: the resumed run logs into the run it continues.
    assert sorted(p.name for p in run.parent.iterdir()) == ["version_0"]


def test_same_config_and_seeds_give_bitwise_identical_runs(tmp_path, monkeypatch):
    def run(folder, *extra):
        monkeypatch.chdir(folder)
        build_cli(["fit", "--config", "pentagon.yaml", *QUIET, "--trainer.max_steps=60", *extra])
        return _weights(folder / "runs" / "pentagon" / "version_0" / "checkpoints" / "last.ckpt")

    folders = [tmp_path / name for name in ("a", "b", "c", "d")]
    for folder in folders:
        folder.mkdir()
    first, second = run(folders[0]), run(folders[1])
    assert_bitwise_equal(first, second)
    assert not torch.equal(first["model.W"], run(folders[2], "--data.data_seed=1")["model.W"])
    other_init = run(folders[3], "--model.init_seeds=100")
    assert not torch.equal(first["model.W"], other_init["model.W"])


def test_lr_1e6_stops_with_one_line_naming_step_and_instances(tmp_path):
    result = run_command(
        "fit", "--config", "pentagon.yaml", "--model.optimizer=AdamW", "--model.optimizer.lr=1e6", "--trainer.max_steps=300",
        "--checkpoint.every_n_train_steps=1", cwd=tmp_path,
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("lit-superposition")]
    assert len(lines) == 1, result.stderr
    assert "non-finite loss (NaN or inf) at step " in lines[0] and "instances" in lines[0]
    bad_step = int(lines[0].split("at step ")[1].split()[0])
    last = load_checkpoint(tmp_path / "runs" / "pentagon" / "version_0" / "checkpoints" / "last.ckpt")
    assert last["global_step"] <= bad_step  # the weights before the bad step, never after
    assert all(t.isfinite().all() for t in last["state_dict"].values())


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"the command ended early: {proc.communicate()[1][-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting for the run to start")
        time.sleep(0.2)


def _command() -> list[str]:
    script = Path(sys.executable).with_name("lit-superposition")
    return [str(script)] if script.exists() else ["lit-superposition"]


# SIGTERM (what SLURM sends) through the real command; both signals in-process in tests/callbacks.
def test_a_signal_during_fit_leaves_last_ckpt_and_events_and_the_run_resumes(tmp_path):
    signum = signal.SIGTERM
    run = tmp_path / "runs" / "pentagon" / "version_0"
    proc = subprocess.Popen(
        [*_command(), "fit", "--config", "pentagon.yaml", "--trainer.max_steps=1000000", "--trainer.log_every_n_steps=5",
         "--checkpoint.every_n_train_steps=20", "--trainer.enable_progress_bar=false"],
        cwd=tmp_path, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    _wait_for(lambda: (run / "checkpoints" / "last.ckpt").is_file(), proc)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 128 + signum, stderr[-2000:]
    assert "Traceback" not in stderr
    line = next(line for line in stderr.splitlines() if line.startswith("lit-superposition"))
    assert f"stopped by {signal.Signals(signum).name} after step" in line and "--ckpt_path" in line
    stopped = int(line.split("after step ")[1].split(";")[0])
    last = run / "checkpoints" / "last.ckpt"
    assert load_checkpoint(last)["global_step"] == stopped >= 20
    events = EventAccumulator(str(run))
    events.Reload()
    assert "train/loss" in events.Tags()["scalars"]
    # The instruments closed their files too: complete snapshots up to the stop, and the report.
    snapshots = torch.load(run / "snapshots.pt", weights_only=True)
    assert snapshots["step"][0] == 0 and snapshots["step"][-1] == stopped
    assert snapshots["W"].shape[0] == len(snapshots["step"])
    assert json.loads((run / "report.json").read_text())["step"] == stopped

    assert "Stopped at step" in (run / "report" / "index.html").read_text()  # the page of a stopped run says so

    # Restart from what the interrupted run left: it continues in the run's directory, and keeps what it replaces.
    stopped_report = (run / "report.json").read_bytes()
    result = run_command(
        "fit", "--config", "pentagon.yaml", f"--trainer.max_steps={stopped + 10}", "--ckpt_path", str(last),
        "--report_page=false", cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert load_checkpoint(last)["global_step"] == stopped + 10
    assert (run / "previous" / "1" / "report.json").read_bytes() == stopped_report
    assert load_checkpoint(run / "previous" / "1" / "checkpoints" / "last.ckpt")["global_step"] == stopped


def _reference_ddp_weights(steps: int, lr: float, variant: str) -> dict[str, torch.Tensor]:
    """Two ranks' gradients averaged every step, in a plain PyTorch loop: what DDP must compute."""
    model = VARIANTS[variant](n_instances=8, n_features=5, d_hidden=2, init_seeds=0)
    data = SparseFeatureDataModule(n_instances=8, n_features=5, feature_probability=0.05, batch_size=64)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for step in range(steps):
        loss = sum(((x - model(x)).square().mean(dim=(1, 2)).sum()) for x in (data.make_batch(step, rank) for rank in (0, 1)))
        optimizer.zero_grad()
        (loss / 2).backward()
        optimizer.step()
    return {"model.W": model.W.detach(), "model.b": model.b.detach()}


@pytest.mark.slow
# The strategy averages every parameter whatever the variant: the tied model with several optimizer steps per
# call (the module averages the gradients itself) and the untied computation model with Lightning's own DDP.
@pytest.mark.parametrize(("variant", "steps_per_call"), [("relu_output", 8), ("computation", 1)])
def test_ddp_on_two_cpu_processes_syncs_gradients_over_distinct_data(tmp_path, variant, steps_per_call):
    steps, lr = 20, 0.5
    result = run_command(
        "fit", "--config", "pentagon.yaml", f"--model.variant={variant}", "--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu",
        f"--trainer.max_steps={steps}", "--data.batch_size=64", "--model.optimizer=SGD", f"--model.optimizer.lr={lr}",
        "--trainer.log_every_n_steps=5", f"--model.steps_per_call={steps_per_call}", cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = tmp_path / "runs" / "pentagon"
    assert sorted(p.name for p in runs.iterdir()) == ["version_0"]  # only rank 0 writes
    # Training's events and the report's curve images, all from rank 0's process (name: ...host.pid.counter).
    writers = {path.name.rsplit(".", 2)[1] for path in (runs / "version_0").glob("events.out.tfevents.*")}
    assert len(writers) == 1
    written = sorted(p.name for p in (runs / "version_0").iterdir() if not p.name.startswith("events."))
    assert written == ["checkpoints", "config.yaml", "hparams.yaml", "report", "report.json", "snapshots.pt"]  # one of each
    events = EventAccumulator(str(runs / "version_0"))
    events.Reload()
    assert events.Tags()["images"]  # the figures, from rank 0 alone
    weights = _weights(runs / "version_0" / "checkpoints" / "last.ckpt")
    expected = _reference_ddp_weights(steps, lr, variant)
    for name, tensor in expected.items():
        torch.testing.assert_close(weights[name], tensor, rtol=1e-5, atol=1e-6)
    # Rank 0's data alone gives other weights: the ranks drew distinct batches.
    single = VARIANTS[variant](8, 5, 2, 0)
    assert not torch.allclose(weights["model.W"], single.W.detach())
