"""Instance sharding: the split, the gather, and real two-process gloo runs against one process."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from lit_superposition.strategies import InstanceShards
from tests.conftest import load_checkpoint, run_command, run_in_process, scalars

QUIET = ["--trainer.enable_progress_bar=false", "--report_page=false"]
# Short, but every instrument measures (pentagon.yaml has the defaults), within calls of 8 steps cut by
# the checkpoints at 20 and by the measurements every 5 and 10 steps.
SHORT = ["--data.batch_size=64", "--trainer.log_every_n_steps=5", "--model.steps_per_call=8",
         "--checkpoint.every_n_train_steps=20", "--checkpoint.save_top_k=-1",
         "--instruments.feature_grad_norms.every_n_steps=10", "--instruments.feature_losses.every_n_steps=10"]
SHARDED = ["--trainer.strategy=instance_sharded", "--trainer.devices=2", "--trainer.accelerator=cpu"]


@pytest.mark.parametrize(("n_instances", "world_size", "sizes"), [(8, 2, [4, 4]), (10, 4, [3, 3, 2, 2]), (3, 3, [1, 1, 1]), (5, 1, [5])])
def test_shards_are_contiguous_and_cover_every_instance_once(n_instances, world_size, sizes):
    shards = [InstanceShards(n_instances, world_size, rank) for rank in range(world_size)]
    assert shards[0].sizes == sizes
    covered = [i for s in shards for i in range(n_instances)[s.local]]
    assert covered == list(range(n_instances))


def test_the_gather_joins_uneven_slices_in_instance_order():
    n_instances, world_size = 10, 4
    full = [torch.randn(n_instances, 2, 3), torch.randn(n_instances, 5)]
    shards = [InstanceShards(n_instances, world_size, rank) for rank in range(world_size)]
    buffers = {}

    def recording(rank):  # an all_gather that keeps what the rank contributes (its padded buffer)
        return lambda flat: buffers.setdefault(rank, flat).expand(world_size, -1)

    for s in shards:
        s.gather([t[s.local] for t in full], recording(s.rank))
    collected = torch.stack([buffers[rank] for rank in range(world_size)])  # what all_gather returns on every rank
    for s in shards:
        gathered = s.gather([t[s.local] for t in full], lambda flat: collected)
        assert all(torch.equal(expected, got) for expected, got in zip(full, gathered))


def test_one_rank_per_instance_at_most():
    with pytest.raises(ValueError, match="3 ranks cannot share 2 instances"):
        InstanceShards(2, 3, 0)


@pytest.mark.parametrize(("args", "message"), [
    (["--data.n_instances=2", "--trainer.devices=3"],
     "trainer.strategy=instance_sharded over 3 processes needs at least one instance each, got 2 instances: use at most 2 devices, or more instances"),
])
def test_bad_sharded_settings_exit_2_with_one_line_and_write_nothing(tmp_path, args, message):
    result = run_in_process("fit", "--config", "pentagon.yaml", "--trainer.strategy=instance_sharded", "--trainer.accelerator=cpu", *args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"lit-superposition: error: {message}"]
    assert not (tmp_path / "runs").exists()


def _fit(tmp_path: Path, name: str, *args: str) -> Path:
    """``lit-superposition fit`` into ``tmp_path/name``; returns the run directory. One process runs
    through the command's entry point in this process (seconds of imports fewer), several through the
    installed command (Lightning's launcher starts the other ranks as copies of it)."""
    run = run_command if any(arg.startswith("--trainer.strategy") for arg in args) else run_in_process
    result = run("fit", *args, *QUIET, f"--trainer.logger.init_args.save_dir={name}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = (tmp_path / name).glob("*/version_0")
    return run


def _assert_same_training_state(a: dict, b: dict) -> None:
    """Weights, initial weights and every optimizer moment, bitwise."""
    assert a["global_step"] == b["global_step"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for name, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][name]), name
    (moments_a,), (moments_b,) = a["optimizer_states"], b["optimizer_states"]
    assert moments_a["state"].keys() == moments_b["state"].keys()
    for index, state in moments_a["state"].items():
        for key, value in state.items():
            assert torch.equal(value, moments_b["state"][index][key]), (index, key)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """40 steps of pentagon.yaml's 8 instances, one process and sharded over two, in both data modes."""
    tmp_path = tmp_path_factory.mktemp("sharding")
    found = {"tmp": tmp_path}
    for mode in ("shared", "independent"):
        args = ["--config", "pentagon.yaml", *SHORT, "--trainer.max_steps=40", f"--data.instance_data={mode}"]
        found[f"single {mode}"] = _fit(tmp_path, f"single_{mode}", *args)
        found[f"sharded {mode}"] = _fit(tmp_path, f"sharded_{mode}", *args, *SHARDED)
    return found


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["shared", "independent"])
def test_two_gloo_processes_train_every_instance_bitwise_as_one_process(runs, mode):
    single, sharded = runs[f"single {mode}"], runs[f"sharded {mode}"]
    _assert_same_training_state(load_checkpoint(single / "checkpoints" / "last.ckpt"), load_checkpoint(sharded / "checkpoints" / "last.ckpt"))
    # Every instrument saw every instance: each TensorBoard curve, point for point.
    expected = scalars(single)
    assert any(tag.startswith("grad_norm_W/instance_007") for tag in expected)
    assert scalars(sharded) == expected


