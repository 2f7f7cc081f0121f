"""Finite training sets: exactly their points reach the loss, instances stay independent, resume is exact."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from lit_superposition import LitToyModel, SparseFeatureDataModule
from lit_superposition.data import EVALUATION_STEP, LogSweep
from lit_superposition.data.finite import CHUNK, resolve_dataset_size
from lit_superposition.errors import ConfigError
from tests.conftest import assert_bad_input, run_in_process

N_FEATURES = 20


def _data(sizes, **kwargs) -> SparseFeatureDataModule:
    kwargs = {"feature_probability": 0.1, "instance_data": "independent", "scale_points": "unit_norm", **kwargs}
    return SparseFeatureDataModule(len(sizes), N_FEATURES, dataset_size=list(sizes), **kwargs)


def _fit(sizes, max_steps: int, tmp_path=None, ckpt_path=None, steps_per_call: int = 16, **data_kwargs) -> tuple[LitToyModel, pl.Trainer]:
    module = LitToyModel(len(sizes), N_FEATURES, init_seeds=[11 + i for i in range(len(sizes))], steps_per_call=steps_per_call)
    trainer = pl.Trainer(max_steps=max_steps, max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, _data(sizes, **data_kwargs), ckpt_path=ckpt_path)
    return module, trainer


def test_each_instance_trains_on_exactly_its_own_points():
    data = _data([3, 70, 200])
    sets = data.training_sets()
    assert sets.sizes.tolist() == [3, 70, 200] and sets.x.shape[1] == CHUNK
    module = LitToyModel(3, N_FEATURES)
    _, per_feature_loss = module.objective(sets)
    for i in range(3):  # the mean over the instance's own points, as if it trained alone
        alone = module.model.per_feature_loss(sets.points(i).unsqueeze(0), module.importance[i : i + 1], instances=torch.tensor([i]))
        torch.testing.assert_close(per_feature_loss[i], alone[0], rtol=1e-6, atol=1e-8)
    # A point outside the sets (the padding of a chunk) never reaches the loss.
    padded = sets.x.clone()
    padded[0, 3:] = 7.0  # instance 0 has 3 points: the rest of its chunk is padding
    moved = type(sets)(padded, sets.instances, sets.weights, sets.sizes, sets.first_row)
    assert torch.equal(module.objective(moved)[1], per_feature_loss)
    # Every point is a point of the law, scaled to unit norm (all-zero points stay zero).
    norms = sets.points(2).norm(dim=1)
    assert torch.allclose(norms[norms > 0], torch.ones(1)) and sets.points(2).ge(0).all()


def test_an_instance_does_not_depend_on_the_others_sizes():
    first, _ = _fit([5, 70, 300], max_steps=24)
    second, _ = _fit([5, 1000, 2], max_steps=24)
    for name in ("W", "b"):
        assert torch.equal(getattr(first.model, name)[0], getattr(second.model, name)[0]), name


def test_a_resumed_run_is_bitwise_the_uninterrupted_one(tmp_path):
    sizes = [4, 90]
    straight, _ = _fit(sizes, max_steps=40)
    _, stopped = _fit(sizes, max_steps=20, tmp_path=tmp_path)
    stopped.save_checkpoint(tmp_path / "step20.ckpt")
    resumed, _ = _fit(sizes, max_steps=40, ckpt_path=tmp_path / "step20.ckpt")
    assert torch.equal(straight.model.W, resumed.model.W) and torch.equal(straight.model.b, resumed.model.b)
    minibatches, _ = _fit(sizes, max_steps=8, full_batch=False, batch_size=16)  # minibatches of the sets train too
    assert not torch.equal(minibatches.model.W, straight.model.W)


def test_minibatches_draw_only_the_sets_points():
    data = _data([3, 40], full_batch=False, batch_size=256)
    batch = data.make_batch(5)  # (2, 256, N_FEATURES)
    sets = data.training_sets()
    for i in range(2):
        own = sets.points(i)
        assert all((own == point).all(dim=1).any() for point in batch[i])
    assert torch.equal(batch, data.make_batch(5)) and not torch.equal(batch, data.make_batch(6))


def test_the_test_set_is_no_training_point_and_evaluation_draws_are_fresh():
    # Unscaled: after unit-norm scaling a point with one active feature is a basis vector, which both sets can hold.
    data = _data([50, 50], instance_data="shared", scale_points="none")
    training = torch.cat([data.training_sets().points(i) for i in range(2)])
    test = data.test_set().reshape(-1, N_FEATURES)
    nonzero = test[test.abs().sum(dim=1) > 0]
    assert not (nonzero.unsqueeze(1) == training.unsqueeze(0)).all(dim=2).any()
    fresh = data.make_batch(EVALUATION_STEP)
    assert fresh.shape == (2, data.batch_size, N_FEATURES)  # the report's evaluation: the law, not the sets


def test_dataset_sizes_resolve_per_setting_with_repeats():
    assert resolve_dataset_size(LogSweep(start=3, end=2000), 6, repeats=2) == [3, 3, 77, 77, 2000, 2000]
    assert resolve_dataset_size([10, 20], 4, repeats=2) == [10, 10, 20, 20]
    assert resolve_dataset_size(None, 4) is None
    with pytest.raises(ConfigError, match="dataset_size has 3 values, expected one per setting"):
        resolve_dataset_size([1, 2, 3], 4, repeats=2)


@pytest.mark.parametrize(("args", "message"), [
    (["--data.dataset_size=0"], "dataset_size must be a whole number of points >= 1"),
    (["--data.dataset_size=-3"], "dataset_size must be a whole number of points >= 1"),
    (["--data.dataset_size=2.5"], "data.dataset_size: invalid value 2.5"),
    (["--data.dataset_size=[3, 30, 300]"], "dataset_size has 3 values, expected one per setting"),
    (["--data.dataset_size=100", "--data.scale_points=unit"], "data.scale_points: invalid value unit"),
])
def test_bad_finite_data_settings_exit_2_with_one_line(in_tmp, args, message):
    result = run_in_process("fit", "--config", "pentagon.yaml", "--trainer.max_steps=5", *args, cwd=in_tmp)
    assert_bad_input(result.returncode, result.stderr, message, in_tmp)


def test_a_short_double_descent_run_writes_the_losses_dimensionalities_and_figures(tmp_path):
    import json

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from tests.conftest import run_command

    result = run_command(
        "fit", "--config", "double_descent.yaml", "--trainer.max_steps=30", "--data.n_features=40", "--data.feature_probability=0.1", "--data.n_instances=6",
        "--data.repeats=2", "--data.dataset_size=[3, 20, 100]", "--data.test_size=64", "--model.lr_scheduler.init_args.warmup_steps=5",
        "--instruments.test_loss.every_n_steps=10", "--trainer.enable_progress_bar=false", cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "runs" / "double_descent" / "version_0"
    report = json.loads((run / "report.json").read_text())
    assert [row["dataset_size"] for row in report["instances"]] == [3, 3, 20, 20, 100, 100]
    for row in report["instances"]:
        assert row["train_loss"] > 0 and row["test_loss"] > 0 and 0 <= row["data_dimensionality"] <= 1
        assert "feature_dimensionality" in row
    # The best repeat is the one that fits its set best, in report.json as on the page and in the table.
    for pair in zip(report["instances"][::2], report["instances"][1::2]):
        assert [row["best_repeat"] for row in pair] == [row["train_loss"] == min(r["train_loss"] for r in pair) for row in pair]
    for figure in ("double_descent.png", "dimensionality_by_size.png", "data_points.png"):
        assert (run / "report" / figure).is_file(), figure
    assert "finite data: the best repeat" in result.stdout
    events = EventAccumulator(str(run))
    events.Reload()
    assert [e.step for e in events.Scalars("val/loss")] == [10, 20, 30]
