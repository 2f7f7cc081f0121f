"""``lit-superposition sweep`` end to end: tiny runs through the local pool and submitit's local executor.

The runs are ``pentagon.yaml`` at 30 steps, 2 instances, batch 64, in 3 hidden dimensions (the report's
2-D k-gon theory would cost seconds per run): seconds each, mostly interpreter start.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from tests.conftest import assert_bad_input, run_command, run_in_process

TINY = ("[--trainer.max_steps=30, --data.n_instances=2, --data.batch_size=64, --model.d_hidden=3, --report_page=false, "
        "--trainer.enable_progress_bar=false]")
GRID = f"""name: tiny
base: pentagon.yaml
options: {TINY}
grid:
  model.optimizer: [SGD, Adam]
  model.optimizer.init_args.lr: [0.01, 0.001]
"""
# The same four points as a zip (the same runs: a run is its resolved config), and one bad learning rate.
FAILING = f"""name: tiny
base: pentagon.yaml
options: {TINY}
zip:
  model.optimizer: [SGD, SGD, Adam, Adam, Adam]
  model.optimizer.init_args.lr: [0.01, 0.001, 0.01, 0.001, -1.0]
"""
PROBABILITIES = f"""name: probabilities
base: pentagon.yaml
options: {TINY}
grid:
  data.feature_probability: [0.05, 0.2]
"""


def sweep_json(directory: Path) -> dict:
    return json.loads((directory / "sweep.json").read_text())


def states(directory: Path) -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in (directory / "states").glob("*.json")}


def last_checkpoint(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> Path:
    """The 2 x 2 sweep (optimizer x learning rate), two runs at a time, through the installed command."""
    folder = tmp_path_factory.mktemp("grid")
    (folder / "grid.yaml").write_text(GRID)
    (folder / "failing.yaml").write_text(FAILING)
    result = run_command("sweep", "grid.yaml", "--max_parallel", "2", cwd=folder)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "sweep tiny: 4 runs (4 points), 2 instances each" in result.stdout
    return folder


def test_a_grid_sweep_runs_every_point_two_at_a_time_and_records_it(grid):
    directory = grid / "sweeps" / "tiny"
    record = sweep_json(directory)
    runs = record["runs"]
    assert [run["state"] for run in runs] == ["done"] * 4
    assert {(run["overrides"]["model.optimizer"], run["overrides"]["model.optimizer.init_args.lr"]) for run in runs} == {
        ("SGD", 0.01), ("SGD", 0.001), ("Adam", 0.01), ("Adam", 0.001)}
    for run in runs:
        run_dir = directory / run["directory"]
        config = (run_dir / "config.yaml").read_text()  # what the run itself resolved
        assert f"class_path: torch.optim.{run['overrides']['model.optimizer']}" in config
        assert f"lr: {run['overrides']['model.optimizer.init_args.lr']}" in config
        report = json.loads((run_dir / "report.json").read_text())
        losses = [row["loss"] for row in report["instances"]]
        assert run["results"]["loss"] == pytest.approx(sum(losses) / len(losses))
        assert sum(run["results"]["geometries"].values()) == 2 == report["n_instances"]
    # Two at a time: the runs' intervals overlap in pairs, never three.
    spans = [(s["started"], s["finished"]) for s in states(directory).values()]
    most = max(sum(start <= t < end for start, end in spans) for t, _ in spans)
    assert most == 2
    page = (directory / "report" / "index.html").read_text()
    assert all(run["id"] in page for run in runs) and page.count("<img") == 2
    assert all((directory / "report" / f"axis_{k}.png").stat().st_size > 1000 for k in range(2))
    plan = json.loads((directory / "plan.json").read_text())
    assert [axis["packed"] for axis in plan["axes"]] == [False, False]


def test_running_the_same_sweep_again_runs_nothing(grid):
    before = states(grid / "sweeps" / "tiny")
    result = run_in_process("sweep", "grid.yaml", "--max_parallel", "2", cwd=grid)
    assert result.returncode == 0, result.stderr
    assert "to run 0, to resume 0, done 4" in result.stdout
    assert states(grid / "sweeps" / "tiny") == before


@pytest.fixture(scope="module")
def rerun(grid) -> dict:
    """One run's directory deleted and one run marked interrupted, then the four points and one bad one,
    through submitit's local executor."""
    directory = grid / "sweeps" / "tiny"
    local = sweep_json(directory)
    deleted, stopped = local["runs"][1]["id"], local["runs"][2]["id"]
    W = last_checkpoint(directory / "runs" / deleted)["state_dict"]["model.W"]
    shutil.rmtree(directory / "runs" / deleted)
    state = json.loads((directory / "states" / f"{stopped}.json").read_text())
    (directory / "states" / f"{stopped}.json").write_text(json.dumps({**state, "state": "interrupted", "returncode": 130}))
    before = states(directory)
    result = run_in_process("sweep", "failing.yaml", "--executor", "submitit_local", cwd=grid)
    return {"result": result, "before": before, "deleted": deleted, "stopped": stopped, "after": states(directory),
            "record": sweep_json(directory), "local": local, "W": W, "folder": grid}


