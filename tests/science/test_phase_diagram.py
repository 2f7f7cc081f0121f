"""The 2x1 phase diagram end to end (phase_diagram_2x1.yaml at a shortened schedule), and the linear control.

A real ``lit-superposition fit`` subprocess on a 3 x 3 corner grid of the bundled config's axes
(importance 0.1, 1, 10 by p 1, 0.1, 0.01): the phases are asserted on the learned weights (the best
of the config's repeats per point), theory's phases beside them, the phase map in the events file.
"""

from __future__ import annotations

import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import assert_bad_input, run_command, run_in_process


def _fit(tmp_path, config, repeats, steps, importance_points=3):
    result = run_command(
        "fit", "--config", config, f"--data.grid.importance.points={importance_points}", "--data.grid.probability.points=3",
        f"--data.n_instances={3 * importance_points * repeats}", f"--data.repeats={repeats}", f"--trainer.max_steps={steps}",
        "--trainer.enable_progress_bar=false", "--report_page=false", cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = next((tmp_path / "runs").glob("*/version_0"))
    return run, json.loads((run / "report.json").read_text())


@pytest.fixture(scope="module")
def relu_run(tmp_path_factory):
    return _fit(tmp_path_factory.mktemp("phase_2x1"), "phase_diagram_2x1.yaml", 4, 3000)


@pytest.mark.slow
def test_the_corners_of_the_2x1_diagram_on_the_learned_weights(relu_run):
    _, report = relu_run
    grid = report["grid"]
    assert grid["importance"]["values"] == pytest.approx([0.1, 1.0, 10.0])
    assert grid["probability"]["values"] == pytest.approx([1.0, 0.1, 0.01])
    rows = report["instances"]
    densest_least_important, densest_most_important, sparsest_equal = grid["best_instance"][0][0], grid["best_instance"][2][0], grid["best_instance"][1][2]
    # Asserted on the learned weights of the chosen repeats, not on the grid summary alone.
    W = lambda i: rows[i]["feature_norms"]  # noqa: E731
    assert W(densest_least_important)[1] < 0.5 and rows[densest_least_important]["phase"] == "not_represented"
    assert W(densest_most_important)[1] > 0.5 and W(densest_most_important)[0] < 0.5
    assert rows[densest_most_important]["phase"] == "dedicated"
    assert min(W(sparsest_equal)) > 0.5 and rows[sparsest_equal]["phase"] == "superposition"
    assert rows[sparsest_equal]["importance"] == pytest.approx([1.0, 1.0])
    assert grid["phase"][0][0] == "not_represented" and grid["phase"][2][0] == "dedicated" and grid["phase"][1][2] == "superposition"


@pytest.mark.slow
def test_theory_agrees_at_the_three_points(relu_run):
    _, report = relu_run
    theory, learned = report["grid"]["theory_phase"], report["grid"]["phase"]
    for r, c in ((0, 0), (2, 0), (1, 2)):
        assert theory[r][c] == learned[r][c]


@pytest.mark.slow
def test_every_instance_has_a_phase_and_the_map_is_logged(relu_run):
    run, report = relu_run
    assert {row["phase"] for row in report["instances"]} <= {"not_represented", "dedicated", "superposition"}
    assert len(report["instances"]) == 36 and all("expected_loss" in row for row in report["instances"])
    assert (run / "phase_map.png").stat().st_size > 10_000
    events = EventAccumulator(str(run), size_guidance={"images": 0})
    events.Reload()
    assert "phases/phase_map" in events.Tags()["images"]


@pytest.mark.slow
def test_the_linear_model_has_no_superposition_region(tmp_path):
    # The config's importance axis steps over 1 (equal importance: a continuum of tied optima).
    _, report = _fit(tmp_path, "phase_diagram_linear.yaml", 2, 1500, importance_points=4)
    phases = [phase for line in report["grid"]["phase"] for phase in line]
    assert "superposition" not in phases and {"not_represented", "dedicated"} <= set(phases)
    assert "superposition" not in {phase for line in report["grid"]["theory_phase"] for phase in line}


def test_a_grid_that_does_not_fit_the_instances_is_one_line(tmp_path):
    result = run_in_process("fit", "--config", "phase_diagram_2x1.yaml", "--data.n_instances=12", cwd=tmp_path)
    assert_bad_input(result.returncode, result.stderr, "so n_instances must be points x repeats", tmp_path)


@pytest.mark.slow
def test_the_report_page_draws_the_phase_map(relu_run):
    run, _ = relu_run
    result = run_command("report", str(run), cwd=run)
    assert result.returncode == 0, result.stderr[-2000:]
    page = (run / "report" / "index.html").read_text()
    assert "phase_map.png" in page and "Phase diagram" in page
    assert (run / "report" / "phase_map.png").stat().st_size > 10_000
