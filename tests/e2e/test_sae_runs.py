"""SAE runs end to end: independence through the module, bitwise resume with resampling, the command, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lit_superposition.analysis.sae_scores import coverage, represented_l0
from lit_superposition.callbacks import DeadLatentResampling
from lit_superposition.cli import build_cli
from lit_superposition.data import SourceActivations
from lit_superposition.sae_module import LitSAE
from tests.conftest import assert_bad_input, load_checkpoint, run_command, run_in_process

QUIET = ["--trainer.enable_progress_bar=false", "--instruments.sae_report.init_args.print_table=false"]
#: A small SAE run of the bundled config on the tiny source: 2 source instances x 2 coefficients.
SMALL = ["--model.sparsity_coefficient=[0.1, 3.0]", "--model.seeds=[0]", "--data.batch_size=64", *QUIET]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A finished 2-instance pentagon run (a few hundred steps: its features are not yet a pentagon, which does not matter here)."""
    root = tmp_path_factory.mktemp("source")
    build_cli([
        "fit", "--config", "pentagon.yaml", "--data.n_instances=2", "--trainer.max_steps=300", "--trainer.enable_progress_bar=false",
        f"--trainer.logger.init_args.save_dir={root / 'runs'}", "--instruments.feature_grad_norms=null",
        "--instruments.feature_losses=null", "--instruments.feature_geometry=null", "--instruments.geometry_snapshots=null",
        "--instruments.geometry_report.init_args.print_table=false",
    ])
    return root / "runs" / "pentagon" / "version_0"


def _fit(source: Path, steps: int, instances: list[int], **settings) -> tuple[LitSAE, DeadLatentResampling]:
    resampling = DeadLatentResampling(every_n_steps=10, window=5)
    trainer = pl.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[resampling])
    module = LitSAE(steps_per_call=7, **settings)
    trainer.fit(module, SourceActivations(str(source), instances=instances, batch_size=4))  # rare firing: latents go dead
    return module, resampling


def test_an_sae_trains_bitwise_the_same_whatever_else_the_module_trains(source):
    # SAE (source instance 1, 5 latents, λ = 3, seed 1) beside 15 others (two dictionary sizes, two sources,
    # two coefficients, two seeds) and alone; dead latents are resampled every 10 steps in both (4 inputs a step, so
    # a latent often fires in none of a 5-step window).
    together, resampled_together = _fit(source, 40, [0, 1], d_latent=[3, 5], sparsity_coefficient=[0.1, 3.0], seeds=[0, 1])
    alone, resampled_alone = _fit(source, 40, [1], d_latent=5, sparsity_coefficient=3.0, seeds=1)
    ours = together.settings.index({"source_instance": 1, "source_row": 1, "d_latent": 5, "sparsity_coefficient": 3.0, "seed": 1})
    group = next(g for g, index in enumerate(together.saes.indices) if ours in index)
    position = together.saes.indices[group].index(ours)
    sae = together.saes.groups[group]
    for name in sae.parameter_names:
        assert torch.equal(getattr(sae, name)[position], getattr(alone.saes.groups[0], name)[0]), name
    assert torch.equal(together.last_fired(group)[position], alone.last_fired(0)[0])
    counts = [event["n_resampled"][ours] for event in resampled_together.events]
    assert counts == [event["n_resampled"][0] for event in resampled_alone.events]
    assert sum(sum(event["n_resampled"]) for event in resampled_together.events) > 0  # resampling happened
    assert not torch.equal(sae.W_dec[position], sae.initial_W_dec[position])  # it trained


