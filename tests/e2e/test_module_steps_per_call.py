"""Several optimizer steps per Lightning call (``model.steps_per_call``) change nothing but the speed."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger

from lit_superposition import LitToyModel, SparseFeatureDataModule
from lit_superposition.callbacks import FeatureGeometry, FeatureGradNorms, FeatureLosses, GeometrySnapshots, NonFiniteLossStop
from lit_superposition.errors import NonFiniteLossError
from tests.conftest import assert_bad_input, assert_bitwise_equal, run_in_process, scalars

N_INSTANCES, N_FEATURES = 4, 6


def _fit(root: Path, steps_per_call: int, max_steps: int, ckpt_path: Path | None = None,
         data: SparseFeatureDataModule | None = None) -> tuple[LitToyModel, pl.Trainer]:
    module = LitToyModel(N_INSTANCES, N_FEATURES, d_hidden=2, init_seeds=3, steps_per_call=steps_per_call)
    data = data or SparseFeatureDataModule(N_INSTANCES, N_FEATURES, feature_probability=0.1, batch_size=32)
    callbacks = [
        FeatureLosses(every_n_steps=16),
        FeatureGradNorms(every_n_steps=12),
        FeatureGeometry(every_n_steps=20),
        GeometrySnapshots(spacing="log", n_snapshots=12),  # steps 1, 2, 3, 4, 6, ...: not multiples of 8
        NonFiniteLossStop(),
    ]
    trainer = pl.Trainer(
        max_steps=max_steps, max_epochs=-1, logger=TensorBoardLogger(root, name="run", version=0), log_every_n_steps=10,
        callbacks=callbacks, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(module, data, ckpt_path=ckpt_path)
    return module, trainer


def _state(module: LitToyModel, trainer: pl.Trainer) -> dict[str, torch.Tensor]:
    optimizer = trainer.optimizers[0].state_dict()["state"]
    moments = {f"{k}.{name}": v for k, state in optimizer.items() for name, v in state.items()}
    return {**{k: v.detach() for k, v in module.state_dict().items()}, **moments}


@pytest.fixture(scope="module")
def one_step_per_call(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    root = tmp_path_factory.mktemp("k1")
    module, trainer = _fit(root, steps_per_call=1, max_steps=64)
    return _state(module, trainer), root / "run" / "version_0"


def test_eight_steps_per_call_give_bitwise_the_weights_and_instruments_of_one(one_step_per_call, tmp_path):
    expected, expected_run = one_step_per_call
    module, trainer = _fit(tmp_path, steps_per_call=8, max_steps=64)
    assert trainer.global_step == 64  # global_step counts optimizer steps
    assert_bitwise_equal(_state(module, trainer), expected)
    run = tmp_path / "run" / "version_0"
    logged, wanted = scalars(run), scalars(expected_run)
    assert logged.keys() == wanted.keys()
    assert any(tag.startswith("feature_loss/") for tag in wanted) and any(tag.startswith("grad_norm_W/") for tag in wanted)
    for tag in wanted:  # per-feature losses, gradient norms, geometry and losses: same steps, same values
        assert logged[tag] == wanted[tag], tag
    snapshots = torch.load(run / "snapshots.pt", weights_only=True)
    expected_snapshots = torch.load(expected_run / "snapshots.pt", weights_only=True)
    assert snapshots["step"].tolist() == expected_snapshots["step"].tolist() == sorted(set(snapshots["step"].tolist()))
    assert 3 in snapshots["step"].tolist()  # a step inside the first call of 8
    assert torch.equal(snapshots["W"], expected_snapshots["W"])


def test_a_run_of_eight_steps_per_call_resumed_at_step_20_is_bitwise_uninterrupted(one_step_per_call, tmp_path):
    expected, _ = one_step_per_call
    _, stopped = _fit(tmp_path / "first", steps_per_call=8, max_steps=20)  # calls of 8, 8, then 4 steps
    assert stopped.global_step == 20
    checkpoint = tmp_path / "step20.ckpt"
    stopped.save_checkpoint(checkpoint)
    module, trainer = _fit(tmp_path / "resumed", steps_per_call=8, max_steps=64, ckpt_path=checkpoint)
    assert trainer.global_step == 64
    assert_bitwise_equal(_state(module, trainer), expected)


class _NaNAt(SparseFeatureDataModule):
    """The stream, with a NaN feature in every instance's batch at one step."""

    def __init__(self, step: int) -> None:
        super().__init__(N_INSTANCES, N_FEATURES, feature_probability=0.1, batch_size=32)
        self.bad_step = step

    def make_batch(self, step: int, rank: int = 0, device: torch.device | str = "cpu") -> torch.Tensor:
        x = super().make_batch(step, rank, device)
        return x.index_fill(2, torch.tensor([1], device=x.device), float("nan")) if step == self.bad_step else x


@pytest.mark.parametrize("steps_per_call", [1, 8])
def test_the_non_finite_loss_stop_names_the_exact_step_inside_a_call(tmp_path, steps_per_call):
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss \(NaN or inf\) at step 13 in all 4 instances"):
        _fit(tmp_path, steps_per_call=steps_per_call, max_steps=40, data=_NaNAt(13))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--model.steps_per_call=0"], "steps_per_call must be a positive integer, got 0"),
        (["--model.steps_per_call=8", "--trainer.accumulate_grad_batches=2"], "needs trainer.accumulate_grad_batches=1"),
        (["--model.steps_per_call=8", "--trainer.gradient_clip_val=1.0"], "cannot clip gradients"),
        (["--model.steps_per_call=8", "--trainer.precision=bf16-mixed"], "runs in full precision: trainer.precision='bf16-mixed'"),
    ],
)
def test_bad_steps_per_call_settings_exit_2_with_one_line(in_tmp, arguments, message):
    result = run_in_process("fit", "--config", "pentagon.yaml", "--trainer.max_steps=10", *arguments, cwd=in_tmp)
    assert_bad_input(result.returncode, result.stderr, message, in_tmp)


class _EveryCall(pl.Callback):
    """Counts its per-call and backward hooks, and says nothing about the steps it needs."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.backwards = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps.append(trainer.global_step)

    def on_after_backward(self, trainer, pl_module):
        self.backwards += 1


def test_a_callback_that_declares_no_steps_sees_every_step_without_a_warning(tmp_path, recwarn):
    module = LitToyModel(N_INSTANCES, N_FEATURES, steps_per_call=16)
    data = SparseFeatureDataModule(N_INSTANCES, N_FEATURES, batch_size=16)
    counter = _EveryCall()
    trainer = pl.Trainer(max_steps=20, max_epochs=-1, logger=False, callbacks=[counter], enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, data)
    assert counter.steps == list(range(1, 21)) and counter.backwards == 20
    assert not [w for w in recwarn if "step" in str(w.message)], [str(w.message) for w in recwarn]
