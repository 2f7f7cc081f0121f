"""``lit-superposition llc RUN_DIR`` through the installed command: the fields, the traces, the page; bad input."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lit_superposition.analysis.llc import LLCSettings, estimate_llc
from lit_superposition.cli import build_cli
from lit_superposition.data import SparseFeatureDataModule
from lit_superposition.models import ReLUOutputModel
from tests.conftest import assert_bad_input, run_command, run_in_process

SETTINGS = {"n": 1500, "n_chains": 3, "n_draws": 60, "n_burnin": 30, "batch_size": 100, "seed": 4}
OPTIONS = [f"--{name}={value}" for name, value in SETTINGS.items()]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 40-step pentagon run (8 instances, 5 features)."""
    folder = tmp_path_factory.mktemp("llc_run")
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        build_cli(["fit", "--config", "pentagon.yaml", "--trainer.max_steps=40", "--trainer.enable_progress_bar=false",
                   "--instruments.geometry_snapshots.n_snapshots=3"])
    finally:
        os.chdir(cwd)
    return folder / "runs" / "pentagon" / "version_0"


def test_the_command_writes_lambda_per_instance_the_traces_and_the_page(run, tmp_path):
    before = json.loads((run / "report.json").read_text())
    result = run_command("llc", str(run), *OPTIONS, "--traces=[2,5]", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "report page:" in result.stdout and "λ̂" in result.stdout
    report = json.loads((run / "report.json").read_text())
    for old, new in zip(before["instances"], report["instances"]):
        assert {k: v for k, v in new.items() if k != "llc"} == old  # everything else kept
        llc = new["llc"]
        assert set(llc) == {"mean", "std", "per_chain", "init_loss", "settings", "warnings", "step", "sample"}
        assert llc["step"] == 40 and llc["sample"] == "stream, sample_seed 0" and len(llc["per_chain"]) == 3
        assert llc["settings"] == asdict(LLCSettings(**SETTINGS).resolved())
    # The estimator's own answer on the checkpoint's weights and 1500 points of the run's law (seed 0):
    # the command rebuilt the right model, weights and data.
    state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    model = ReLUOutputModel(8, 5, 2)
    with torch.no_grad():
        model.W.copy_(state["model.W"]), model.b.copy_(state["model.b"])
    points = SparseFeatureDataModule(8, 5, 0.05).values_of(torch.rand(1, 1500, 5, generator=torch.Generator().manual_seed(0)))
    expected = estimate_llc(model, points, LLCSettings(**SETTINGS))
    assert [entry["llc"]["per_chain"] for entry in report["instances"]] == expected.per_chain.tolist()
    traces = torch.load(run / "llc.pt", weights_only=True)
    assert traces["traces"].shape == (8, 3, 60) and torch.equal(traces["traces"], expected.traces.float())
    page = (run / "report" / "index.html").read_text()
    for figure in ("llc_estimates.png", "llc_traces.png"):
        assert (run / "report" / figure).stat().st_size > 10_000 and figure in page
    events = EventAccumulator(str(run), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    assert events.Scalars("llc/instance_007")[0].value == pytest.approx(report["instances"][7]["llc"]["mean"], rel=1e-6)
    assert [e.step for e in events.Scalars("llc_trace/instance_005/chain_02")] == list(range(60))
    assert "llc_trace/instance_000/chain_00" not in events.Tags()["scalars"] and "llc/traces" in events.Tags()["images"]


def test_no_checkpoint_or_bad_hyperparameters_are_one_line_and_exit_2(run, in_tmp):
    no_checkpoint = in_tmp / "no_checkpoint"
    no_checkpoint.mkdir()
    for name in ("report.json", "config.yaml"):
        shutil.copy(run / name, no_checkpoint / name)
    cases = [
        ([str(no_checkpoint)], "has no checkpoints/last.ckpt"),
        ([str(run), "--n_chains=0"], "llc.n_chains must be an integer >= 1, got 0"),
        ([str(run), "--gamma=-2"], "llc.gamma must be a finite number >= 0"),
        ([str(run), "--n=100"], "llc.batch_size must be at most n (100), got 256"),
        ([str(run), "--n_draws=many"], "n_draws"),
        ([str(run), "--instances=[8]", *OPTIONS], "--instances must list instances in 0..7"),
    ]
    for args, message in cases:
        result = run_in_process("llc", *args, cwd=in_tmp)
        assert_bad_input(result.returncode, result.stderr, message, in_tmp)
