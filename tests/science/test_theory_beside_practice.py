"""Theory beside practice, end to end: the theory command, report columns, templates and the crossover."""

from __future__ import annotations

import json

import pytest
import torch

from lit_superposition.analysis import theory
from lit_superposition.cli import build_cli, main
from tests.conftest import assert_bad_input, run_command

QUIET = ["--trainer.enable_progress_bar=false"]


def test_the_theory_command_prints_the_table_and_writes_json_that_matches_the_evaluator(tmp_path):
    result = run_command("theory", "--n_features", "6", "--feature_probability", "0.057", "--json", "kgons.json",
                         cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "hexagon" in result.stdout and "← best" in result.stdout
    content = json.loads((tmp_path / "kgons.json").read_text())
    assert [s["k"] for s in content["solutions"]] == [1, 2, 3, 4, 5, 6]
    assert content["best_k"] == min(content["solutions"], key=lambda s: s["loss"])["k"]
    for solution in content["solutions"]:
        W, b = theory.kgon_weights(solution["k"], 6, solution["norm"], solution["bias"], 0.057 / 2)
        exact = theory.expected_loss(W, b, 0.057).per_instance.item()
        assert exact == pytest.approx(solution["loss"], rel=1e-9)
    assert (tmp_path / "kgon_losses_n6_p0.057.png").stat().st_size > 10_000  # named by its setting


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--n_features", "6"], "feature_probability"),
        (["--n_features", "6", "--feature_probability", "1.5"], "feature_probability must be in (0, 1], got 1.5"),
        (["--n_features", "6", "--feature_probability", "0.05", "--d_hidden", "3"], "d_hidden must be 2, got 3"),
        (["--n_feature", "6", "--feature_probability", "0.05"], "n_feature"),
        (["--n_features", "6", "--feature_probability", "0.05", "--run", "nowhere"], "'nowhere' is not a run directory"),
    ],
)
def test_theory_bad_input_exits_2_with_one_line(in_tmp, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["theory", *args])
    assert_bad_input(exit_info.value.code, capsys.readouterr().err, message, in_tmp)


@pytest.mark.slow
def test_the_learned_pentagon_sits_at_theory_s_pentagon(in_tmp):
    # 5 features, 2 hidden, p = 0.05: theory's best k is 5, and training lands on it.
    solutions = theory.kgon_solutions(5, 0.05)
    best = theory.best_kgon(solutions)
    assert best.k == 5
    build_cli(["fit", "--config", "pentagon.yaml", *QUIET, "--trainer.max_steps=6000"])
    report = json.loads((in_tmp / "runs/pentagon/version_0/report.json").read_text())
    for entry in report["instances"]:
        assert entry["geometry"] == "pentagon" and entry["regular"]
        assert sum(entry["feature_norms"]) / 5 == pytest.approx(best.norm, rel=0.02)
        assert entry["expected_loss"] == pytest.approx(best.loss, rel=0.02)
        assert entry["best_k"] == 5 and entry["kgon_loss"] == pytest.approx(best.loss, rel=1e-6)


@pytest.mark.slow
def test_a_regular_pentagon_template_stays_a_pentagon(in_tmp):
    build_cli(["fit", "--config", "pentagon.yaml", *QUIET, "--trainer.max_steps=1500",
               "--trainer.callbacks+=lit_superposition.callbacks.TemplateStart",
               "--trainer.callbacks.templates=[{k: 5, instances: [0, 1, 2, 3], jitter: 0.05}]"])
    run = in_tmp / "runs/pentagon/version_0"
    report = json.loads((run / "report.json").read_text())
    snapshots = torch.load(run / "snapshots.pt", weights_only=True)
    solution = theory.optimize_template(5, [0.05] * 5)
    for entry in report["instances"][:4]:
        assert entry["start"] == "pentagon template"
        assert entry["geometry"] == "pentagon" and entry["regular"]
        start = snapshots["W"][0, entry["index"]]  # (2, n_features): the template, jittered
        assert start.norm(dim=0).mean().item() == pytest.approx(solution.norm, abs=0.1)
    assert all(entry["start"] == "xavier" for entry in report["instances"][4:])


def test_the_crossover_config_runs_and_reports(in_tmp):
    build_cli(["fit", "--config", "pentagon_digon_crossover.yaml", *QUIET, "--trainer.max_steps=60"])
    run = in_tmp / "runs/pentagon_digon_crossover/version_0"
    report = json.loads((run / "report.json").read_text())
    crossover = report["crossover"]
    assert set(crossover["families"]) == {"pentagon", "two digons"}
    assert len(crossover["relative_density"]) == 12 and crossover["relative_density"] == sorted(crossover["relative_density"])
    for key in ("crossover_density", "theory_crossover_density", "xavier_switch_density", "xavier_best"):
        assert key in crossover
    assert crossover["theory_crossover_density"] == pytest.approx(0.33, abs=0.03)
    assert (run / "crossover.png").stat().st_size > 10_000
    starts = [entry["start"] for entry in report["instances"][:4]]
    assert starts == ["pentagon template", "two digons template", "xavier", "xavier"]
