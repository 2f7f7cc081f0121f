"""The report page of a short real patch run: summary, every figure, and the figures it promises."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lit_superposition.analysis.comparison import compare_runs
from lit_superposition.analysis.report_page import MAX_BEST_ROWS, chosen_instances, summary, write_report
from lit_superposition.analysis.run_files import Run, load_run
from lit_superposition.cli import build_cli
from lit_superposition.errors import ConfigError

QUIET = ["--trainer.enable_progress_bar=false", "--instruments.feature_grad_norms.every_n_steps=10",
         "--instruments.feature_losses.every_n_steps=10", "--instruments.feature_geometry.every_n_steps=10"]


@pytest.fixture(scope="module")
def patch_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("patch")
    import os

    cwd = os.getcwd()
    os.chdir(folder)
    try:
        build_cli(["fit", "--config", "hexagon_patch.yaml", "--trainer.max_steps=40", *QUIET])
    finally:
        os.chdir(cwd)
    return folder / "runs" / "hexagon_patch" / "version_0"


def test_the_page_has_the_summary_and_every_figure_it_links(patch_run, tmp_path):
    index = write_report(load_run(patch_run), tmp_path / "report")
    page = index.read_text()
    assert "hexagon_patch" in page and "<b>steps</b> 40" in page
    assert re.search(r"flip rate <b>\d\.\d\d</b> over 3 triples", page)
    assert "<h3>Geometries</h3>" in page
    images = re.findall(r"<img src='([^']+)'", page)
    assert images and all((tmp_path / "report" / name).is_file() for name in images)
    # every member of each triple gets its coloured curves (the instruments chose them by default)
    assert {f"curves_{i:03d}.png" for i in range(9)} <= set(images)
    assert {"polygons.png", "feature_bars.png"} <= set(images)
    # how each triple's geometry formed: one figure a triple, its three members a row each
    assert [name for name in images if name.startswith("formation_")] == [f"formation_triple_{k}.png" for k in range(3)]
    assert "<td>3</td>" in page and "[3]" not in page  # the patched features as text, not a Python list
    from PIL import Image

    assert Image.open(tmp_path / "report" / "polygons.png").width >= 800  # two triples a row: the page's width
    assert "http" not in page.replace("http-equiv", "")  # nothing to fetch: readable offline


def test_chosen_instances_are_the_triples_or_the_extremes():
    triples = {"instances": [{"index": i, "loss": 0.0} for i in range(6)],
               "triples": [{"instances": [0, 1, 2]}, {"instances": [3, 4, 5]}]}
    assert [why for _, why in chosen_instances(triples)][:3] == ["triple 0 base", "triple 0 patched", "triple 0 donor"]
    plain = {"instances": [{"index": i, "loss": loss} for i, loss in enumerate([0.3, 0.1, 0.5])]}
    assert chosen_instances(plain) == [(1, "lowest loss"), (2, "highest loss")]


def test_missing_run_files_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_run(tmp_path / "nope")
    with pytest.raises(ConfigError, match="has no report.json"):
        load_run(tmp_path)


def test_compare_needs_the_same_seeds(patch_run):
    run = load_run(patch_run)
    comparison = compare_runs([run, run])
    assert comparison["counts"][comparison["labels"][0]] == comparison["counts"][comparison["labels"][1]]
    other = load_run(patch_run)
    other.report = {**other.report, "instances": [{**row, "init_seed": row["init_seed"] + 1} for row in other.report["instances"]]}
    with pytest.raises(ConfigError, match="runs differ in their init seeds"):
        compare_runs([run, other])


def test_the_best_repeat_table_follows_the_phase_diagram_and_stays_short(tmp_path):
    repeats, n_settings = 2, 20
    rows = [{"index": i, "setting": i // repeats, "init_seed": i, "loss": 0.1, "geometry": "digon",
             "best_repeat": i % repeats == 0} for i in range(repeats * n_settings)]
    report = {"step": 10, "n_instances": len(rows), "n_features": 2, "d_hidden": 1, "repeats": repeats, "instances": rows}
    plain = summary(Run(tmp_path, report))
    # Cells: setting, instance, init seed. Without a grid, the rows flagged best_repeat (repeat 0).
    assert "<td>1</td><td>2</td><td>2</td>" in plain and "<td>1</td><td>3</td><td>3</td>" not in plain
    # The grid ranks repeats by the exact loss: its choice (the second repeat everywhere) is the table's.
    grid = {"feature": 0, "best_instance": [[s * repeats + 1 for s in range(n_settings)]]}
    page = summary(Run(tmp_path, {**report, "grid": grid}))
    assert "<td>1</td><td>3</td><td>3</td>" in page and "<td>1</td><td>2</td><td>2</td>" not in page
    assert f"the first {MAX_BEST_ROWS} of {n_settings}" in page
    best_table = page[page.index("<h3>Best repeat"):]
    assert best_table.count("<td>digon</td>") == MAX_BEST_ROWS


def test_the_best_and_worst_are_chosen_among_the_instances_with_curves():
    report = {"instances": [{"index": i, "loss": loss} for i, loss in enumerate([0.3, 0.1, 0.5, 0.05, 0.9])]}
    assert chosen_instances(report) == [(3, "lowest loss"), (4, "highest loss")]
    assert chosen_instances(report, recorded={0, 1, 2}) == [
        (1, "lowest loss of the 3 instances with curves"), (2, "highest loss of the 3 instances with curves")]
    assert chosen_instances(report, recorded=set()) == []


def test_a_sweep_page_names_each_instances_p_and_a_phase_diagram_has_no_dimensions_per_feature_line(tmp_path):
    import torch

    n = 6
    p = [0.5 ** k for k in range(n)]
    rows = [{"index": i, "init_seed": i, "loss": 0.01, "geometry": ["1", "1/2"], "represented": [0, 1], "n_directions": 2,
             "feature_probability": [p[i]] * 2, "importance": [1.0, 1.0 + (i % 2)]} for i in range(n)]
    report = {"step": 10, "n_instances": n, "n_features": 2, "d_hidden": 1, "repeats": 2, "threshold": 0.5,
              "instances": [{**row, "setting": i // 2, "best_repeat": i % 2 == 0} for i, row in enumerate(rows)]}
    W = torch.ones(1, n, 1, 2)  # (n_snapshots, n_instances, d_hidden, n_features)
    run = Run(tmp_path, report, snapshots={"step": torch.tensor([10]), "W": W, "b": torch.zeros(1, n, 2)})
    page = write_report(run, tmp_path / "report").read_text()
    assert "loss_by_swept.png" in page and "dimensionality_sweep.png" not in page  # importance varies with p: no 1/p line
    assert "<td>1 1/2</td>" in page and "'1/2'" not in page  # the best-repeat table's geometry as text
    same_importance = Run(tmp_path, {**report, "instances": [{**row, "importance": [1.0, 1.0]} for row in report["instances"]]},
                          snapshots=run.snapshots)
    assert "dimensionality_sweep.png" in write_report(same_importance, tmp_path / "report").read_text()
    assert "p = 0.25, seed 2" in summary_labels(same_importance)


def summary_labels(run: Run) -> str:
    """The instance labels the page's figures carry."""
    from lit_superposition.analysis.report_page import _label

    return " ".join(_label(row, swept=True) for row in run.report["instances"])
