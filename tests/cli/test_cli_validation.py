"""Every kind of bad input: exit code 2, one line naming the setting, no traceback, no run directory."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pytorch_lightning.callbacks import Callback

from lit_superposition.cli import main
from lit_superposition.errors import ConfigError
from tests.conftest import assert_bad_input, run_command, run_in_process

BASE = ["fit", "--config", "pentagon.yaml", "--trainer.max_steps=3", "--trainer.enable_progress_bar=false"]


def _write_inputs(folder: Path) -> None:
    (folder / "malformed.yaml").write_text("data: {n_instances: 2, n_features: 5\nmodel: [1, 2\n")
    (folder / "unknown_key.yaml").write_text("data:\n  n_instances: 2\n  n_features: 5\n  bogus: 3\n")
    (folder / "a_list.yaml").write_text("- 1\n- 2\n")
    (folder / "typo.yaml").write_text("data: {n_instances: 2, n_featurs: 5}\n")
    (folder / "not_a_checkpoint.ckpt").write_text("hello")
    torch.save({"something": 1}, folder / "foreign.ckpt")
    # A checkpoint of 5 features, to be resumed with 6.
    torch.save({"global_step": 3, "state_dict": {"model.W": torch.zeros(8, 2, 5), "model.b": torch.zeros(8, 5)}},
               folder / "five_features.ckpt")


# (extra arguments, text the one line must contain)
CASES = [
    (["--data.n_instances=abc"], "data.n_instances: invalid value abc; expected int"),
    (["--data.n_instances=2.5"], "data.n_instances: invalid value 2.5; expected int"),
    (["--data.n_instances=0"], "n_instances must be a positive integer, got 0"),
    (["--data.n_features=-1"], "n_features must be a positive integer, got -1"),
    (["--data.batch_size=0"], "batch_size must be a positive integer, got 0"),
    (["--data.data_seed=abc"], "data.data_seed: invalid value abc; expected int"),
    (["--data.instance_data=both"], "data.instance_data: invalid value both; expected one of 'shared', 'independent'"),
    (["--data.feature_probability=abc"], "data.feature_probability: invalid value abc; expected float or list[float]"),
    (["--data.feature_probability=0"], "feature_probability must be in (0, 1], got 0"),
    (["--data.feature_probability=[[0.1,0.2]]"], "feature_probability matrix has shape (1, 2), expected"),
    (["--model.d_hidden=0"], "d_hidden must be a positive integer, got 0"),
    (["--model.init_seeds=[1,2]"], "init_seeds has 2 seeds, expected one per instance (8)"),
    (["--model.importance=inf"], "model.importance: invalid value inf"),
    (["--model.instances=[99]"], "instances [99] out of range"),
    (["--model.bogus=1"], "unrecognized arguments: --model.bogus=1"),
    (["--trainer.max_steps=-5"], "`max_steps` must be a non-negative integer or -1"),
    (["--trainer.max_steps=abc"], "trainer.max_steps: invalid value abc; expected int"),
    (["--trainer.log_every_n_steps=0"], "trainer.log_every_n_steps must be >= 1, got 0"),
    (["--trainer.accelerator=tpux"], "invalid accelerator name"),
    (["--trainer.precision=7"], "trainer.precision: invalid value 7"),
    (["--checkpoint.every_n_train_steps=-1"], "every_n_train_steps=-1. Must be >= 0"),
    (["--checkpoint.save_top_k=-5"], "save_top_k=-5. Must be >= -1"),
    (["--progress_bar.update_every_n_steps=0"], "update_every_n_steps must be a positive integer, got 0"),
    (["--nonfinite_loss.check_every_n_steps=0"], "check_every_n_steps must be a positive integer"),
    (["--model.optimizer=NoSuchOptimizer"], "optimizer: invalid value NoSuchOptimizer"),
    (["--model.optimizer=SGD", "--model.optimizer.lr=-1"], "optimizer: Invalid learning rate: -1.0"),
    (["--model.optimizer.lr=0.1"], "optimizer.lr: choose the optimizer first"),
    (["--model.lr_scheduler=WarmupDecay", "--model.lr_scheduler.decay=exp"], "lr_scheduler.decay: invalid value exp; expected one of"),
    (["--model.lr_scheduler=WarmupDecay", "--model.lr_scheduler.warmup_steps=-1"], "lr_scheduler: warmup_steps must be >= 0, got -1"),
    (["--model.lr_scheduler=WarmupDecay", "--model.lr_scheduler.decay=linear", "--model.lr_scheduler.warmup_steps=50"],
     "lr_scheduler.warmup_steps (50) must be below trainer.max_steps (3)"),
    (["--seed_everything=abc"], "seed_everything: invalid value abc; expected bool or int"),
    (["--config=malformed.yaml"], "Problems parsing config"),
    (["--config=unknown_key.yaml"], "data.bogus: no such setting"),
    (["--config=typo.yaml"], "data.n_featurs: no such setting; did you mean data.n_features?"),
    (["--config=a_list.yaml"], "Unexpected config"),
    (["--config=missing.yaml"], "config 'missing.yaml' not found"),
    (["--ckpt_path=missing.ckpt"], "ckpt_path 'missing.ckpt' not found"),
    (["--ckpt_path=not_a_checkpoint.ckpt"], "is not a readable checkpoint"),
    (["--ckpt_path=foreign.ckpt"], "is not a Lightning checkpoint"),
    (["--model.optimizer=Adamw"], "model.optimizer: invalid value Adamw; expected an optimizer class"),
    (["--optimizer=SGD", "--optimizer.lr=0.1"], "--optimizer is --model.optimizer since release 0.3"),
    (["--data.n_feature=6"], "unrecognized arguments: --data.n_feature=6"),  # no prefix matching
    (["--trainer.callbacks+=no_such_module.Thing"], "cannot use no_such_module.Thing: importing 'no_such_module' failed"),
    (["--ckpt_path=five_features.ckpt", "--data.n_features=6"],
     "model.W has shape (8, 2, 5) in the checkpoint but (8, 2, 6) in the config"),
]


@pytest.mark.parametrize(("extra", "message"), CASES, ids=[" ".join(extra)[:60] for extra, _ in CASES])
def test_bad_input_in_process(in_tmp, extra, message):
    _write_inputs(in_tmp)
    result = run_in_process(*BASE, *extra, cwd=in_tmp)
    assert_bad_input(result.returncode, result.stderr, message, in_tmp)


# The real installed command, for a representative few (each costs a Python start-up): a type error from the
# parser, a config that does not exist (answered before Lightning is imported), a misspelt optimizer.
COMMAND_CASES = [case for case in CASES if case[0][0] in ("--data.n_instances=abc", "--config=missing.yaml", "--model.optimizer=Adamw")]


assert len(COMMAND_CASES) == 3


@pytest.mark.parametrize(("extra", "message"), COMMAND_CASES, ids=[" ".join(e)[:60] for e, _ in COMMAND_CASES])
def test_bad_input_through_the_installed_command(tmp_path, extra, message):
    _write_inputs(tmp_path)
    result = run_command(*BASE, *extra, cwd=tmp_path)
    assert_bad_input(result.returncode, result.stderr, message, tmp_path)


class FailsInSetup(Callback):
    """Bad input that only shows once fit has begun, after the run directory was created."""

    def setup(self, trainer, pl_module, stage):
        (Path(trainer.log_dir) / "half_written.txt").write_text("x")
        raise ConfigError("fails_in_setup: bad value 3, expected 4")


def test_bad_input_found_during_fit_leaves_no_run_directory(in_tmp, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*BASE, "--trainer.callbacks+=tests.cli.test_cli_validation.FailsInSetup"])
    assert_bad_input(exit_info.value.code, capsys.readouterr().err, "fails_in_setup: bad value 3", in_tmp)


def test_an_unknown_command_gets_one_line_naming_the_commands(in_tmp, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["validate", "--config", "pentagon.yaml"])
    assert_bad_input(exit_info.value.code, capsys.readouterr().err, "unknown command 'validate': choose one of fit, theory", in_tmp)


def test_a_typo_in_a_standalone_config_is_named_before_what_it_left_unset(tmp_path):
    # jsonargparse finds data.n_features unset first; the misspelt key is what the user must hear about.
    (tmp_path / "alone.yaml").write_text("data: {n_featurs: 5}\n")
    result = run_in_process("fit", "--config", "alone.yaml", cwd=tmp_path)
    assert_bad_input(result.returncode, result.stderr, "data.n_featurs: no such setting; did you mean data.n_features?", tmp_path)
