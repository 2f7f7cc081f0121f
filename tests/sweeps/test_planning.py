"""Sweep planning without any run: axes, override files, packing, identities, resume decisions, headlines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from lit_superposition.analysis.sweep_report import headline
from lit_superposition.data import SparseFeatureDataModule
from lit_superposition.errors import ConfigError
from lit_superposition.module import LitToyModel
from lit_superposition.sweeps import packing
from lit_superposition.sweeps.plan import identity, make_plan, resolved_config
from lit_superposition.sweeps.state import next_action
from lit_superposition.sweeps.sweep_file import load_sweep_file, nest

TINY = ["--trainer.max_steps=30", "--data.n_instances=2", "--data.batch_size=64"]


def write_sweep(folder: Path, text: str, name: str = "sweep.yaml") -> str:
    path = folder / name
    path.write_text(text)
    return str(path)


def test_grid_zip_and_random_axes_combine_as_a_product_in_file_order(tmp_path):
    sweep = load_sweep_file(write_sweep(tmp_path, """
base: pentagon.yaml
grid:
  model.optimizer: [SGD, Adam]
zip:
  data.feature_probability: [0.05, 0.1, 0.2]
  model.init_seeds: [0, 10, 20]
random:
  n: 2
  seed: 3
  axes:
    model.optimizer.init_args.lr: {log_uniform: [1.0e-4, 1.0e-2]}
    model.d_hidden: {int: [2, 3]}