def test_a_deleted_run_is_run_again_and_only_it(rerun):
    before, after, deleted = rerun["before"], rerun["after"], rerun["deleted"]
    assert len(after) == 5
    started = {run_id for run_id, state in after.items() if before.get(run_id) != state}
    bad = next(run["id"] for run in rerun["record"]["runs"] if run["overrides"]["model.optimizer.init_args.lr"] == -1.0)
    assert started == {deleted, bad, rerun["stopped"]}
    assert after[deleted]["state"] == "done" and not after[deleted]["resumed"]


def test_an_interrupted_run_continues_from_its_last_checkpoint(rerun):
    stopped, sweep = rerun["stopped"], rerun["folder"] / "sweeps" / "tiny"
    assert rerun["after"][stopped]["state"] == "done" and rerun["after"][stopped]["resumed"]
    plan = json.loads((sweep / "plan.json").read_text())
    assert plan["runs"][2]["id"] == stopped
    out = " ".join((sweep / "logs" / f"{stopped}.out").read_text().split())
    assert "resuming " in out and f"runs/{stopped}/" in out  # from its own last.ckpt, in its own directory
    assert (sweep / "runs" / stopped / "report.json").is_file()


def test_a_failing_point_is_reported_with_its_line_and_the_others_finish(rerun):
    result, record = rerun["result"], rerun["record"]
    assert result.returncode == 1
    assert [run["state"] for run in record["runs"]] == ["done"] * 4 + ["failed"]
    failed = record["runs"][4]
    assert failed["last_line"].startswith("lit-superposition: error: ") and "Invalid learning rate: -1.0" in failed["last_line"]
    assert failed["returncode"] == 2 and failed["results"] is None
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "1 of 5 runs failed" in lines[0] and "Invalid learning rate" in lines[0]


def test_submitit_local_executor_gives_the_states_and_bits_of_the_local_pool(grid, rerun):
    # The grid's runs, as the local pool recorded them and after the deleted one ran again under submitit.
    keep = ("id", "state", "returncode", "last_line", "overrides", "results", "points")
    assert [{k: run[k] for k in keep} for run in rerun["record"]["runs"][:4]] == [{k: run[k] for k in keep} for run in rerun["local"]["runs"]]
    assert len(list((grid / "sweeps" / "tiny" / "submitit").glob("*_result.pkl"))) == 3  # all ran as submitit jobs
    W = last_checkpoint(grid / "sweeps" / "tiny" / "runs" / rerun["deleted"])["state_dict"]["model.W"]
    assert torch.equal(W, rerun["W"])  # the same config gives the same bits, whichever executor ran it


def test_compare_lines_up_a_sweeps_runs(grid, rerun):
    result = run_in_process("compare", "sweeps/tiny", "--json", "cmp.json", "--figure", "cmp.png", cwd=grid)
    assert result.returncode == 0, result.stderr
    comparison = json.loads((grid / "cmp.json").read_text())
    record = sweep_json(grid / "sweeps" / "tiny")
    assert comparison["labels"] == [run["label"] for run in record["runs"][:4]]  # the sweep's own labels
    assert [row["run"] for row in comparison["points"]] == [run["id"] for run in record["runs"]]
    assert [row["state"] for row in comparison["points"]] == ["done"] * 4 + ["failed"]
    assert "Invalid learning rate" in result.stdout and (grid / "cmp.png").is_file()


@pytest.fixture(scope="module")
def probabilities(tmp_path_factory) -> Path:
    """data.feature_probability over two values: packed into one run, and as two separate runs."""
    folder = tmp_path_factory.mktemp("packing")
    (folder / "p.yaml").write_text(PROBABILITIES)
    packed = run_in_process("sweep", "p.yaml", cwd=folder)
    assert packed.returncode == 0, packed.stderr
    separate = run_in_process("sweep", "p.yaml", "--pack", "false", "--max_parallel", "2", "--sweep_dir", "sweeps/separate", cwd=folder)
    assert separate.returncode == 0, separate.stderr
    assert "sweep probabilities: 1 run (2 points), 4 instances each" in packed.stdout
    return folder


