"""Every model variant through the CLI: the default instruments, bitwise resume, one-line bad input."""

from __future__ import annotations

import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lit_superposition.cli import build_cli, main
from lit_superposition.models import VARIANTS
from tests.conftest import assert_bad_input

QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def _fit(*extra: str) -> None:
    build_cli([
        "fit", "--config", "pentagon.yaml", *QUIET, "--trainer.max_steps=40", "--trainer.log_every_n_steps=10",
        "--checkpoint.every_n_train_steps=15", "--checkpoint.save_top_k=-1",
        "--instruments.feature_grad_norms.every_n_steps=10", "--instruments.feature_losses.every_n_steps=10",
        "--instruments.feature_geometry.every_n_steps=10", *extra,
    ])


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_each_variant_trains_with_the_default_instruments_and_resumes_bitwise(in_tmp, variant):
    _fit(f"--model.variant={variant}")
    run = in_tmp / "runs" / "pentagon" / "version_0"
    report = json.loads((run / "report.json").read_text())
    assert report["variant"] == type(VARIANTS[variant](1, 1, 1)).__name__ and report["step"] == 40
    assert len(report["instances"]) == 8
    snapshots = torch.load(run / "snapshots.pt", weights_only=True)
    assert snapshots["step"][0] == 0 and snapshots["step"][-1] == 40
    events = EventAccumulator(str(run))
    events.Reload()
    scalars = events.Tags()["scalars"]
    for tag in ("grad_norm_W/instance_000/feature_00", "feature_loss/instance_007/feature_04",
                "feature_norm/instance_003/feature_02", "train/loss"):
        assert tag in scalars, tag
    assert "geometry/polygons" in events.Tags()["images"]
    straight = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)

    _fit(f"--model.variant={variant}", "--ckpt_path", str(run / "checkpoints" / "epoch=0-step=15.ckpt"))
    resumed = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert resumed["global_step"] == 40
    assert straight["state_dict"].keys() == resumed["state_dict"].keys()
    for name, value in straight["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][name]), name
    assert torch.equal(torch.load(run / "snapshots.pt", weights_only=True)["W"], snapshots["W"])


def test_the_hidden_relu_model_gets_per_neuron_measurements(in_tmp):
    _fit("--model.variant=hidden_relu", "--model.d_hidden=3")
    run = in_tmp / "runs" / "pentagon" / "version_0"
    report = json.loads((run / "report.json").read_text())
    weights = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]["model.W"]
    for entry in report["instances"]:
        assert len(entry["neurons"]) == 3
        for neuron, row in zip(entry["neurons"], weights[entry["index"]]):
            assert neuron["top_feature"] == int(row.square().argmax())
            assert neuron["top_share"] == pytest.approx(float(row.square().max() / row.square().sum()), rel=1e-5)
    events = EventAccumulator(str(run))
    events.Reload()
    assert "neuron_top_share/instance_000/neuron_02" in events.Tags()["scalars"]
    assert "geometry/neurons" in events.Tags()["images"]
    assert "geometry/WtW" in events.Tags()["images"]  # d_hidden = 3: no polygons


def test_models_without_neurons_get_no_neuron_entries(in_tmp):
    _fit("--model.variant=linear_output", "--trainer.max_steps=5", "--instruments.geometry_snapshots=null")
    run = in_tmp / "runs" / "pentagon" / "version_0"
    report = json.loads((run / "report.json").read_text())
    assert all("neurons" not in entry for entry in report["instances"])
    assert not (run / "snapshots.pt").exists()  # the instrument was dropped from the command line


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model.variant=linear"], "model.variant 'linear' is not known: choose one of relu_output"),
        (["--model.variant=torch.nn.Linear"], "model.variant 'torch.nn.Linear' is not a ToyModel subclass"),
        (["--model.variant=hidden_relu", "--model.d_hidden=0"], "d_hidden must be a positive integer, got 0"),
    ],
)
def test_bad_variants_exit_2_with_one_line(in_tmp, capsys, extra, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", "pentagon.yaml", *QUIET, "--trainer.max_steps=3", *extra])
    assert_bad_input(exit_info.value.code, capsys.readouterr().err, message, in_tmp)