"""))
    points = list(sweep.points())
    assert len(points) == 2 * 3 * 2
    assert [p["model.optimizer"] for p in points[:6]] == ["SGD"] * 6  # the first axis varies slowest
    assert [(p["data.feature_probability"], p["model.init_seeds"]) for p in points[:6:2]] == [(0.05, 0), (0.1, 10), (0.2, 20)]
    draws = [(p["model.optimizer.init_args.lr"], p["model.d_hidden"]) for p in points[:2]]
    assert all(1e-4 <= lr <= 1e-2 and d in (2, 3) for lr, d in draws)
    assert draws[0] != draws[1]
    again = load_sweep_file(write_sweep(tmp_path, Path(sweep.path).read_text(), "again.yaml"))
    assert [p["model.optimizer.init_args.lr"] for p in again.points()] == [p["model.optimizer.init_args.lr"] for p in points]  # seeded


@pytest.mark.parametrize("text, message", [
    ("base: pentagon.yaml\ngrid: {model.optimizer: []}\n", "axis 'model.optimizer' is empty"),
    ("base: pentagon.yaml\nzip: {model.optimizer: [SGD, Adam], model.optimizer.init_args.lr: [0.1]}\n", "zip axes must have equal lengths"),
    ("base: pentagon.yaml\ngrid: {model.optimizer: [SGD]}\nzip: {model.optimizer: [Adam]}\n", "'model.optimizer' is on two axes"),
    ("base: pentagon.yaml\ngrdi: {model.optimizer: [SGD]}\n", "unknown key 'grdi'"),
    ("grid: {model.optimizer: [SGD]}\n", "'base' must name a config"),
    ("base: no_such_config.yaml\n", "not found"),
    ("base: pentagon.yaml\nrandom: {n: 2, axes: {model.optimizer.init_args.lr: {normal: [0, 1]}}}\n", "needs one distribution"),
])
def test_bad_sweep_files_are_one_line_errors(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_sweep_file(write_sweep(tmp_path, text))


def test_dotted_keys_nest_and_a_class_given_by_name_takes_its_arguments():
    assert nest({"model.optimizer.init_args.lr": 0.1, "model.optimizer": "SGD", "data.n_features": 6}) == {
        "model": {"optimizer": {"class_path": "SGD", "init_args": {"lr": 0.1}}}, "data": {"n_features": 6}}
    spec = {"class_path": "lit_superposition.data.LogSweep", "init_args": {"start": 1.0, "end": 0.1}}
    assert nest({"data.feature_probability": spec, "data.feature_probability.init_args.end": 0.05}) == {
        "data": {"feature_probability": {"class_path": "lit_superposition.data.LogSweep", "init_args": {"start": 1.0, "end": 0.05}}}}


def _separate_and_packed(base: dict, axis: str, values: list) -> tuple[list[dict], dict]:
    """Resolved configs of each point's separate run, and of the packed run, through the fit command's own parser."""
    configs = []
    for value in values:
        config = json.loads(json.dumps(base))
        node = config
        *parents, last = axis.split(".")
        for part in parents:
            node = node[part]
        node[last] = value
        configs.append(config)
    overrides = packing.pack(configs, [f"{axis}={v}" for v in values])
    packed = json.loads(json.dumps(base))
    for key, value in overrides.items():
        section, name = key.split(".")
        packed[section][name] = value
    return configs, packed


def _data(config: dict) -> SparseFeatureDataModule:
    data = config["data"]
    return SparseFeatureDataModule(data["n_instances"], data["n_features"], data["feature_probability"], repeats=data["repeats"])


def _model(config: dict) -> LitToyModel:
    data, model = config["data"], config["model"]
    return LitToyModel(data["n_instances"], data["n_features"], 2, importance=model["importance"],
                       init_seeds=model["init_seeds"], repeats=data["repeats"])


@pytest.mark.parametrize("axis, values", [
    ("data.feature_probability", [0.05, 0.2, [0.1, 0.1, 0.2, 0.2, 0.3]]),
    ("model.init_seeds", [0, 100, [7, 8, 9, 10, 11, 12]]),
    ("model.importance", [1.0, {"class_path": "lit_superposition.data.GeometricDecay", "init_args": {"base": 0.9}}]),
])
def test_packed_instances_get_the_separate_runs_seeds_and_settings(axis, values):
    # A base with repeats and per-instance specs: each point's settings must stay its own, row by row.
    base = {"data": {"n_instances": 6, "n_features": 5, "repeats": 2,
                     "feature_probability": {"class_path": "lit_superposition.data.LogSweep", "init_args": {"start": 1.0, "end": 0.05}}},
            "model": {"importance": {"class_path": "lit_superposition.data.FeatureRamp", "init_args": {"start": 1.0, "end": 0.2}},
                      "init_seeds": 3}}
    separate, packed = _separate_and_packed(base, axis, values)
    packed["data"]["feature_probability"] = packing._spec(packed["data"]["feature_probability"])
    assert packed["data"]["n_instances"] == 6 * len(values)
    packed_data, packed_model = _data(packed), _model(packed)
    for k, config in enumerate(separate):
        config["data"]["feature_probability"] = packing._spec(config["data"]["feature_probability"])
        config["model"]["importance"] = packing._spec(config["model"]["importance"])
        rows = slice(6 * k, 6 * k + 6)
        assert torch.equal(packed_data.feature_probability[rows], _data(config).feature_probability)
        model = _model(config)
        assert torch.equal(packed_model.importance[rows], model.importance)
        assert torch.equal(packed_model.model.initial_W[rows], model.model.initial_W)  # the same init seeds


@pytest.mark.parametrize("mode", ["shared", "independent"])
def test_which_draws_a_packed_instance_sees(mode):
    # Shared data: one draw serves every instance, so each packed point sees its separate run's batches.
    # Independent data: instances draw in blocks of 64 from one generator, so only the first point's
    # instances (at their own positions) draw what their separate run draws.
    separate = [SparseFeatureDataModule(2, 5, p, instance_data=mode) for p in (0.05, 0.2)]
    packed = SparseFeatureDataModule(4, 5, [[0.05] * 5, [0.05] * 5, [0.2] * 5, [0.2] * 5], instance_data=mode)
    x = packed.make_batch(7)  # (4, batch, 5)
    assert torch.equal(x[0:2], separate[0].make_batch(7))
    assert torch.equal(x[2:4], separate[1].make_batch(7)) == (mode == "shared")


def test_points_of_other_shapes_are_not_packed():
    base = {"data": {"n_instances": 2, "n_features": 5, "repeats": 1, "feature_probability": 0.05},
            "model": {"importance": 1.0, "init_seeds": 0}}
    other = json.loads(json.dumps(base))
    other["data"]["n_features"] = 6
    with pytest.raises(ConfigError, match="differ in n_instances, n_features or repeats"):
        packing.pack([base, other], ["a", "b"])
    bad = json.loads(json.dumps(base))
    bad["model"]["init_seeds"] = [1, 2, 3]
    with pytest.raises(ConfigError, match="point b: init_seeds has 3 seeds"):
        packing.pack([base, bad], ["a", "b"])


def test_the_plan_packs_per_instance_axes_and_separates_the_rest(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sweep = load_sweep_file(write_sweep(tmp_path, """
base: pentagon.yaml
grid:
  model.optimizer: [SGD, Adam]
  data.feature_probability: [0.05, 0.2]
