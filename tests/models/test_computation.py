"""The computation model: its formula, init, gains, weight patching, and snapshots/resume/bad input through the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from lit_superposition.analysis.patching import Triple, patched_initial_state
from lit_superposition.cli import build_cli, main
from lit_superposition.errors import ConfigError
from lit_superposition.models import VARIANTS, ComputationModel, model_class, xavier_columns
from lit_superposition.module import LitToyModel
from tests.conftest import assert_bad_input

QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def _randomized(n_instances=3, n_features=5, d_hidden=4, seed=4) -> ComputationModel:
    model = ComputationModel(n_instances=n_instances, n_features=n_features, d_hidden=d_hidden, init_seeds=seed)
    with torch.no_grad():
        model.b.normal_()
    return model


def test_forward_is_the_per_instance_formula():
    model = _randomized()
    x = torch.rand(3, 7, 5) * 2 - 1  # (n_instances, batch, n_features)
    expected = torch.stack([
        torch.relu(torch.relu(x[i] @ model.W[i].T) @ model.W_out[i].T + model.b[i]) for i in range(model.n_instances)
    ])
    torch.testing.assert_close(model(x), expected)


def test_registered_with_a_privileged_basis_and_three_trained_tensors():
    assert model_class("computation") is VARIANTS["computation"] is ComputationModel
    assert ComputationModel.privileged_basis and ComputationModel.patched_parameters == {"W": -1, "W_out": -2}
    model = ComputationModel(n_instances=2, n_features=6, d_hidden=3)
    assert model.parameter_names == ("W", "W_out", "b")
    assert {name for name, _ in model.named_parameters()} == {"W", "W_out", "b"}
    assert {"initial_W", "initial_W_out", "initial_b"} <= set(model.state_dict())


def test_initial_state_is_xavier_from_the_seed_with_W_out_continuing_its_generator():
    model = ComputationModel(n_instances=2, n_features=6, d_hidden=3, init_seeds=[5, 9])
    generator = torch.Generator().manual_seed(9)
    W = nn.init.xavier_normal_(torch.empty(3, 6), generator=generator)
    W_out = nn.init.xavier_normal_(torch.empty(6, 3), generator=generator)
    assert torch.equal(model.W[1], W) and torch.equal(W, xavier_columns(9, 3, 6))  # the same W as every variant
    assert torch.equal(model.W_out[1], W_out) and not torch.equal(W_out, W.T)  # untied
    assert torch.equal(model.b, torch.zeros(2, 6))
    assert torch.equal(model.initial_state()["W_out"][0], ComputationModel.instance_initial_state(5, 3, 6)["W_out"])


def test_patching_replaces_the_features_column_of_W_and_row_of_W_out():
    state = patched_initial_state([Triple(base_seed=3, donor_seed=17, features=[1, 4])], ComputationModel, d_hidden=4, n_features=6)
    base = ComputationModel.instance_initial_state(3, 4, 6)
    donor = ComputationModel.instance_initial_state(17, 4, 6)
    W, W_out = state["state"]["W"], state["state"]["W_out"]  # (3, 4, 6), (3, 6, 4): base, patched, donor
    for name in ("W", "W_out", "b"):
        assert torch.equal(state["state"][name][0], base[name]) and torch.equal(state["state"][name][2], donor[name])
    kept = [0, 2, 3, 5]
    assert torch.equal(W[1][:, [1, 4]], donor["W"][:, [1, 4]]) and torch.equal(W[1][:, kept], base["W"][:, kept])
    assert torch.equal(W_out[1][[1, 4]], donor["W_out"][[1, 4]]) and torch.equal(W_out[1][kept], base["W_out"][kept])
    assert not torch.equal(W_out[1], base["W_out"])


def test_gains_are_the_row_of_W_out_times_the_column_of_W_through_the_relu():
    model = _randomized()
    gains = model.feature_gains()  # (2, n_instances, n_features)
    for i in range(3):
        for f in range(5):
            column, row = model.W[i, :, f], model.W_out[i, f]
            torch.testing.assert_close(gains[0, i, f], row @ column.relu())
            torch.testing.assert_close(gains[1, i, f], row @ (-column).relu())


def test_computed_features_need_a_sign_with_gain_above_one_half():
    model = ComputationModel(n_instances=1, n_features=3, d_hidden=3)
    with torch.no_grad():
        model.W.copy_(torch.tensor([[[1.0, 1.0, 0.2], [-1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]))
        model.W_out.copy_(torch.tensor([[[1.0, 1.0, 0.0], [0.9, 0.0, 0.0], [1.0, 0.0, 0.0]]]))
    # Feature 0 is |x| (ReLU(x) + ReLU(-x)), feature 1 ReLU(x) only, feature 2 too weak (gain 0.2).
    assert model.computed_signs().tolist() == [[[True, True, False]], [[True, False, False]]]
    assert model.computed_features().tolist() == [[True, True, False]]
    one_hot = torch.cat([torch.eye(3), -torch.eye(3)]).unsqueeze(0)  # (1, 6, 3): +e_f then -e_f
    outputs = model(one_hot)[0]  # (6, 3)
    torch.testing.assert_close(outputs[[0, 3], 0], torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(outputs[[1, 4], 1], torch.tensor([0.9, 0.0]))


def test_the_abs_target_reaches_the_loss():
    module = LitToyModel(n_instances=3, n_features=5, d_hidden=4, variant="computation", importance=0.5, target="abs")
    identity = LitToyModel(n_instances=3, n_features=5, d_hidden=4, variant="computation", importance=0.5)
    x = torch.rand(3, 64, 5) * 2 - 1
    loss, per_feature = module.objective(x)
    expected = (x.abs() - module.model(x)).square().mean(dim=1) * 0.5  # (n_instances, n_features)
    torch.testing.assert_close(per_feature, expected)
    torch.testing.assert_close(loss, expected.mean(dim=1).sum())
    torch.testing.assert_close(identity.objective(x)[1], (x - identity.model(x)).square().mean(dim=1) * 0.5)
    assert not torch.allclose(per_feature, identity.objective(x)[1])
    with pytest.raises(ConfigError, match="target must be 'identity' or 'abs', got 'sign'"):
        LitToyModel(n_instances=3, n_features=5, variant="computation", target="sign")


def _fit(*extra: str):
    return build_cli([
        "fit", "--config", "abs_computation.yaml", *QUIET, "--trainer.max_steps=40",
        "--checkpoint.every_n_train_steps=15", "--checkpoint.save_top_k=-1",
        "--instruments.feature_grad_norms.every_n_steps=10", "--instruments.feature_losses.every_n_steps=10",
        "--instruments.feature_geometry.every_n_steps=10", *extra,
    ])


def test_snapshots_report_resume_and_file_donors_through_the_cli(in_tmp):
    cli = _fit()
    assert cli.model.target == "abs" and cli.datamodule.values == "signed"  # data.target linked to the model
    run = in_tmp / "runs" / "abs_computation" / "version_0"
    snapshots = torch.load(run / "snapshots.pt", weights_only=True)
    assert snapshots["step"][0] == 0 and snapshots["step"][-1] == 40
    assert snapshots["W_out"].shape == (len(snapshots["step"]), 7, 40, 10)
    straight = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert torch.equal(snapshots["W_out"][0], straight["state_dict"]["model.initial_W_out"])
    assert torch.equal(snapshots["W_out"][-1], straight["state_dict"]["model.W_out"])
    report = json.loads((run / "report.json").read_text())
    assert report["variant"] == "ComputationModel" and all(len(entry["neurons"]) == 10 for entry in report["instances"])

    _fit("--ckpt_path", str(run / "checkpoints" / "epoch=0-step=15.ckpt"))
    resumed = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert resumed["global_step"] == 40
    assert straight["state_dict"].keys() == resumed["state_dict"].keys()
    for name, value in straight["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][name]), name
    again = torch.load(run / "snapshots.pt", weights_only=True)
    for name in ("W", "W_out", "b"):
        assert torch.equal(again[name], snapshots[name]), name

    # Weight patching from this run's snapshot file (trained weights at step 40), through the CLI.
    (in_tmp / "patch.yaml").write_text(
        "trainer:\n  callbacks:\n    - class_path: lit_superposition.callbacks.WeightPatching\n      init_args:\n"
        f"        triples: [{{base_seed: 3, donor_file: {run / 'snapshots.pt'}, donor_instance: 2, donor_step: 40, features: [1, 4]}}]\n"
        "data:\n  n_instances: 3\n  feature_probability: 0.1\n"
    )
    build_cli(["fit", "--config", "abs_computation.yaml", "--config", str(in_tmp / "patch.yaml"), *QUIET, "--trainer.max_steps=3"])
    patched = torch.load(in_tmp / "runs" / "abs_computation" / "version_1" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    base = ComputationModel.instance_initial_state(3, 10, 40)
    donor_W, donor_W_out = snapshots["W"][-1, 2], snapshots["W_out"][-1, 2]  # (10, 40), (40, 10)
    assert torch.equal(patched["model.initial_W_out"][1][[1, 4]], donor_W_out[[1, 4]])
    assert torch.equal(patched["model.initial_W"][1][:, [1, 4]], donor_W[:, [1, 4]])
    assert torch.equal(patched["model.initial_W_out"][1][[0, 2]], base["W_out"][[0, 2]])
    assert torch.equal(patched["model.initial_W_out"][2], donor_W_out)


@pytest.mark.parametrize(
    "extra",
    [
        ["--config", "pentagon.yaml", "--model.variant=computation", "--data.target=abs", "--data.values=uniform"],
        ["--config", "abs_computation.yaml", "--data.values=uniform"],
    ],
)
def test_abs_with_uniform_values_exits_2_with_one_line(in_tmp, capsys, extra):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *extra, *QUIET, "--trainer.max_steps=3"])
    assert_bad_input(exit_info.value.code, capsys.readouterr().err, "target 'abs' needs values 'signed', got values 'uniform'", in_tmp)
