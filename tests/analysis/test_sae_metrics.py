"""SAE metrics against hand-made dictionaries with known answers and independent references."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from lit_superposition.analysis.sae_metrics import (
    dead_latents,
    explained_variance,
    feature_cosines,
    feature_recovery,
    l0,
    l2_ratio,
    relative_reconstruction_bias,
)


def _polygon(n: int, radius: float = 1.0, offset_degrees: float = 0.0) -> torch.Tensor:
    """``(2, n)``: n directions on a regular polygon, the first at ``offset_degrees``."""
    angles = torch.deg2rad(torch.arange(n, dtype=torch.float64) * (360.0 / n) + offset_degrees)
    return radius * torch.stack([angles.cos(), angles.sin()])


def test_a_dictionary_of_the_true_features_recovers_every_represented_one():
    W = _polygon(5, radius=0.9)  # a pentagon source
    W[:, 3] *= 0.4 / 0.9  # feature 3 not represented (norm 0.4)
    features = W.unsqueeze(0).float()  # (1, 2, 5)
    W_dec = (W / W.norm(dim=0)).T.unsqueeze(0).float()[:, [4, 0, 2, 1, 3]]  # the same directions, shuffled
    recovery = feature_recovery(W_dec, features)
    assert recovery.n_represented.tolist() == [4] and recovery.n_recovered.tolist() == [4]
    torch.testing.assert_close(recovery.mmcs, torch.ones(1))
    torch.testing.assert_close(recovery.matched_cosine, torch.ones(1))
    assert recovery.matched_latent.tolist() == [[1, 3, 2, -1, 0]] and math.isnan(recovery.max_cosine[0, 3])


@pytest.mark.parametrize("rotation", [10.0, 30.0, 50.0])
def test_a_rotated_dictionary_scores_the_cosine_of_the_rotation(rotation):
    # Pentagon features at 0°, 72°, …; the dictionary is the pentagon turned by φ. Each feature's nearest
    # latent is min(φ, 72° − φ) away, and a one-to-one matching can reach every feature at that angle.
    features = _polygon(5).unsqueeze(0).float()
    W_dec = _polygon(5, offset_degrees=rotation).T.unsqueeze(0).float()
    nearest = math.cos(math.radians(min(rotation, 72.0 - rotation)))
    recovery = feature_recovery(W_dec, features, threshold=0.95)
    torch.testing.assert_close(recovery.mmcs, torch.tensor([nearest]))
    torch.testing.assert_close(recovery.matched_cosine, torch.tensor([nearest]))
    assert recovery.n_recovered.item() == (5 if nearest >= 0.95 else 0)
    # An antipodal dictionary (every latent pointing at −W_f) recovers nothing: cosines are signed.
    assert feature_recovery(-features.transpose(1, 2), features).n_recovered.item() == 0


def _brute_force(cosines: np.ndarray, rows: list[int], columns: list[int]) -> float:
    """The best total cosine over all one-to-one matchings of ``rows`` into ``columns`` (or the reverse)."""
    if len(rows) <= len(columns):
        return max(sum(cosines[r, c] for r, c in zip(rows, chosen)) for chosen in itertools.permutations(columns, len(rows)))
    return max(sum(cosines[r, c] for r, c in zip(chosen, columns)) for chosen in itertools.permutations(rows, len(columns)))


def test_the_hungarian_matching_is_the_best_one_to_one_matching():
    generator = torch.Generator().manual_seed(0)
    for n_features, d_latent in ((4, 3), (4, 4), (4, 6), (5, 5), (3, 7)):
        features = torch.randn(6, 3, n_features, generator=generator)
        features[0, :, 1] *= 0.1  # an unrepresented feature
        W_dec = torch.randn(6, d_latent, 3, generator=generator)
        mask = torch.rand(6, d_latent, generator=generator) > 0.25  # e.g. live latents only
        recovery = feature_recovery(W_dec, features, latent_mask=mask)
        cosines = torch.nn.functional.cosine_similarity(features.transpose(1, 2).unsqueeze(2), W_dec.unsqueeze(1), dim=-1)
        for s in range(6):
            rows = [f for f in range(n_features) if features[s, :, f].norm() > 0.5]
            columns = [latent for latent in range(d_latent) if mask[s, latent]]
            best = _brute_force(cosines[s].double().numpy(), rows, columns) if rows and columns else 0.0
            assert recovery.matched_cosine[s].item() == pytest.approx(best / len(rows), abs=1e-5)
            if columns:
                expected_max = cosines[s][rows][:, columns].amax(dim=1).mean().item()
                assert recovery.mmcs[s].item() == pytest.approx(expected_max, abs=1e-5)
            matched = recovery.matched_latent[s]
            used = matched[matched >= 0].tolist()
            assert len(used) == len(set(used)) == min(len(rows), len(columns)) and set(used) <= set(columns)


def test_feature_cosines_are_the_plain_cosines():
    generator = torch.Generator().manual_seed(1)
    W_dec, features = torch.randn(2, 4, 3, generator=generator), torch.randn(2, 3, 5, generator=generator)
    d, w = W_dec.numpy(), features.numpy()
    expected = torch.tensor(
        [[[float(np.dot(w[s, :, f], d[s, k]) / (np.linalg.norm(w[s, :, f]) * np.linalg.norm(d[s, k]))) for k in range(4)]
          for f in range(5)] for s in range(2)]
    )
    torch.testing.assert_close(feature_cosines(W_dec, features), expected)


def test_l0_and_dead_latents_count_what_is_nonzero():
    latents = torch.zeros(2, 4, 3)  # (n_saes, batch, d_latent)
    latents[0, 0, 0] = 1.0
    latents[0, 1, [0, 2]] = 0.5
    latents[1, :, 1] = 2.0
    assert l0(latents).tolist() == [0.75, 1.0]
    assert dead_latents(latents).tolist() == [[False, True, False], [True, False, True]]
    # The true L0 of sparse data: Σ_f p_f in expectation.
    generator = torch.Generator().manual_seed(2)
    p = torch.tensor([0.05, 0.1, 0.2, 0.3])
    x = torch.where(torch.rand(1, 200_000, 4, generator=generator) < p, 1 - torch.rand(1, 200_000, 4, generator=generator), 0.0)
    assert l0(x).item() == pytest.approx(p.sum().item(), abs=0.01)


def test_explained_variance_shrinkage_and_bias_against_plain_formulas():
    generator = torch.Generator().manual_seed(3)
    h = torch.randn(3, 50, 4, generator=generator) + torch.tensor([1.0, -2.0, 0.0, 3.0])
    h[:, :10] = 0.0  # inputs with no feature active
    noisy = h + 0.3 * torch.randn(3, 50, 4, generator=generator)
    hn, nn_ = h.double().numpy(), noisy.double().numpy()
    for s in range(3):
        residual = ((hn[s] - nn_[s]) ** 2).sum()
        total = ((hn[s] - hn[s].mean(axis=0)) ** 2).sum()
        assert explained_variance(h, noisy)[s].item() == pytest.approx(1 - residual / total, rel=1e-5)
        nonzero = np.linalg.norm(hn[s], axis=1) > 1e-4
        ratio = (np.linalg.norm(nn_[s], axis=1)[nonzero] / np.linalg.norm(hn[s], axis=1)[nonzero]).mean()
        assert l2_ratio(h, noisy)[s].item() == pytest.approx(ratio, rel=1e-5)
        gamma = (nn_[s] ** 2).sum() / (nn_[s] * hn[s]).sum()
        assert relative_reconstruction_bias(h, noisy)[s].item() == pytest.approx(gamma, rel=1e-5)
    torch.testing.assert_close(explained_variance(h, h), torch.ones(3))
    torch.testing.assert_close(explained_variance(h, h.mean(dim=1, keepdim=True).expand_as(h)), torch.zeros(3), atol=1e-6, rtol=0)
    torch.testing.assert_close(l2_ratio(h, 0.7 * h), torch.full((3,), 0.7))  # shrinkage by 0.7, zeros left out
    torch.testing.assert_close(relative_reconstruction_bias(h, 0.7 * h), torch.full((3,), 0.7))