def test_packed_instances_train_bitwise_as_the_separate_runs_in_shared_mode(probabilities):
    packed, separate = sweep_json(probabilities / "sweeps" / "probabilities"), sweep_json(probabilities / "sweeps" / "separate")
    assert len(packed["runs"]) == 1 and len(separate["runs"]) == 2 and packed["axes"][0]["packed"]
    run = packed["runs"][0]
    whole = last_checkpoint(probabilities / "sweeps" / "probabilities" / run["directory"])
    for point, alone in zip(run["points"], separate["runs"]):
        assert alone["points"][0]["axes"] == point["axes"]
        start, stop = point["instances"]
        own = last_checkpoint(probabilities / "sweeps" / "separate" / alone["directory"])
        for name in ("model.W", "model.b", "model.initial_W"):
            assert torch.equal(whole["state_dict"][name][start:stop], own["state_dict"][name]), name
        for moments, own_moments in zip(whole["optimizer_states"][0]["state"].values(), own["optimizer_states"][0]["state"].values()):
            assert torch.equal(moments["exp_avg_sq"][start:stop], own_moments["exp_avg_sq"])  # AdamW's moments too
        assert point["results"] == alone["points"][0]["results"]
    one = run_in_process("compare", "sweeps/probabilities", "--figure", "cmp.png", cwd=probabilities)
    assert one.returncode == 0 and "no per-seed table" in one.stdout  # one run: its points, no seeds to line up


def test_a_dry_run_prints_the_plan_and_writes_nothing(in_tmp, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # rich wraps table cells to the terminal's width
    (in_tmp / "p.yaml").write_text(PROBABILITIES.replace("[0.05, 0.2]", "[0.05, 0.1, 0.2]") + "  model.optimizer: [SGD, Adam]\n")
    result = run_in_process("sweep", "p.yaml", "--dry-run", cwd=in_tmp)
    assert result.returncode == 0, result.stderr
    assert "sweep probabilities: 2 runs (6 points), 6 instances each; to run 2" in result.stdout
    assert "per-instance: its 3 values are instances of one run (2 each)" in result.stdout
    assert "model.optimizer: not a per-instance setting; one run per value" in result.stdout
    assert not (in_tmp / "sweeps").exists() and not (in_tmp / "runs").exists()


@pytest.mark.parametrize("text, args, message", [
    ("base: pentagon.yaml\ngrid: {data.n_featurez: [5, 6]}\n", [], "point data.n_featurez=5: "),
    ("base: pentagon.yaml\ngrid: {model.optimizer: []}\n", [], "axis 'model.optimizer' is empty"),
    ("base: pentagon.yaml\nzip: {model.optimizer: [SGD, Adam], model.optimizer.init_args.lr: [0.1]}\n", [], "zip axes must have equal lengths"),
    ("base: pentagon.yaml\ngrid: {model.optimizer: [SGD]}\n", ["--executor", "pbs"], "--executor 'pbs' is not one of local, slurm, submitit_local"),
    ("base: pentagon.yaml\ngrid: {model.optimizer: [SGD]}\n", ["--ckpt_path", "x.ckpt"], "--ckpt_path is set by the sweep"),
    ("base: pentagon.yaml\ngrid: {data.feature_probability: [0.05, 1.5]}\n", [], "feature_probability must be in (0, 1]"),
])
def test_bad_input_is_one_line_before_any_run(in_tmp, text, args, message):
    (in_tmp / "bad.yaml").write_text(text)
    result = run_in_process("sweep", "bad.yaml", *args, cwd=in_tmp)
    assert_bad_input(result.returncode, result.stderr, message, in_tmp)
    assert not (in_tmp / "sweeps").exists()


def test_an_executor_that_is_not_installed_is_one_line(in_tmp, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "submitit", None)  # what an environment without it imports
    (in_tmp / "s.yaml").write_text("base: pentagon.yaml\ngrid: {model.optimizer: [SGD]}\n")
    result = run_in_process("sweep", "s.yaml", "--executor", "slurm", cwd=in_tmp)
    assert_bad_input(result.returncode, result.stderr, "--executor slurm needs submitit, which is not installed", in_tmp)
    assert not (in_tmp / "sweeps").exists()


def test_report_redraws_a_sweeps_page(grid, tmp_path):
    result = run_in_process("report", "sweeps/tiny", "--out", str(tmp_path / "page"), cwd=grid)
    assert result.returncode == 0, result.stderr
    assert f"sweep report: {tmp_path / 'page' / 'index.html'}" in result.stdout
    assert (tmp_path / "page" / "index.html").read_text() == (grid / "sweeps" / "tiny" / "report" / "index.html").read_text()
