"""What the command shows: the commands in --help (without importing Lightning), tables that are never
cut, and an experiment's own callbacks kept when a config adds one of the user's."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from rich.console import Console
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lit_superposition.analysis.geometry import polygon_name
from lit_superposition.callbacks import GeometryReport
from lit_superposition.cli import build_cli, quiet_lightning
from lit_superposition.cli.main import COMMANDS
from lit_superposition.models import ReLUOutputModel
from tests.conftest import REPO, cli_env, run_command, run_in_process

LIGHT = """
import json, sys
from tests.conftest import run_in_process
results = [run_in_process(*args, cwd=sys.argv[1]) for args in (["--help"], ["report", "nowhere"])]
heavy = sorted(name for name in ("pytorch_lightning", "lightning_fabric", "torch", "matplotlib") if name in sys.modules)
print(json.dumps({"results": [[r.returncode, r.stdout, r.stderr] for r in results], "heavy": heavy}))
"""


def test_help_lists_every_command_and_neither_it_nor_a_bad_report_imports_lightning(tmp_path):
    result = subprocess.run([sys.executable, "-c", LIGHT, str(tmp_path)], cwd=REPO, env=cli_env(), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    answer = json.loads(result.stdout.splitlines()[-1])
    (help_code, help_text, _), (report_code, _, report_error) = answer["results"]
    assert help_code == 0 and report_code == 2
    assert report_error.strip() == "lit-superposition: error: report: run directory 'nowhere' does not exist"
    assert answer["heavy"] == []  # not torch either: both answer in a fraction of a second
    installed = run_command("--help", cwd=tmp_path)  # the console script says the same
    for text in (help_text, installed.stdout):
        listed = [line.split()[0] for line in text.split("commands:")[1].split("\n\n")[0].strip().splitlines()]
        assert listed == list(COMMANDS), text


@pytest.fixture(scope="module")
def patched(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """hexagon_patch.yaml with a second config that adds a callback under trainer.callbacks, as a user
    would: its run directory and what it printed (to a StringIO: not a terminal)."""
    folder = tmp_path_factory.mktemp("patched")
    (folder / "with_my_callback.yaml").write_text(
        "trainer:\n  callbacks:\n    - class_path: pytorch_lightning.callbacks.LearningRateMonitor\n"
        "      init_args: {logging_interval: step}\n"
    )
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.delenv("COLUMNS", raising=False)  # the width rich would take from the environment
        result = run_in_process("fit", "--config", "hexagon_patch.yaml", "--config", "with_my_callback.yaml",
                                "--trainer.max_steps=30", "--trainer.log_every_n_steps=10", "--trainer.enable_progress_bar=false",
                                "--instruments.geometry_snapshots.n_snapshots=3", "--report_page=false", cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    return folder / "runs" / "hexagon_patch" / "version_0", result.stdout


def test_a_config_adding_a_callback_keeps_the_patch_experiment(patched):
    run, _ = patched
    report = json.loads((run / "report.json").read_text())
    assert [t["base_seed"] for t in report["triples"]] == [12, 19, 59] and "flip_rate" in report
    assert [row["init_seed"] for row in report["instances"]] == [12, 12, 37, 19, 19, 30, 59, 59, 30]
    # The patched base started from the base seed's initial W with the donor's columns at the patched features.
    first = torch.load(run / "snapshots.pt", weights_only=True)["W"][0]  # (n_instances, 2, n_features), step 0
    for triple in report["triples"]:
        base, patched_base, donor = triple["instances"]
        expected = ReLUOutputModel.instance_initial_state(triple["base_seed"], 2, 6)["W"].clone()
        columns = triple["features"]
        expected[:, columns] = ReLUOutputModel.instance_initial_state(triple["donor_seed"], 2, 6)["W"][:, columns]
        assert torch.equal(first[patched_base], expected)
        assert not torch.equal(first[base], expected)
    # and the user's callback ran too
    events = EventAccumulator(str(run))
    events.Reload()
    assert any(tag.startswith("lr-AdamW") for tag in events.Tags()["scalars"])


def test_callbacks_added_on_the_command_line_keep_the_experiment_too(in_tmp):
    cli = build_cli(["fit", "--config", "hexagon_patch.yaml", "--trainer.callbacks+=LearningRateMonitor"], run=False)
    names = [type(c).__name__ for c in cli.trainer.callbacks]
    assert names.count("WeightPatching") == 1 and names.count("LearningRateMonitor") == 1


def _geometry_cells(printed: str) -> list[str]:
    """The geometry column of the first table in ``printed``, one cell per row (a wrapped cell's lines joined)."""
    lines = printed.splitlines()
    header = next(line for line in lines if "┃" in line and "geometry" in line)
    column = [cell.strip() for cell in header.split("┃")].index("geometry")
    body = lines[lines.index(header) + 2:]
    cells: list[list[str]] = []
    for line in body[: next(k for k, line in enumerate(body) if line.startswith("└"))]:
        text, first = line.split("│")[column].strip(), line.split("│")[1].strip()
        if first:
            cells.append([text])
        elif text:
            cells[-1].append(text)
    return [" ".join(cell) for cell in cells]


def _whole(cell: str) -> bool:
    name = cell.removeprefix("regular ")
    return name in {polygon_name(k) for k in range(13)} | {"orthogonal pair", "two directions"}


def test_the_redirected_table_keeps_every_geometry_name_whole(patched):
    run, printed = patched
    report = json.loads((run / "report.json").read_text())
    cells = _geometry_cells(printed)
    assert [cell.removeprefix("regular ") for cell in cells] == [row["geometry"] for row in report["instances"]]
    assert all(map(_whole, cells)) and "…" not in printed
    caption = printed[printed.index("└"):printed.index("Weight patching")]
    assert "best k (6)" in " ".join(caption.split())  # the footnote ends whole
    assert "Weight patching: flip rate" in printed


@pytest.mark.parametrize("width", [60, 80])
def test_a_narrow_terminal_gets_fewer_columns_never_cut_names(patched, width):
    run, _ = patched
    report = json.loads((run / "report.json").read_text())
    out = io.StringIO()
    GeometryReport().print_tables(report, console=Console(file=out, width=width))
    printed = out.getvalue()
    assert max(map(len, printed.splitlines())) <= width
    assert all(map(_whole, _geometry_cells(printed))), printed
    left_out = " ".join(printed.split()).split("left out for the console's width: ")[1].split(" (all in report.json)")[0]
    assert "‖W_f‖" in left_out.split(", ")


EXAMPLE = """
import pytorch_lightning as pl
from lit_superposition.callbacks import GeometryReport
from lit_superposition.cli import quiet_lightning
from lit_superposition.data import SparseFeatureDataModule
from lit_superposition.module import LitToyModel

with quiet_lightning():
    trainer = pl.Trainer(max_steps=20, default_root_dir="out", callbacks=[GeometryReport()], enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(LitToyModel(n_instances=2, n_features=5), SparseFeatureDataModule(n_instances=2, n_features=5))
"""


def test_a_plain_trainer_under_quiet_lightning_prints_only_the_report(tmp_path):
    env = {key: value for key, value in cli_env().items() if key != "PYTHONWARNINGS"}  # as a user's script runs
    result = subprocess.run([sys.executable, "-c", EXAMPLE], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr == "", result.stderr  # no device lines, adverts, or Lightning's warnings
    lines = result.stdout.strip().splitlines()
    assert "geometry at step 20" in lines[0] and lines[1].startswith("┏"), result.stdout  # the table, nothing before it


def test_quiet_lightning_is_scoped():
    import logging

    before = list(warnings.filters)
    rank_zero = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    with quiet_lightning():
        with quiet_lightning():
            pass
        assert rank_zero.filters and warnings.filters != before  # an inner block's end leaves the outer one's in place
    assert warnings.filters == before and not rank_zero.filters