def test_resume_mid_run_is_bitwise_the_uninterrupted_run_resampling_included(in_tmp, source):
    # Resampling every 16 steps (dead: no firing in 12); resumed at a resampling step (32: the checkpoint must hold
    # the resampled weights) and inside a window (40: when each latent last fired must carry over).
    args = ["fit", "--config", "sae_pentagon.yaml", f"--source.run={source}", "--trainer.max_steps=64",
            "--checkpoint.every_n_train_steps=8", "--checkpoint.save_top_k=-1", "--resampling.every_n_steps=16",
            "--resampling.window=12", "--instruments.sae_recovery.init_args.every_n_steps=20", *SMALL,
            "--model.optimizer=Adam", "--model.optimizer.lr=0.03"]  # λ = 3 at this rate: latents die within a window
    build_cli(args)
    checkpoints = in_tmp / "runs" / "sae_pentagon" / "version_0" / "checkpoints"
    straight = load_checkpoint(checkpoints / "last.ckpt")
    straight_report = json.loads((checkpoints.parent / "report.json").read_text())
    events = straight_report["sae"]["resampling"]["events"]
    assert [e["step"] for e in events] == [16, 32, 48] and all(sum(e["n_resampled"]) > 0 for e in events)
    for step in (32, 40):
        build_cli([*args, "--ckpt_path", str(checkpoints / f"epoch=0-step={step}.ckpt")])
        resumed = load_checkpoint(checkpoints / "last.ckpt")
        assert straight["global_step"] == resumed["global_step"] == 64
        assert straight["state_dict"].keys() == resumed["state_dict"].keys()
        for name, value in straight["state_dict"].items():
            assert torch.equal(value, resumed["state_dict"][name]), (step, name)
        for a, b in zip(straight["optimizer_states"][0]["state"].values(), resumed["optimizer_states"][0]["state"].values()):
            assert all(torch.equal(a[k], b[k]) for k in a), step
        report = json.loads((checkpoints.parent / "report.json").read_text())
        assert report["sae"]["resampling"] == straight_report["sae"]["resampling"]
        assert report["instances"] == straight_report["instances"]


def test_a_short_sae_pentagon_run_writes_the_metrics_and_figures(tmp_path, source):
    result = run_command("fit", "--config", "sae_pentagon.yaml", f"--source.run={source}", "--trainer.max_steps=60",
                         "--trainer.log_every_n_steps=10", "--resampling.every_n_steps=20", "--resampling.window=10",
                         "--instruments.sae_recovery.init_args.every_n_steps=20", *SMALL, "--model.seeds=[0, 1]", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "runs" / "sae_pentagon" / "version_0"
    report = json.loads((run / "report.json").read_text())
    rows = report["instances"]
    assert report["n_instances"] == len(rows) == 2 * 2 * 2  # source instances x coefficients x seeds
    for key in ("mmcs", "matched_cosine", "n_recovered", "l0", "true_l0", "dead_latents", "explained_variance", "l2_ratio", "decoder"):
        assert all(key in row for row in rows), key
    assert report["sae"]["true_l0"] == pytest.approx([0.25, 0.25])  # 5 features at p = 0.05
    assert {"sae_directions.png", "sae_frontier.png", "sae_recovery.png", "sae_resampling.png"} <= {p.name for p in (run / "report").iterdir()}
    events = EventAccumulator(str(run))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"sae_mmcs/sae_000", "sae_explained_variance/sae_007", "resampling/n_resampled", "train/loss"} <= set(tags)
    assert [e.step for e in events.Scalars("sae_l0/sae_003")] == [20, 40, 60]


