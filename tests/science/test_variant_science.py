"""The variants' science on the learned weights, through the CLI at shortened schedules."""

from __future__ import annotations

import math

import pytest
import torch

from lit_superposition.analysis import geometry, neurons
from lit_superposition.cli import build_cli

QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def _final_weights(config: str, steps: int) -> torch.Tensor:
    build_cli(["fit", "--config", config, *QUIET, f"--trainer.max_steps={steps}"])
    name = config.removesuffix(".yaml")
    state = torch.load(f"runs/{name}/version_0/checkpoints/last.ckpt", weights_only=False)["state_dict"]
    return state["model.W"]  # (n_instances, d_hidden, n_features)


@pytest.mark.slow
def test_linear_control_keeps_exactly_the_two_most_important_features_orthogonal(in_tmp):
    W = _final_weights("linear_control.yaml", 6000)
    norms = geometry.feature_norms(W)  # (n_instances, n_features)
    assert (geometry.represented(W) == torch.tensor([True, True, False, False, False])).all(), norms
    cosine = (W[:, :, 0] * W[:, :, 1]).sum(dim=1) / (norms[:, 0] * norms[:, 1])
    angles = torch.rad2deg(torch.arccos(cosine))
    assert ((angles - 90).abs() <= 5).all(), angles


@pytest.mark.slow
def test_privileged_basis_goes_from_monosemantic_to_polysemantic_neurons(in_tmp):
    W = _final_weights("privileged_basis.yaml", 7000)
    share = neurons.top_feature_share(W)  # (n_instances, d_hidden)
    densest, sparsest = 0, W.shape[0] - 1  # p = 0.75 and p = 0.01
    assert (share[densest] > 0.9).all(), share[densest]
    d_hidden = W.shape[1]
    assert int(geometry.represented(W)[sparsest].sum()) > d_hidden, geometry.feature_norms(W)[sparsest]
    assert not math.isnan(float(share.sum()))