"""))
    plan = make_plan(sweep, TINY)
    assert [a.packed for a in plan.axes] == [False, True]
    assert len(plan.runs) == 2 and all(run.n_instances == 4 and len(run.points) == 2 for run in plan.runs)
    assert plan.runs[0].instances == [(0, 2), (2, 4)]
    assert plan.runs[0].config["model"]["init_seeds"] == [0, 1, 0, 1]
    assert [run.points[0]["model.optimizer"] for run in plan.runs] == ["SGD", "Adam"]
    unpacked = make_plan(sweep, TINY, pack=False)
    assert len(unpacked.runs) == 4 and not any(a.packed for a in unpacked.axes)
    assert "--pack false" in unpacked.axes[1].why
    assert len({run.id for run in unpacked.runs}) == 4


def test_callbacks_that_address_instances_stop_packing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sweep = load_sweep_file(write_sweep(tmp_path, "base: hexagon_patch.yaml\ngrid: {model.init_seeds: [0, 100]}\n"))
    plan = make_plan(sweep, ["--trainer.max_steps=30"])
    assert not plan.axes[0].packed and "experiment is set" in plan.axes[0].why
    assert len(plan.runs) == 2


def test_the_optimizer_study_runs_what_the_readme_types(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    plan = make_plan(load_sweep_file("optimizer_study"), [])
    typed = [["--model.optimizer", name, "--model.optimizer.lr", lr] for name, lr in
             (("SGD", "0.01"), ("RMSprop", "0.001"), ("Adam", "0.001"), ("AdamW", "0.001"))]
    expected = [identity(resolved_config(["--config", "hexagon_scan.yaml", *args], "typed")) for args in typed]
    assert [run.id for run in plan.runs] == expected
    assert all(run.n_instances == 64 for run in plan.runs)


def test_identity_ignores_placement_and_sees_every_setting():
    config = yaml.safe_load("trainer: {max_steps: 30, logger: {init_args: {save_dir: a}}}\ndata: {n_features: 5}\nreport_page: true\n")
    moved = yaml.safe_load("trainer: {max_steps: 30, logger: {init_args: {save_dir: b}}}\ndata: {n_features: 5}\nreport_page: false\n")
    changed = yaml.safe_load("trainer: {max_steps: 31, logger: {init_args: {save_dir: a}}}\ndata: {n_features: 5}\nreport_page: true\n")
    assert identity(config) == identity(moved) != identity(changed)
    assert identity(config).startswith("run-") and not identity(config)[4:].isdigit()


def test_resume_decisions(tmp_path):
    run = tmp_path / "run"
    assert next_action(None, run)[0] == "run"
    assert next_action({"state": "done"}, run) == ("run", "done, but its directory is gone")
    (run / "checkpoints").mkdir(parents=True)
    assert next_action({"state": "done"}, run)[0] == "skip"
    assert next_action({"state": "interrupted"}, run)[0] == "run"  # no last.ckpt yet: from the start
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert next_action({"state": "interrupted"}, run)[0] == "resume"
    assert next_action({"state": "running"}, run)[0] == "resume"  # a sweep that was killed
    assert next_action({"state": "failed"}, run)[0] == "run"  # failed runs start again


def test_headline_results_of_a_point_are_its_instances_only():
    report = {"step": 10, "n_instances": 4, "d_hidden": 2, "flip_rate": 0.5, "instances": [
        {"index": 0, "init_seed": 0, "loss": 1.0, "geometry": "pentagon", "represented": [0, 1, 2, 3, 4], "feature_norms": [1.0] * 5},
        {"index": 1, "init_seed": 1, "loss": 3.0, "geometry": "hexagon", "represented": [0, 1, 2, 3, 4, 5], "feature_norms": [2.0] * 5},
        {"index": 2, "init_seed": 0, "loss": 5.0, "geometry": "hexagon", "represented": [0], "feature_norms": [1.0, 0, 0, 0, 0]},
        {"index": 3, "init_seed": 1, "loss": 7.0, "geometry": ["1", "1/2"], "represented": [0, 1], "feature_norms": [1.0, 1.0, 0, 0, 0]},
    ]}
    first = headline(report, 0, 2)
    assert first["instances"] == 2 and first["loss"] == 2.0 and first["loss_min"] == 1.0
    assert first["geometries"] == {"pentagon": 1, "hexagon": 1} and first["fraction_hexagon"] == 0.5
    assert first["dimensions_per_feature"] == pytest.approx((2 / 5 + 2 / 20) / 2)
    assert first["represented"] == 5.5 and first["flip_rate"] == 0.5 and "init_seed" not in first
    second = headline(report, 2, 4)
    assert second["geometries"] == {"hexagon": 1, "2 represented": 1} and second["loss"] == 6.0


def test_runs_side_by_side_share_the_cores_and_the_users_threads_win(monkeypatch):
    from lit_superposition.sweeps.executors import fair_threads, thread_env

    assert [fair_threads(n, cores=8) for n in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert thread_env(3) == {"OMP_NUM_THREADS": "3"}
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert thread_env(3) == {}


def test_a_failed_runs_line_is_its_last_line_without_terminal_codes(tmp_path):
    from lit_superposition.sweeps.executors import last_line

    err = tmp_path / "err"
    err.write_text("Epoch 0: 10%\r\x1b[2K Epoch 0: 50%\nlit-superposition: error: bad thing\n\n")
    assert last_line(err) == "lit-superposition: error: bad thing"
    assert last_line(tmp_path / "missing") is None
