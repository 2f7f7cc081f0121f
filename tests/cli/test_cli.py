"""The installed ``lit-superposition`` command, run as a real subprocess, and the CLI in-process."""

from __future__ import annotations

import pytest
import torch
import yaml

from lit_superposition.cli import build_cli, bundled_configs, resolve_config_path
from lit_superposition.errors import ConfigError
from tests.conftest import assert_bad_input, run_command, run_in_process, write_scan_report


def test_fit_from_outside_the_repository_writes_a_run_directory(tmp_path):
    result = run_command("fit", "--config", "pentagon.yaml", "--trainer.max_steps=50", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    run = tmp_path / "runs" / "pentagon" / "version_0"
    assert list(run.glob("events.out.tfevents.*"))
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["trainer"]["max_steps"] == 50
    assert config["data"]["n_features"] == 5 and "n_features" not in config["model"]  # linked, written once
    assert (run / "checkpoints" / "last.ckpt").is_file()


def test_help_lists_the_bundled_configs(tmp_path):
    result = run_command("--help", cwd=tmp_path)
    assert result.returncode == 0
    for name in ("pentagon.yaml", "tms_intro.yaml", "hexagon_patch.yaml"):
        assert name in result.stdout


BAD_INPUTS = [
    (["--data.feature_probability=1.5"], "feature_probability must be in (0, 1], got 1.5"),
    (["--model.importance=-1"], "importance must be finite and >= 0, got -1"),
    (["--data.feature_probability=[0.1, 0.2]"], "expected one per feature (n_features=5)"),
    (["--config", "no_such_experiment.yaml"], "config 'no_such_experiment.yaml' not found"),
    (["--data.no_such_key=3"], "no_such_key"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUTS)
def test_bad_input_exits_2_with_one_line(tmp_path, args, message):
    result = run_in_process("fit", "--config", "pentagon.yaml", *args, cwd=tmp_path)
    assert_bad_input(result.returncode, result.stderr, message, tmp_path)


def test_print_config_shows_the_resolved_config(tmp_path):
    result = run_command("fit", "--config", "tms_intro", "--print_config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert config["data"]["n_instances"] == 10
    assert config["model"]["importance"]["class_path"].endswith("GeometricDecay")


def test_sizes_are_written_once_and_linked_to_the_model(in_tmp):
    cli = build_cli(["--config", "tms_intro", "--data.n_instances=3"], run=False)
    assert cli.model.model.n_instances == cli.datamodule.n_instances == 3
    assert cli.model.importance.shape == (3, 5)


def test_config_names_resolve_as_path_then_bundled(tmp_path):
    local = tmp_path / "pentagon.yaml"
    local.write_text("data: {n_instances: 2, n_features: 5}\n")
    assert resolve_config_path(str(local)) == local
    assert resolve_config_path("pentagon") == bundled_configs()["pentagon.yaml"]
    with pytest.raises(ConfigError, match="not found"):
        resolve_config_path("missing.yaml")


@pytest.mark.parametrize("name", sorted(bundled_configs()))
def test_every_bundled_config_runs_a_few_steps(in_tmp, name):
    if name == "hexagon_patch_auto.yaml":  # pairs from a scan's report: give it a small one
        write_scan_report(in_tmp / "runs" / "hexagon_scan" / "version_0" / "report.json", n_pentagons=8)
    extra = []
    if name.startswith("phase_diagram"):  # a 2 x 2 corner of the grid: theory's phases for 4 points, not 81
        extra = ["--data.grid.importance.points=2", "--data.grid.probability.points=2", "--data.n_instances=16"]
    if name == "double_descent.yaml":  # its warmup is longer than 20 steps; 40 features instead of 1000
        extra = ["--model.lr_scheduler.init_args.warmup_steps=5", "--data.n_features=40", "--data.feature_probability=0.1"]
    if name.startswith("sae_"):  # the source run the config trains first: 20 steps too
        extra = ["--source.args+=--trainer.max_steps=20"]
    cli = build_cli(["fit", "--config", name, "--trainer.max_steps=20", "--trainer.log_every_n_steps=5", *extra])
    assert cli.trainer.global_step == 20
    assert (in_tmp / "runs" / name.removesuffix(".yaml") / "version_0" / "config.yaml").is_file()


@pytest.mark.parametrize(
    ("optimizer", "decay"), [("SGD", "constant"), ("RMSprop", "linear"), ("Adam", "cosine"), ("AdamW", "linear")]
)
def test_optimizers_and_schedules_from_the_command_line(in_tmp, optimizer, decay):
    cli = build_cli([
        "fit", "--config", "pentagon.yaml", "--trainer.max_steps=12", "--trainer.enable_progress_bar=false",
        "--model.optimizer", optimizer, "--model.optimizer.lr=0.01",
        "--model.lr_scheduler", "WarmupDecay", f"--model.lr_scheduler.decay={decay}", "--model.lr_scheduler.warmup_steps=4",
    ])
    optim = cli.trainer.optimizers[0]
    assert type(optim).__name__ == optimizer
    schedule = cli.trainer.lr_scheduler_configs[0]
    assert schedule.interval == "step" and schedule.scheduler.total_steps == 12
    expected = {"constant": 1.0, "linear": 0.0, "cosine": 0.0}[decay]
    assert optim.param_groups[0]["lr"] == pytest.approx(0.01 * expected, abs=1e-9)


def test_default_optimizer_is_adamw_at_1e_3(in_tmp):
    cli = build_cli(["fit", "--config", "pentagon.yaml", "--trainer.max_steps=2"])
    optim = cli.trainer.optimizers[0]
    assert isinstance(optim, torch.optim.AdamW) and optim.param_groups[0]["lr"] == 1e-3
