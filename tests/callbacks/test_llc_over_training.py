"""LLCOverTraining and ChenKGonStart: λ̂ during training leaves the run bitwise alone; k-gon starts; bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lit_superposition.analysis.llc import LLCSettings, estimate_llc
from lit_superposition.analysis.theory import chen_closed_form_loss
from lit_superposition.callbacks import ChenKGonStart, GeometryReport, LLCOverTraining
from lit_superposition.data import SparseFeatureDataModule
from lit_superposition.errors import ConfigError
from lit_superposition.module import LitToyModel
from tests.callbacks.conftest import make_trainer, small_setup

#: Small but real SGLD: every estimate is a few hundred batched steps.
CHEAP = {"n": 800, "n_chains": 3, "n_draws": 40, "n_burnin": 20, "batch_size": 64}


def _fit(tmp_path: Path, callbacks: list, max_steps: int = 40):
    module, data = small_setup(n_instances=3, n_features=5)
    trainer, recorder = make_trainer(tmp_path, [*callbacks, GeometryReport(n_eval_batches=1, print_table=False)],
                                     max_steps=max_steps, tensorboard=True, log_every_n_steps=10)
    trainer.fit(module, data)
    return module, trainer


def test_the_run_trains_bitwise_as_without_it_and_keeps_every_estimate(tmp_path):
    callback = LLCOverTraining(n_estimates=4, **CHEAP)
    with_llc, trainer = _fit(tmp_path / "with", [callback])
    without, _ = _fit(tmp_path / "without", [])
    for name in ("W", "b"):
        assert torch.equal(getattr(with_llc.model, name), getattr(without.model, name)), name  # bitwise
    steps = [0, 1, 6, 40]  # step 0, then 3 log-spaced from 1 to 40: 1, √40 ≈ 6, 40
    assert [p["step"] for p in callback.history[0]] == steps
    written = json.loads((Path(trainer.log_dir) / "report.json").read_text())
    for entry in written["instances"]:
        assert [p["step"] for p in entry["llc_over_training"]] == steps
        assert entry["llc"]["step"] == 40 and len(entry["llc"]["per_chain"]) == 3
        assert entry["llc"]["sample"] == "stream, sample_seed 0" and entry["llc"]["settings"]["n"] == 800
    # The last record is the estimator's own answer on the final weights and the run's law.
    data = SparseFeatureDataModule(n_instances=3, n_features=5, batch_size=64)
    points = data.values_of(torch.rand(1, 800, 5, generator=torch.Generator().manual_seed(0)))
    expected = estimate_llc(with_llc.model, points, LLCSettings(**CHEAP))
    assert [entry["llc"]["per_chain"] for entry in written["instances"]] == expected.per_chain.tolist()
    events = EventAccumulator(str(trainer.log_dir), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("llc/instance_002")] == steps
    assert events.Scalars("llc/instance_002")[-1].value == pytest.approx(written["instances"][2]["llc"]["mean"], rel=1e-6)
    assert "llc/traces" in events.Tags()["images"]
    traces = torch.load(Path(trainer.log_dir) / "llc.pt", weights_only=True)
    assert traces["step"] == 40 and traces["traces"].shape == (3, 3, 40)


def test_the_kgon_start_is_the_critical_point_and_step_zero_is_estimated_there(tmp_path):
    n_features = 4  # p = 1/4 is exact in float32, so theory's check of the set's total is too
    module = LitToyModel(n_instances=4, n_features=n_features, init_seeds=0, steps_per_call=1)
    data = SparseFeatureDataModule(n_instances=4, n_features=n_features, batch_size=64, exactly_one_active=True)
    callback = LLCOverTraining(steps=[0], **CHEAP)
    trainer, _ = make_trainer(tmp_path, [ChenKGonStart(), callback, GeometryReport(n_eval_batches=1, print_table=False)],
                              max_steps=1)
    trainer.fit(module, data)
    W0, b0 = module.model.initial_W.double(), module.model.initial_b.double()  # (4, 2, 4), (4, 4): k = 4, 3, 2, 4
    assert [int((W0[i].norm(dim=0) > 0).sum()) for i in range(4)] == [4, 3, 2, 4]
    weights = torch.cat([W0.flatten(1), b0], dim=1).requires_grad_(True)
    loss = chen_closed_form_loss(weights[:, :8].view(4, 2, 4), weights[:, 8:]).sum()
    (gradient,) = torch.autograd.grad(loss, weights)
    assert gradient.abs().max() < 1e-5  # float32 weights of a critical point of the closed form
    assert list(callback.latest) == [0, 1, 2, 3] and all(r["step"] == 0 for r in callback.latest.values())
    # Two copies of the square, each keyed by its own index: the same point, independent chains.
    assert callback.latest[0]["per_chain"] != callback.latest[3]["per_chain"]
    written = json.loads((Path(trainer.log_dir) / "report.json").read_text())
    assert [entry["start"] for entry in written["instances"]] == [f"{name} critical point" for name in ("square", "triangle", "digon", "square")]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: LLCOverTraining(n_chains=0), "llc.n_chains must be an integer >= 1"),
        (lambda: LLCOverTraining(epsilon=-1.0), "llc.epsilon must be a finite number > 0"),
        (lambda: LLCOverTraining(steps=[]), "steps must be a non-empty list"),
        (lambda: LLCOverTraining(spacing="cubic"), "spacing must be 'log' or 'linear'"),
        (lambda: ChenKGonStart(ks=[1, 3]), "a lone feature is no critical point"),
    ],
)
def test_bad_settings_are_one_line_errors(make, message):
    with pytest.raises(ConfigError, match=message) as error:
        make()
    assert "\n" not in str(error.value)


def test_the_kgon_start_refuses_other_data_and_the_sample_refuses_n_with_finite_sets(tmp_path):
    module, data = small_setup(n_instances=2, n_features=4)
    trainer, _ = make_trainer(tmp_path / "a", [ChenKGonStart()], max_steps=1)
    with pytest.raises(ConfigError, match="exactly_one_active"):
        trainer.fit(module, data)
    module, data = small_setup(n_instances=2, n_features=4, dataset_size=30)
    trainer, _ = make_trainer(tmp_path / "b", [LLCOverTraining(n=300, steps=[0])], max_steps=1)
    with pytest.raises(ConfigError, match="size of each instance's training set"):
        trainer.fit(module, data)
