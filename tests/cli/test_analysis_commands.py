"""The report and compare commands through the installed command, and their one-line bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from lit_superposition.cli import build_cli, main
from tests.conftest import assert_bad_input, run_command, run_in_process

QUIET = ["--trainer.enable_progress_bar=false", "--instruments.geometry_snapshots.n_snapshots=4"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two short pentagon runs of the same seeds (AdamW, SGD) and one of other seeds."""
    folder = tmp_path_factory.mktemp("runs")
    import os

    cwd = os.getcwd()
    os.chdir(folder)
    try:
        build_cli(["fit", "--config", "pentagon.yaml", *QUIET, "--trainer.max_steps=30"])
        build_cli(["fit", "--config", "pentagon.yaml", *QUIET, "--trainer.max_steps=30", "--model.optimizer=SGD", "--model.optimizer.lr=0.1"])
        build_cli(["fit", "--config", "pentagon.yaml", *QUIET, "--trainer.max_steps=30", "--model.init_seeds=100"])
    finally:
        os.chdir(cwd)
    base = folder / "runs" / "pentagon"
    return {"adamw": base / "version_0", "sgd": base / "version_1", "other_seeds": base / "version_2"}


def test_report_command_writes_the_page_and_says_where(runs, tmp_path):
    result = run_command("report", str(runs["adamw"]), "--out", str(tmp_path / "page"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"report page: {tmp_path / 'page' / 'index.html'}" in result.stdout.replace("\n", "")
    assert (tmp_path / "page" / "polygons.png").is_file()


def test_compare_lines_up_the_seeds_and_labels_runs_by_what_differs(runs, tmp_path):
    result = run_command("compare", str(runs["adamw"]), str(runs["sgd"]), "--json", "cmp.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    comparison = json.loads((tmp_path / "cmp.json").read_text())
    assert comparison["labels"][0].startswith("model.optimizer=AdamW")  # the default, by name
    assert comparison["labels"][1].startswith("model.optimizer=SGD")
    assert [row["init_seed"] for row in comparison["seeds"]] == list(range(8))
    for label, run in zip(comparison["labels"], ("adamw", "sgd")):
        report = json.loads((runs[run] / "report.json").read_text())
        assert [row[label] for row in comparison["seeds"]] == [entry["geometry"] for entry in report["instances"]]
        assert sum(comparison["counts"][label].values()) == 8
    # The figure beside the runs (their folder), never in the working directory; a second one says it replaced it.
    figure = runs["adamw"].parent / "comparison.png"
    assert figure.is_file() and not (tmp_path / "comparison.png").exists() and "optimizer=SGD" in result.stdout
    assert f"figure: {figure}" in result.stdout.replace("\n", "") and "replaced" not in result.stdout
    again = run_in_process("compare", str(runs["adamw"]), str(runs["sgd"]), "--out", "figures", cwd=tmp_path)
    assert again.returncode == 0 and (tmp_path / "figures" / "comparison.png").is_file()
    third = run_in_process("compare", str(runs["adamw"]), str(runs["sgd"]), "--out", "figures", cwd=tmp_path)
    assert "figures/comparison.png (replaced the earlier file)" in third.stdout.replace("\n", "")


def test_bad_input_of_the_analysis_commands_is_one_line(runs, in_tmp, capsys):
    no_report = in_tmp / "empty_run"
    no_report.mkdir()
    cases = [
        (["report", "nowhere"], "run directory 'nowhere' does not exist"),
        (["report", str(no_report)], "has no report.json"),
        (["compare", str(runs["adamw"]), str(runs["other_seeds"])], "runs differ in their init seeds"),
        (["compare", str(runs["adamw"])], "compare needs at least two run directories"),
        (["report"], "run_dir"),
    ]
    for args, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        assert_bad_input(exit_info.value.code, capsys.readouterr().err, message, in_tmp)
    shutil.rmtree(no_report)


def test_compare_refuses_runs_of_other_shapes(runs, in_tmp, capsys):
    other = in_tmp / "other_shape"
    shutil.copytree(runs["adamw"], other)
    report = json.loads((other / "report.json").read_text())
    report["n_features"] = 6
    (other / "report.json").write_text(json.dumps(report))
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", str(runs["adamw"]), str(other)])
    assert_bad_input(exit_info.value.code, capsys.readouterr().err, "runs differ in n_features", in_tmp)
    assert yaml.safe_load((other / "config.yaml").read_text())["data"]["n_features"] == 5


def test_fit_ends_with_the_run_directory_the_page_and_coloured_curves_in_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = run_command("fit", "--config", "hexagon_patch.yaml", "--trainer.max_steps=20", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    run = Path("runs/hexagon_patch/version_0")
    out = result.stdout.replace("\n", "")
    assert f"report page: {run / 'report' / 'index.html'}" in out and f"run directory: {run}" in out
    events = EventAccumulator(str(tmp_path / run))
    events.Reload()
    # one coloured per-feature figure per member of each triple, beside the polygons
    assert {f"curves/instance_{i:03d}" for i in range(9)} <= set(events.Tags()["images"])
