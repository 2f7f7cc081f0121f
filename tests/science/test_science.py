"""The science holds: the bundled pentagon setting learns a regular pentagon."""

from __future__ import annotations

import math

import pytest
import torch

from lit_superposition.cli import build_cli


def adjacent_angles(W: torch.Tensor) -> torch.Tensor:
    """Angles in degrees between neighbouring feature directions of one 2-D instance ``(2, n_features)``."""
    angles = torch.sort(torch.atan2(W[1], W[0])).values
    return torch.rad2deg(torch.diff(torch.cat([angles, angles[:1] + 2 * math.pi])))


@pytest.mark.slow
def test_pentagon_config_learns_a_regular_pentagon(in_tmp):
    # The bundled config at a shortened schedule: 4000 of its 10,000 steps already settle the geometry.
    cli = build_cli(["fit", "--config", "pentagon.yaml", "--trainer.max_steps=4000", "--trainer.enable_progress_bar=false"])
    module, data = cli.model, cli.datamodule
    with torch.no_grad():
        eval_batches = [data.make_batch(step=10**9 + k) for k in range(10)]  # held-out steps
        loss = torch.stack([module.objective(x)[1].mean(dim=1) for x in eval_batches]).mean(dim=0)
    best = int(loss.argmin())
    W = module.model.W[best].detach()  # (2, 5)
    norms = W.norm(dim=0)
    assert (norms > 0.8).all(), f"not all 5 features represented: norms {norms}"
    angles = adjacent_angles(W)
    assert torch.allclose(angles, torch.full((5,), 72.0), atol=3.0), f"not a regular pentagon: {angles}"
    assert norms.max() / norms.min() < 1.05
