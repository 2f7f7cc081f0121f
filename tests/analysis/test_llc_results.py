"""A run's LLC sample: its finite training sets (each instance its own) or its stream's law; records in strict JSON."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from lit_superposition.analysis.llc import LLCSettings, estimate_llc
from lit_superposition.analysis.llc_results import draw_samples, estimate_run
from lit_superposition.data import SparseFeatureDataModule
from lit_superposition.errors import ConfigError
from lit_superposition.models import ReLUOutputModel

SETTINGS = LLCSettings(n_chains=3, n_draws=30, n_burnin=10, batch_size=64, seed=2)


def test_finite_sets_are_measured_each_on_its_own_set_as_if_alone():
    data = SparseFeatureDataModule(3, 5, 0.2, dataset_size=[40, 40, 90], instance_data="independent")
    model = ReLUOutputModel(3, 5, 2, init_seeds=3)
    importance = torch.tensor([1.0, 0.9, 0.8, 0.7, 0.6]).expand(3, 5)
    samples = draw_samples(data, None, sample_seed=0)
    assert [(s.instances, tuple(s.points.shape)) for s in samples] == [([0, 1], (2, 40, 5)), ([2], (1, 90, 5))]
    result = estimate_run(model, samples, SETTINGS, step=7, importance=importance)
    alone = ReLUOutputModel(1, 5, 2)
    with torch.no_grad():
        alone.W.copy_(model.W[2:]), alone.b.copy_(model.b[2:])
    points = data.training_sets().points(2).unsqueeze(0)  # (1, 90, 5): the set training used
    expected = estimate_llc(alone, points, replace(SETTINGS, n=90), importance[2:], instance_keys=[2])
    record = json.loads(json.dumps(result.record(2), allow_nan=False))
    assert record["per_chain"] == expected.per_chain[0].tolist() and record["settings"]["n"] == 90
    assert record["sample"] == "training set" and record["step"] == 7 and result.record(0)["settings"]["batch_size"] == 40
    assert result.traces()[0].shape == (3, 3, 30)


def test_the_stream_sample_follows_the_run_s_law_from_its_own_seed():
    data = SparseFeatureDataModule(4, 6, [0.1, 0.1, 0.1, 0.1, 0.1, 0.1], instance_data="independent")
    (sample,) = draw_samples(data, 5000, sample_seed=11)
    assert sample.points.shape == (4, 5000, 6) and not torch.equal(sample.points[0], sample.points[1])
    active = (sample.points > 0).double().mean()
    assert abs(float(active) - 0.1) < 0.005  # p = 0.1, 120 000 draws: 5 sigma is 0.0043
    again = draw_samples(data, 5000, sample_seed=11)[0].points
    assert torch.equal(again, sample.points) and not torch.equal(draw_samples(data, 5000, 12)[0].points, sample.points)
    with pytest.raises(ConfigError, match="leave it unset"):
        draw_samples(SparseFeatureDataModule(2, 6, 0.1, dataset_size=50), 5000, 0)
