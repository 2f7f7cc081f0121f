"""GeometryReport: report.json keys, evaluation loss, repeats, extensions, the printed table."""

from __future__ import annotations

import json
from pathlib import Path

from fractions import Fraction

import pytest
import pytorch_lightning as pl
import torch
from rich.table import Table

from lit_superposition.analysis.geometry import FRACTION_TOLERANCE
from lit_superposition.callbacks import GeometryReport
from lit_superposition.data import EVALUATION_STEP
from lit_superposition.errors import ConfigError
from lit_superposition.data import SparseFeatureDataModule
from lit_superposition.module import LitToyModel
from tests.callbacks.conftest import make_trainer, small_setup

KEYS = {"index", "init_seed", "loss", "represented", "n_directions", "geometry", "feature_norms", "dimensionality"}


def read_report(trainer: pl.Trainer) -> dict:
    return json.loads((Path(trainer.log_dir) / "report.json").read_text())


def test_report_has_the_documented_keys_and_values(tmp_path, capsys):
    module, data = small_setup(n_instances=3, n_features=5)
    trainer, _ = make_trainer(tmp_path, [GeometryReport(n_eval_batches=2)], max_steps=10)
    trainer.fit(module, data)
    report = read_report(trainer)
    assert report["step"] == 10 and report["d_hidden"] == 2 and len(report["instances"]) == 3
    W = module.model.W.detach()
    with torch.no_grad():
        expected = sum(module.objective(data.make_batch(EVALUATION_STEP + k))[1] for k in range(2)) / 2
    for i, entry in enumerate(report["instances"]):
        assert KEYS <= set(entry) and "setting" not in entry
        assert entry["index"] == i and entry["init_seed"] == i
        assert entry["loss"] == pytest.approx(float(expected[i].mean()), rel=1e-5)
        assert entry["feature_norms"] == pytest.approx(W[i].norm(dim=0).tolist())
        assert entry["represented"] == [f for f in range(5) if W[i, :, f].norm() > 0.5]
        assert isinstance(entry["geometry"], str) and isinstance(entry["regular"], bool)
    assert "geometry at step 10" in capsys.readouterr().out


def test_higher_dimensions_report_dimensionality_labels(tmp_path):
    module, data = small_setup(n_instances=2, n_features=4, d_hidden=3)
    trainer, _ = make_trainer(tmp_path, [GeometryReport(print_table=False)], max_steps=3)
    trainer.fit(module, data)
    entry = read_report(trainer)["instances"][0]
    assert len(entry["geometry"]) == 4
    for label, D in zip(entry["geometry"], entry["dimensionality"]):
        # a fraction within the tolerance of D, or D itself when it is near no fraction
        value = float(Fraction(label)) if "/" in label or label in ("0", "1") else float(label)
        assert abs(value - D) <= (FRACTION_TOLERANCE if "/" in label or label in ("0", "1") else 0.005), (label, D)
    assert "regular" not in entry


def test_repeats_mark_the_best_repeat_of_each_setting(tmp_path):
    module, data = small_setup(n_instances=6, n_features=5)
    module.repeats = 3  # two settings of three repeats
    trainer, _ = make_trainer(tmp_path, [GeometryReport(print_table=False)], max_steps=5)
    trainer.fit(module, data)
    rows = read_report(trainer)["instances"]
    assert [(r["setting"], r["repeat"]) for r in rows] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    for setting in (0, 1):
        group = [r for r in rows if r["setting"] == setting]
        # the exact expected loss decides (the 2-D ReLU model has one); the evaluation batches' loss is noisier
        assert [r["best_repeat"] for r in group] == [r["expected_loss"] == min(g["expected_loss"] for g in group) for r in group]
        assert sum(r["best_repeat"] for r in group) == 1


class Extension(pl.Callback):
    def extend_report(self, report, trainer, pl_module):
        report["patching"] = {"donor": 7}
        table = Table(title="extension")
        table.add_column("donor")
        table.add_row("7")
        return table


def test_other_callbacks_extend_the_report_and_print_their_table(tmp_path, capsys):
    module, data = small_setup()
    trainer, _ = make_trainer(tmp_path, [GeometryReport(), Extension()], max_steps=2)
    trainer.fit(module, data)
    assert read_report(trainer)["patching"] == {"donor": 7}
    out = capsys.readouterr().out
    assert out.index("geometry at step 2") < out.index("extension")


def test_bad_arguments_raise_config_error():
    with pytest.raises(ConfigError, match="n_eval_batches"):
        GeometryReport(n_eval_batches=-1)
    with pytest.raises(ConfigError, match="angle_tolerance"):
        GeometryReport(angle_tolerance=120)


def test_the_computation_variant_reports_its_computed_features_and_sign_halves(tmp_path, capsys):
    module = LitToyModel(n_instances=2, n_features=6, d_hidden=4, variant="computation", init_seeds=0, target="abs")
    data = SparseFeatureDataModule(n_instances=2, n_features=6, batch_size=64, feature_probability=0.3, values="signed", target="abs")
    with torch.no_grad():  # instance 0 computes feature 0 for both signs (neurons 0, 1) and features 1, 2 for one each
        model = module.model
        model.W[0].zero_(), model.W_out[0].zero_()
        for neuron, feature, sign in ((0, 0, 1.0), (1, 0, -1.0), (2, 1, 1.0), (3, 2, -1.0)):
            model.W[0, neuron, feature], model.W_out[0, feature, neuron] = sign, 1.0
    trainer, _ = make_trainer(tmp_path, [GeometryReport(n_eval_batches=1)], max_steps=2)
    trainer.fit(module, data)
    W, W_out = model.W.detach(), model.W_out.detach()  # (2, d_hidden, n_features), (2, n_features, d_hidden)
    report = read_report(trainer)["instances"]
    assert (report[0]["computed"], report[0]["computed_signs"]) == ([0, 1, 2], 4)
    # Feature f's gain for a lone +1 and a lone -1 input, through the hidden ReLU; computed above 0.5.
    for i, entry in enumerate(report):
        gains = torch.stack([torch.stack([W_out[i, f] @ (sign * W[i, :, f]).relu() for f in range(6)]) for sign in (1, -1)])
        assert entry["computed"] == [f for f in range(6) if (gains[:, f] > 0.5).any()]
        assert entry["computed_signs"] == int((gains > 0.5).sum())
    printed = capsys.readouterr().out
    header = next(line for line in printed.splitlines() if "computed" in line and "┃" in line)
    row = next(line for line in printed.splitlines() if line.startswith("│") and line.split("│")[1].strip() == "0")
    cells = dict(zip([c.strip() for c in header.split("┃")], [c.strip() for c in row.split("│")]))
    assert (cells["computed"], cells["both signs"]) == ("3", "1")
