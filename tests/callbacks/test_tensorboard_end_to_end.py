"""End to end: the CLI with a bundled config writes the tags, figures and layout TensorBoard shows."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2

from lit_superposition.cli import build_cli

LAYOUT_TAG = "custom_scalars__config__"


def events(run: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(run), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def layout(accumulator: EventAccumulator) -> dict[str, dict[str, list[str]]]:
    proto = layout_pb2.Layout()
    proto.ParseFromString(accumulator.Tensors(LAYOUT_TAG)[-1].tensor_proto.string_val[0])
    return {
        category.title: {chart.title: list(chart.multiline.tag) for chart in category.chart}
        for category in proto.category
    }


def test_hexagon_config_writes_scalars_figures_layout_report_and_snapshots(in_tmp):
    cli = build_cli(["fit", "--config", "hexagon_scan", "--data.n_instances=16", "--trainer.max_steps=400"])
    run = Path(cli.trainer.log_dir)
    accumulator = events(run)
    scalars = set(accumulator.Tags()["scalars"])
    for quantity in ("grad_norm_W", "grad_norm_b", "feature_loss", "feature_norm", "dimensionality", "interference"):
        assert {f"{quantity}/instance_{i:03d}/feature_{f:02d}" for i in range(8) for f in range(6)} <= scalars
        assert not any(tag.startswith(f"{quantity}/instance_008") for tag in scalars)  # first 8 instances only
    assert {"total_norm/instance_000", "frobenius_sq/instance_007", "dimensions_per_feature/instance_003"} <= scalars
    assert [e.step for e in accumulator.Scalars("grad_norm_W/instance_000/feature_00")] == [200, 400]
    assert [e.step for e in accumulator.Scalars("feature_norm/instance_000/feature_00")] == [0, 200, 400]
    images = accumulator.Tags()["images"]
    assert "geometry/polygons" in images and "geometry/dimensionality_sweep" not in images  # p is not swept
    assert [e.step for e in accumulator.Images("geometry/polygons")] == [0, 400]

    charts = layout(accumulator)
    # Each run's categories are its own: several runs under one --logdir do not merge.
    category = charts["hexagon_scan/version_0 · instance 003 (init seed 3)"]
    assert category["grad norm ‖∂L/∂W_f‖"] == [r"^grad_norm_W/instance_003/feature_\d+$"]
    assert set(category) == {"grad norm ‖∂L/∂W_f‖", "grad norm |∂L/∂b_f|", "loss per feature",
                             "feature norm ‖W_f‖", "dimensionality D_f", "interference"}
    assert "total norm ‖W‖_F" in charts["hexagon_scan/version_0 · geometry (per instance)"]
    assert len([c for c in charts if " · instance " in c]) == 8
    assert all(c.startswith("hexagon_scan/version_0 · ") for c in charts)

    report = json.loads((run / "report.json").read_text())
    assert len(report["instances"]) == 16
    for entry in report["instances"]:
        assert {"index", "init_seed", "loss", "represented", "n_directions", "geometry", "feature_norms",
                "dimensionality"} <= set(entry)
    snapshots = torch.load(run / "snapshots.pt", weights_only=True)
    assert snapshots["step"][0] == 0 and snapshots["step"][-1] == 400
    torch.testing.assert_close(snapshots["W"][0], cli.model.model.initial_state()["W"], rtol=0, atol=0)


def test_probability_sweep_in_three_dimensions_draws_wtw_and_the_dimensionality_sweep(in_tmp):
    cli = build_cli(["fit", "--config", "tms_intro", "--trainer.max_steps=10", "--model.d_hidden=3",
                     "--trainer.log_every_n_steps=5"])
    accumulator = events(Path(cli.trainer.log_dir))
    images = set(accumulator.Tags()["images"])
    assert {"geometry/WtW", "geometry/dimensionality_sweep"} <= images and "geometry/polygons" not in images
    report = json.loads((Path(cli.trainer.log_dir) / "report.json").read_text())
    assert isinstance(report["instances"][0]["geometry"], list)  # dimensionality labels per feature