def test_the_config_makes_its_source_once(in_tmp):
    made = in_tmp / "runs" / "made_source" / "version_0"
    args = ["fit", "--config", "sae_pentagon.yaml", f"--source.run={made}", "--trainer.max_steps=8", *SMALL,
            "--source.args=[--data.n_instances=1, --trainer.max_steps=50, --trainer.enable_progress_bar=false]"]
    cli = build_cli(args)
    assert (made / "checkpoints" / "last.ckpt").is_file() and cli.datamodule.source_step == 50
    assert cli.model.n_saes == 2 and (in_tmp / "runs" / "sae_pentagon" / "version_0" / "report.json").is_file()
    stamp = (made / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    build_cli(args)  # reads the source it made
    assert (made / "checkpoints" / "last.ckpt").stat().st_mtime_ns == stamp


def test_compare_lines_up_two_sae_runs(in_tmp, source):
    for coefficients in ("[0.1, 3.0]", "[0.2, 3.0]"):
        build_cli(["fit", "--config", "sae_pentagon.yaml", f"--source.run={source}", "--trainer.max_steps=8", *SMALL,
                   f"--model.sparsity_coefficient={coefficients}"])
    runs = sorted(str(p) for p in (in_tmp / "runs" / "sae_pentagon").iterdir())
    result = run_in_process("compare", *runs, "--figure", str(in_tmp / "comparison.png"), cwd=in_tmp)
    assert result.returncode == 0, result.stderr
    assert "recovered" in result.stdout and "sparsity_coefficient" in result.stdout


def _bad_inputs(source: Path) -> list[tuple[list[str], str]]:
    empty = source.parent.parent / "no_checkpoint" / "version_0"
    empty.mkdir(parents=True, exist_ok=True)
    (empty / "config.yaml").write_text("data: {n_instances: 1}\n")
    return [
        (["--source.run=runs/nowhere/version_0", "--source.config=null"], "source run 'runs/nowhere/version_0' not found"),
        ([f"--source.run={empty}", "--source.config=null"], "has no checkpoint"),
        ([f"--source.run={source}", "--model.d_latent=0"], "model.d_latent must be an integer >= 1, got 0"),
        ([f"--source.run={source}", "--model.sparsity_coefficient=[0.1, -0.5]"], "model.sparsity_coefficient must be a finite number >= 0, got -0.5"),
        ([f"--source.run={source}", "--model.architecture=topk", "--model.sparsity_coefficient=null", "--model.k=[1, 6]"],
         "model.k must be at most the dictionary size d_latent=5, got k=6"),
        ([f"--source.run={source}", "--data.activations=neurons"], "activations 'neurons' needs a variant with neurons"),
        # The source would be made first: bad settings are refused before it is.
        (["--source.run=runs/made/version_0", "--model.d_latent=[5, 0]"], "model.d_latent must be an integer >= 1, got 0"),
    ]


def test_bad_input_exits_2_with_one_line_and_no_run_directory(tmp_path, source):
    for args, message in _bad_inputs(source):
        result = run_in_process("fit", "--config", "sae_pentagon.yaml", *args, cwd=tmp_path)
        assert_bad_input(result.returncode, result.stderr, message, tmp_path)


def test_coverage_counts_split_features_and_mixing_latents():
    # Feature 0 has two latents at cosine >= 0.9 (split), latent 3 sits between features (mixing), latent 4 is dead.
    cosines = torch.tensor([[[0.95, 0.99, 0.1, 0.7, 0.99], [0.1, 0.2, 0.97, 0.7, 0.0]]])  # (1 SAE, 2 features, 5 latents)
    live = torch.tensor([[True, True, True, True, False]])
    n_split, n_mixed = coverage(cosines, torch.tensor([[True, True]]), live, threshold=0.9)
    assert n_split.tolist() == [1] and n_mixed.tolist() == [1]
    W = torch.tensor([[[1.0, 0.0, 0.1], [0.0, 1.0, 0.0]]])  # feature 2 not represented
    torch.testing.assert_close(represented_l0(torch.tensor([[0.1, 0.2, 0.4]]), W), torch.tensor([0.3]))
    signed = torch.cat([W, -W], dim=2)  # a feature counts where either sign is represented
    torch.testing.assert_close(represented_l0(torch.tensor([[0.1, 0.2, 0.4]]), signed), torch.tensor([0.3]))


class _PoisonAfter(pl.Callback):
    """Sets one SAE's encoder bias to NaN after ``step`` steps: the next loss of that SAE is NaN."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            with torch.no_grad():
                pl_module.saes.groups[1].b_enc[0].fill_(float("nan"))


def test_a_diverging_sae_stops_the_run_naming_the_step_and_the_sae(source):
    from lit_superposition.callbacks import SAENonFiniteLossStop
    from lit_superposition.errors import NonFiniteLossError

    module = LitSAE(steps_per_call=7, d_latent=[3, 5], sparsity_coefficient=0.1, seeds=[0])
    trainer = pl.Trainer(max_steps=40, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[_PoisonAfter(12), SAENonFiniteLossStop(check_every_n_steps=5)])
    with pytest.raises(NonFiniteLossError) as raised:
        trainer.fit(module, SourceActivations(str(source), instances=[0, 1], batch_size=4))
    bad = int(module.saes.index_1[0])  # the poisoned SAE's position among all
    assert str(raised.value).startswith(f"training diverged: non-finite loss (NaN or inf) at step 12 in SAE {bad} (of {module.n_saes})")
