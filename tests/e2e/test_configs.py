"""The bundled experiment configs: present, resolving to the seeds' settings, optimizers by flag, bad input.

Every bundled config also runs 20 steps in ``tests/cli/test_cli.py::test_every_bundled_config_runs_a_few_steps``.
"""

from __future__ import annotations

import re

import pytest
import torch

from lit_superposition.cli import build_cli, bundled_configs
from tests.conftest import assert_bad_input, run_in_process

EXPERIMENTS = [
    "correlated.yaml",
    "anticorrelated.yaml",
    "correlated_3x2.yaml",
    "nonuniform_sparsity.yaml",
    "single_feature_density.yaml",
    "feature_geometry.yaml",
    "hexagon_scan.yaml",
    "seven_features.yaml",
]


def _build(name: str, *args: str):
    return build_cli(["--config", name, *args], run=False)


def test_every_bundled_config_has_a_header_naming_its_source_and_what_it_shows():
    bundled = bundled_configs()
    assert set(EXPERIMENTS) <= set(bundled)
    for name, path in bundled.items():
        header = path.read_text().split("\ntrainer:")[0]
        lines = header.splitlines()
        assert lines and all(line.startswith("#") for line in lines), name
        assert re.search(r"seed \d{3}|Anthropic 2022|ARENA", header), f"{name}: the header names no source"
        assert re.search(r"[Ss]how|[Mm]easured", header), f"{name}: the header does not say what the run shows"


def test_set_configs_resolve_to_their_sets(in_tmp):
    for name, key, sets, n_features in [
        ("correlated", "correlated_sets", [[0, 1], [2, 3]], 4),
        ("anticorrelated", "anticorrelated_sets", [[0, 1], [2, 3]], 4),
        ("correlated_3x2", "correlated_sets", [[0, 1], [2, 3], [4, 5]], 6),
    ]:
        cli = _build(name)
        data = cli.datamodule
        assert getattr(data.feature_sets, key) == sets and data.n_features == n_features
        assert cli.model.model.d_hidden == 2
        active = data.make_batch(0) > 0  # (n_instances, batch, n_features)
        for a, b in sets:
            if key == "correlated_sets":
                assert torch.equal(active[..., a], active[..., b])
            else:
                assert not (active[..., a] & active[..., b]).any()


def test_feature_geometry_is_the_arena_experiment(in_tmp):
    cli = _build("feature_geometry")
    model, data = cli.model.model, cli.datamodule
    assert (model.n_instances, model.n_features, model.d_hidden) == (20, 200, 20)
    torch.testing.assert_close(data.feature_probability[:, 0], 20 ** -torch.linspace(0, 1, 20))
    assert cli.trainer.max_steps == 10_000 and data.instance_data == "independent"
    assert torch.equal(cli.model.importance, torch.ones(20, 200))


def test_hexagon_scan_and_seven_features(in_tmp):
    hexagon = _build("hexagon_scan")
    assert hexagon.model.model.n_instances >= 32 and hexagon.datamodule.n_features == 6
    assert torch.allclose(hexagon.datamodule.feature_probability, torch.tensor(0.057))
    assert len(set(hexagon.model.model.init_seeds)) == hexagon.model.model.n_instances
    seven = _build("seven_features")
    assert (seven.datamodule.n_features, seven.model.model.d_hidden) == (7, 2)


def test_nonuniform_sparsity_runs_its_four_cases_side_by_side(in_tmp):
    cli = _build("nonuniform_sparsity")
    p, importance = cli.datamodule.feature_probability, cli.model.importance  # (32, 5)
    repeats = cli.model.repeats
    assert repeats == cli.datamodule.repeats == 8 and p.shape == (32, 5)
    case = [p[k * repeats] for k in range(4)]
    weight = [importance[k * repeats] for k in range(4)]
    assert (case[0].diff() < 0).all() and (weight[0].diff() < 0).all()  # 1: important = dense
    assert (case[1].diff() > 0).all() and (weight[1].diff() < 0).all()  # 2: important = sparse
    assert not (case[2].diff() < 0).all() and not (case[2].diff() > 0).all()  # 3: random
    assert (case[3].diff() < 0).all() and torch.equal(weight[3], torch.ones(5))  # 4: constant importance
    for k in range(4):  # every repeat of a case has the same setting
        assert torch.equal(p[k * repeats : (k + 1) * repeats], case[k].expand(repeats, 5))


def test_single_feature_density_sweeps_feature_0_with_repeats(in_tmp):
    cli = _build("single_feature_density")
    p, repeats = cli.datamodule.feature_probability, cli.model.repeats
    assert repeats > 1 and cli.model.model.n_instances % repeats == 0
    settings = p[::repeats]  # (n_settings, 5)
    assert torch.allclose(settings[:, 1:], torch.tensor(0.05))
    assert settings[:, 0].max() > 0.05 and settings[:, 0].min() < 0.05 / 2.5  # crosses the ~2.5x transition
    assert len(set(cli.model.model.init_seeds)) == cli.model.model.n_instances  # repeats differ by init


def test_repeats_from_the_command_line_link_to_the_model(in_tmp):
    cli = _build("tms_intro", "--data.n_instances=6", "--data.repeats=3")
    assert cli.model.repeats == cli.datamodule.repeats == 3
    p = cli.datamodule.feature_probability[:, 0]
    torch.testing.assert_close(p, torch.tensor([1.0, 1.0, 1.0, 0.05, 0.05, 0.05]))


@pytest.mark.parametrize("optimizer", ["SGD", "RMSprop", "Adam", "AdamW"])
def test_optimizer_study_selects_each_optimizer_from_the_command_line(in_tmp, optimizer):
    cli = build_cli([
        "fit", "--config", "hexagon_scan.yaml", "--model.optimizer", optimizer, "--model.optimizer.lr=0.001",
        "--trainer.max_steps=3", "--trainer.enable_progress_bar=false",
    ])
    assert type(cli.trainer.optimizers[0]).__name__ == optimizer and cli.trainer.global_step == 3


BAD_INPUTS = [
    (["--data.correlated_sets=[[0, 1], [1, 2]]"], "feature 1 is in two sets"),
    (["--data.anticorrelated_sets=[[3, 7]]"], "feature index 7 out of range: features are 0..5"),
    (["--data.feature_probability=0.4", "--data.anticorrelated_sets=[[0, 1, 2]]"], "Σp = 1.2 > 1"),
    (
        ["--data.feature_probability=[0.1, 0.2, 0.1, 0.1, 0.1, 0.1]", "--data.correlated_sets=[[0, 1]]"],
        "correlated_sets [0, 1] needs equal feature_probability within the set",
    ),
    (["--data.repeats=5"], "n_instances (64) must be a multiple of repeats (5)"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUTS)
def test_bad_sets_and_repeats_exit_2_with_one_line(tmp_path, args, message):
    result = run_in_process("fit", "--config", "hexagon_scan.yaml", *args, cwd=tmp_path)
    assert_bad_input(result.returncode, result.stderr, message, tmp_path)
