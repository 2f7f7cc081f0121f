"""FeatureGeometry logs the geometry of the chosen instances, starting from the initialization."""

from __future__ import annotations

import pytest

from lit_superposition.analysis import geometry
from lit_superposition.callbacks import FeatureGeometry
from tests.callbacks.conftest import make_trainer, small_setup


def test_step_zero_is_the_initial_geometry_and_later_steps_follow_the_interval(tmp_path):
    module, data = small_setup(n_instances=3, n_features=5)
    trainer, recorder = make_trainer(tmp_path, [FeatureGeometry(every_n_steps=5, instances=[2])], max_steps=10)
    W0 = module.model.initial_state()["W"][2:3]
    trainer.fit(module, data)
    assert sorted(recorder.metrics["feature_norm/instance_002/feature_00"]) == [0, 5, 10]
    for f in range(5):
        assert recorder.metrics[f"feature_norm/instance_002/feature_{f:02d}"][0] == pytest.approx(float(geometry.feature_norms(W0)[0, f]))
        assert recorder.metrics[f"dimensionality/instance_002/feature_{f:02d}"][0] == pytest.approx(float(geometry.dimensionality(W0)[0, f]), abs=1e-6)
        assert recorder.metrics[f"interference/instance_002/feature_{f:02d}"][0] == pytest.approx(float(geometry.interference(W0)[0, f]), abs=1e-6)
    W = module.model.W.detach()[2:3]
    assert recorder.metrics["frobenius_sq/instance_002"][10] == pytest.approx(float(geometry.frobenius_sq(W)[0]), rel=1e-5)
    assert recorder.metrics["total_norm/instance_002"][10] == pytest.approx(float(geometry.frobenius_sq(W)[0]) ** 0.5, rel=1e-5)
    assert recorder.metrics["dimensions_per_feature/instance_002"][10] == pytest.approx(float(geometry.dimensions_per_feature(W)[0]), rel=1e-5)
    assert not any("instance_000" in tag for tag in recorder.metrics if tag.startswith("feature_norm"))