@pytest.mark.slow
def test_a_sharded_run_writes_every_instance_once(runs):
    single, sharded = runs["single shared"], runs["sharded shared"]
    report = json.loads((sharded / "report.json").read_text())
    assert [entry["index"] for entry in report["instances"]] == list(range(8))
    assert report == json.loads((single / "report.json").read_text())
    snapshots = torch.load(sharded / "snapshots.pt", weights_only=True)
    reference = torch.load(single / "snapshots.pt", weights_only=True)
    assert snapshots["W"].shape[1] == 8 and snapshots["init_seeds"].tolist() == list(range(8))
    assert torch.equal(snapshots["W"], reference["W"]) and torch.equal(snapshots["b"], reference["b"])
    # Only rank 0 writes: one event file, one run directory.
    assert len(list(sharded.glob("events.out.tfevents.*"))) == 1
    assert [p.name for p in sharded.parent.iterdir()] == ["version_0"]


@pytest.mark.slow
@pytest.mark.parametrize(("first", "then"), [("sharded", "single"), ("single", "sharded")])
def test_a_checkpoint_resumes_across_the_process_count(runs, first, then):
    tmp_path = runs["tmp"]
    # A copy outside the run: the resumed run writes a directory of its own.
    start = tmp_path / f"from_{first}" / "step20.ckpt"
    start.parent.mkdir()
    shutil.copy(runs[f"{first} shared"] / "checkpoints" / "epoch=0-step=20.ckpt", start)
    resumed = _fit(
        tmp_path, f"{first}_then_{then}", "--config", "pentagon.yaml", *SHORT, "--trainer.max_steps=40",
        *(SHARDED if then == "sharded" else []), "--ckpt_path", str(start),
    )
    uninterrupted = load_checkpoint(runs["single shared"] / "checkpoints" / "last.ckpt")
    _assert_same_training_state(load_checkpoint(resumed / "checkpoints" / "last.ckpt"), uninterrupted)


@pytest.mark.slow
@pytest.mark.parametrize(("config", "args"), [
    # 9 instances on 2 ranks (5 + 4): the second patch triple, instances 3 to 5, spans both.
    ("hexagon_patch.yaml", []),
    # 3 x 3 points of 3 repeats on 2 ranks (14 + 13): point 4's repeats, instances 12 to 14, span both.
    ("phase_diagram_2x1.yaml", ["--data.n_instances=27", "--data.repeats=3", "--data.grid.importance.points=3", "--data.grid.probability.points=3"]),
])
def test_patch_triples_and_repeat_groups_may_span_ranks(tmp_path, config, args):
    common = ["--config", config, *args, "--trainer.max_steps=30", "--data.batch_size=64", "--model.steps_per_call=8"]
    single_run = _fit(tmp_path, "single", *common)
    sharded = _fit(tmp_path, "sharded", *common, *SHARDED)
    _assert_same_training_state(load_checkpoint(single_run / "checkpoints" / "last.ckpt"), load_checkpoint(sharded / "checkpoints" / "last.ckpt"))
    # The report groups them (roles of a patch run; best repeat per point) from every instance.
    assert json.loads((sharded / "report.json").read_text()) == json.loads((single_run / "report.json").read_text())
