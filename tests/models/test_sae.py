"""The SAE variants: formulas against per-SAE references, independence of the SAEs, the decoder norm, resampling."""

from __future__ import annotations

import math

import einops
import pytest
import torch
from torch import Tensor

from lit_superposition.errors import ConfigError
from lit_superposition.models import SAE_VARIANTS, JumpReLUSAE, ReLUOutputModel, ReLUSAE, SAEGroups, TopKSAE
from lit_superposition.models.sae import resample_dead_latents, resample_seeds, reset_optimizer_state
from lit_superposition.models.sae.base import _Decode, _Encode, aligned_bmm

#: Per-SAE settings by architecture, for SAEs at positions 0, 1, 2, … (cycled).
SETTINGS = {
    "relu": [{"sparsity_coefficient": c} for c in (0.05, 0.2, 0.0, 0.1, 0.3, 0.02)],
    "topk": [{"k": k} for k in (1, 2, 3, 1, 4, 2)],
    "jumprelu": [{"sparsity_coefficient": c} for c in (0.05, 0.2, 0.0, 0.1, 0.3, 0.02)],
}


def _build(architecture: str, seeds: list[int], settings: list[dict], d_in: int = 2, d_latent: int = 5):
    per_sae = {name: [s[name] for s in settings] for name in settings[0]}
    return SAE_VARIANTS[architecture](len(seeds), d_in, d_latent, init_seeds=seeds, **per_sae)


def _train(sae, h: Tensor, steps: int) -> None:
    """The training loop the module will run: backward, parallel gradient out, AdamW, renormalize."""
    optimizer = torch.optim.AdamW(sae.parameters(), lr=1e-2)
    for step in range(steps):
        optimizer.zero_grad()
        sae(h[step]).loss.sum().backward()
        sae.remove_parallel_gradient()
        optimizer.step()
        sae.normalize_decoder()


def _pentagon(n: int = 5, radius: float = 1.0) -> Tensor:
    """``(2, n)``: n features on a regular polygon."""
    angles = torch.arange(n, dtype=torch.float64) * (2 * math.pi / n)
    return (radius * torch.stack([angles.cos(), angles.sin()])).float()


@pytest.mark.parametrize("architecture", list(SAE_VARIANTS))
@pytest.mark.parametrize(("d_in", "d_latent"), [(2, 5), (3, 7)])
def test_an_sae_trains_bitwise_the_same_whatever_shares_its_tensor(architecture, d_in, d_latent):
    # SAE "ours" (seed 7, settings[3]) alone, second of three and fifth of six, the others with other
    # seeds and settings; each SAE reads its own rows of h.
    torch.manual_seed(0)
    steps, batch = 6, 300  # 300 · 5 latents: outputs that do not fill whole cache lines
    h = torch.randn(steps, 6, batch, d_in)  # rows: the SAEs of the six-SAE tensor
    ours = SETTINGS[architecture][3]
    trained = []
    for seeds, rows, position in (([7], [4], 0), ([1, 7, 2], [0, 4, 1], 1), ([1, 2, 3, 4, 7, 5], [0, 1, 2, 3, 4, 5], 4)):
        settings = [SETTINGS[architecture][r] if s != 7 else ours for s, r in zip(seeds, rows)]
        sae = _build(architecture, seeds, settings, d_in, d_latent)
        _train(sae, h[:, rows], steps)
        trained.append({name: getattr(sae, name).detach()[position] for name in sae.parameter_names})
    assert not torch.equal(trained[0]["W_enc"], _build(architecture, [7], [ours], d_in, d_latent).W_enc[0])  # it trained
    for other in trained[1:]:
        for name, value in trained[0].items():
            assert torch.equal(value, other[name]), name


def test_aligned_products_do_not_depend_on_the_position_in_the_batch():
    # (n, 2, K) @ (n, K, 5): the encoder gradient of pentagon SAEs; (n, B, 5) @ (n, 5, 1): a 1-D decoder.
    torch.manual_seed(0)
    for a, b in ((torch.randn(5, 1024, 2).transpose(1, 2), torch.randn(5, 1024, 5)), (torch.randn(5, 300, 5), torch.randn(5, 5, 1))):
        together = aligned_bmm(a, b)
        for i in range(5):
            assert torch.equal(together[i], aligned_bmm(a[i : i + 1], b[i : i + 1])[0])
        torch.testing.assert_close(together, torch.bmm(a, b))


@pytest.mark.parametrize("architecture", list(SAE_VARIANTS))
def test_each_sae_starts_from_its_own_seed(architecture):
    settings = SETTINGS[architecture][:3]
    sae = _build(architecture, [11, 3, 42], settings, d_in=4, d_latent=6)
    for position, seed in enumerate([11, 3, 42]):
        alone = _build(architecture, [seed], [settings[position]], d_in=4, d_latent=6)
        for name in sae.parameter_names:
            assert torch.equal(getattr(sae, name)[position], getattr(alone, name)[0]), name
    torch.testing.assert_close(sae.W_dec.norm(dim=2), torch.ones(3, 6))
    bound = math.sqrt(6 / (4 * 6))  # ARENA's kaiming_uniform_ on (n_inst, d_in, d_sae)
    assert sae.W_enc.abs().max() <= bound and sae.W_enc.abs().max() > 0.8 * bound
    assert not torch.equal(sae.W_enc[0], sae.W_enc[1])
    initial = sae.initial_state()
    with torch.no_grad():
        sae.W_enc.add_(1.0)
    sae.reset_parameters()
    assert torch.equal(sae.W_enc, initial["W_enc"])
    state = {name: value + 1 for name, value in initial.items()}
    sae.set_initial_state(state, init_seeds=[-1, 3, 42])
    assert torch.equal(sae.initial_state()["b_dec"], state["b_dec"]) and sae.init_seeds == [-1, 3, 42]


def _arena_loss(sae, h: Tensor, act) -> Tensor:
    """ARENA's ToySAE forward for SAE ``i`` alone (einsum, batch-first layout), its loss per SAE."""
    losses = []
    for i in range(sae.n_saes):
        W_enc, b_enc, W_dec, b_dec = sae.W_enc[i : i + 1], sae.b_enc[i : i + 1], sae.W_dec[i : i + 1], sae.b_dec[i : i + 1]
        x = h[i].unsqueeze(1)  # (batch, inst=1, d_in)
        pre = einops.einsum(W_enc, x - b_dec, "inst d_in d_sae, batch inst d_in -> batch inst d_sae") + b_enc
        acts = act(pre, i)
        x_hat = einops.einsum(W_dec, acts, "inst d_sae d_in, batch inst d_sae -> batch inst d_in") + b_dec
        reconstruction = (x_hat - x).pow(2).mean(-1)
        penalty = acts.abs().sum(-1) if isinstance(sae, ReLUSAE) else (acts != 0).float().sum(-1)
        coefficient = 0.0 if isinstance(sae, TopKSAE) else float(sae.sparsity_coefficient[i])
        losses.append((reconstruction + coefficient * penalty).mean(0).sum())
    return torch.stack(losses)


def test_each_variant_computes_its_formula_and_loss():
    torch.manual_seed(1)
    h = torch.randn(3, 50, 4)
    relu = ReLUSAE(3, 4, 6, sparsity_coefficient=[0.1, 0.5, 0.0])
    topk = TopKSAE(3, 4, 6, k=[1, 3, 6])
    jump = JumpReLUSAE(3, 4, 6, sparsity_coefficient=[0.1, 0.5, 0.0], threshold_init=0.2)

    def keep_top(pre: Tensor, i: int) -> Tensor:
        k = topk.k[i]
        kth = pre.topk(k, dim=-1).values[..., -1:]
        return torch.where(pre >= kth, pre.relu(), torch.zeros_like(pre))

    references = {
        relu: lambda pre, i: pre.relu(),
        topk: keep_top,
        jump: lambda pre, i: torch.where(pre > 0.2, pre, torch.zeros_like(pre)),
    }
    for sae, act in references.items():
        out = sae(h)
        reference = _arena_loss(sae, h, act)
        torch.testing.assert_close(out.loss, reference)
        torch.testing.assert_close(out.reconstruction, sae.decode(sae.encode(h)))
        torch.testing.assert_close(out.loss, out.reconstruction_loss + (0 if sae is topk else sae.sparsity_coefficient) * out.sparsity)
        # The hand-written backward passes give autograd's gradients of the reference (the L0 has none in z).
        names = ("W_enc", "b_enc", "W_dec", "b_dec")
        ours = torch.autograd.grad(out.loss.sum(), [getattr(sae, name) for name in names])
        expected = torch.autograd.grad(reference.sum(), [getattr(sae, name) for name in names])
        for name, value, other in zip(names, ours, expected):
            torch.testing.assert_close(value, other, msg=name)


def test_the_encoder_and_decoder_backward_passes_pass_gradcheck():
    generator = torch.Generator().manual_seed(8)
    for d_in, d_latent in ((3, 5), (1, 4), (4, 1)):  # (1, ·) and (·, 1): the matrix-vector products
        h = torch.randn(2, 7, d_in, dtype=torch.float64, generator=generator, requires_grad=True)
        W_enc, W_dec, b_enc, b_dec = (
            torch.randn(*shape, dtype=torch.float64, generator=generator).requires_grad_()
            for shape in ((2, d_in, d_latent), (2, d_latent, d_in), (2, d_latent), (2, d_in))
        )
        assert torch.autograd.gradcheck(lambda *args: _Encode.apply(*args), (h, W_enc, b_enc, b_dec))
        latents = torch.randn(2, 7, d_latent, dtype=torch.float64, generator=generator, requires_grad=True)
        assert torch.autograd.gradcheck(lambda *args: _Decode.apply(*args), (latents, W_dec, b_dec))


def test_topk_keeps_exactly_k_latents_the_largest():
    sae = TopKSAE(3, 5, 12, k=[1, 4, 12], init_seeds=2)
    with torch.no_grad():
        sae.b_enc.fill_(10.0)  # every pre-activation positive: the ReLU drops none
    h = torch.randn(3, 64, 5)
    latents = sae.encode(h)
    pre = sae.pre_activation(h)
    for i, k in enumerate([1, 4, 12]):
        assert torch.equal((latents[i] != 0).sum(dim=-1), torch.full((64,), k))
        kept = torch.zeros_like(pre[i], dtype=torch.bool).scatter(-1, pre[i].topk(k, dim=-1).indices, True)
        assert torch.equal(latents[i] != 0, kept)
        torch.testing.assert_close(latents[i][kept], pre[i][kept])
    with torch.no_grad():
        sae.b_enc.fill_(-10.0)
    assert ((sae.encode(h) != 0).sum(dim=-1) <= torch.tensor([1, 4, 12]).view(3, 1)).all()  # never more than k


def test_jumprelu_threshold_gets_the_straight_through_gradient():
    torch.manual_seed(3)
    sae = JumpReLUSAE(2, 3, 8, sparsity_coefficient=1.0, threshold_init=0.1, bandwidth=0.5)
    h = torch.randn(2, 200, 3)
    pre = sae.pre_activation(h).detach()
    theta, epsilon = sae.threshold.detach().unsqueeze(1), sae.bandwidth
    window = ((pre - theta).abs() < epsilon / 2).float()  # the rectangle kernel K((z − θ)/ε)
    # The L0 term alone: d/dθ mean_batch Σ H(z − θ) = −(1/ε) mean_batch K; the log-space chain rule adds θ.
    sae.sparsity(sae.pre_activation(h), None).sum().backward()
    expected = -(1 / epsilon) * window.mean(dim=1) * sae.threshold.detach()
    assert expected.abs().sum() > 0
    torch.testing.assert_close(sae.log_threshold.grad, expected)
    # The activation's own estimator, −(θ/ε) K per unit of upstream gradient.
    sae.log_threshold.grad = None
    sae.activation(sae.pre_activation(h)).sum().backward()
    expected = -(theta.squeeze(1) / epsilon) * window.sum(dim=1) * sae.threshold.detach()
    torch.testing.assert_close(sae.log_threshold.grad, expected)


@pytest.mark.parametrize("architecture", list(SAE_VARIANTS))
def test_decoder_rows_stay_unit_norm_and_turn_only(architecture):
    torch.manual_seed(4)
    sae = _build(architecture, [0, 1, 2], SETTINGS[architecture][:3], d_in=6, d_latent=9)
    h = torch.randn(5, 3, 128, 6)
    optimizer = torch.optim.Adam(sae.parameters(), lr=0.05)
    for step in range(5):
        optimizer.zero_grad()
        sae(h[step]).loss.sum().backward()
        sae.remove_parallel_gradient()
        parallel = (sae.W_dec.grad * sae.W_dec.detach()).sum(dim=-1)
        torch.testing.assert_close(parallel, torch.zeros_like(parallel), atol=1e-6, rtol=0)
        optimizer.step()
        assert (sae.W_dec.norm(dim=-1) - 1).abs().max() > 1e-4  # the step moved the rows off the sphere
        sae.normalize_decoder()
        torch.testing.assert_close(sae.W_dec.norm(dim=-1), torch.ones(3, 9))


def _features_active_one_at_a_time(n_features: int, batch: int, seed: int = 0) -> Tensor:
    """``(1, batch, n_features)``: one feature active per input, magnitude uniform on (0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    active = torch.randint(n_features, (batch,), generator=generator)
    magnitude = 1 - torch.rand(batch, generator=generator)
    return torch.nn.functional.one_hot(active, n_features).float().mul(magnitude.unsqueeze(1)).unsqueeze(0)


def _source_activations(W: Tensor, x: Tensor) -> Tensor:
    """``h = W x`` of a toy model whose ``W`` is set to ``W`` ``(2, n_features)``: ``(1, batch, 2)``."""
    model = ReLUOutputModel(n_instances=1, n_features=W.shape[1], d_hidden=2)
    model.set_initial_state({"W": W.unsqueeze(0), "b": torch.zeros(1, W.shape[1])})
    return torch.einsum("ihf,ibf->ibh", model.W.detach(), x)


def _set_true_dictionary(sae, W: Tensor) -> None:
    """Decoder rows = the features' directions, encoder = the decoder's transpose, biases 0."""
    directions = (W / W.norm(dim=0)).T  # (n_features, 2)
    with torch.no_grad():
        sae.W_dec.copy_(directions.unsqueeze(0))
        sae.W_enc.copy_(directions.T.unsqueeze(0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()


def test_topk_sae_with_the_true_features_reconstructs_a_2d_source_exactly():
    # One active feature f of magnitude m: h = m W_f. With decoder rows Ŵ_g and encoder Ŵ_gᵀ the
    # pre-activations are m ‖W_f‖ cos(θ_gf), largest at g = f (distinct directions), so TopK with
    # k = 1 keeps only latent f with value m ‖W_f‖, and ĥ = m ‖W_f‖ Ŵ_f = h: exact, for any polygon.
    for n_features in (2, 3, 5, 6):
        W = _pentagon(n_features, radius=0.9)
        x = _features_active_one_at_a_time(n_features, 500)
        h = _source_activations(W, x)
        sae = TopKSAE(1, 2, n_features, k=1)
        _set_true_dictionary(sae, W)
        out = sae(h)
        torch.testing.assert_close(out.reconstruction, h, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(out.latents, x * 0.9, rtol=1e-6, atol=1e-7)  # latent f = m ‖W_f‖


def test_relu_sae_with_the_true_features_is_exact_when_no_two_features_overlap_positively():
    # The same dictionary with a ReLU: every latent g with cos(θ_gf) > 0 also fires, at m ‖W_f‖ cos θ_gf,
    # so ĥ = m ‖W_f‖ Σ_g ReLU(cos θ_gf) Ŵ_g. For a regular polygon the sideways parts cancel and
    # ĥ = (Σ_g ReLU(cos θ_gf)²) h: exact for the digon, triangle and square (all other cosines <= 0),
    # 1 + 2 cos²(72°) = 1.19 times too long for the pentagon, 1 + 2 cos²(60°) = 1.5 for the hexagon.
    for n_features, factor in ((2, 1.0), (3, 1.0), (4, 1.0), (5, 1 + 2 * math.cos(math.radians(72)) ** 2), (6, 1.5)):
        W = _pentagon(n_features, radius=0.8)
        x = _features_active_one_at_a_time(n_features, 400, seed=n_features)
        h = _source_activations(W, x)
        sae = ReLUSAE(1, 2, n_features, sparsity_coefficient=0.0)
        _set_true_dictionary(sae, W)
        torch.testing.assert_close(sae(h).reconstruction, factor * h, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("architecture", list(SAE_VARIANTS))
def test_resampling_gives_dead_latents_badly_reconstructed_inputs(architecture):
    torch.manual_seed(5)
    sae = _build(architecture, [0, 1, 2], SETTINGS[architecture][:3], d_in=3, d_latent=6)
    h = torch.zeros(3, 40, 3)
    h[:, 7] = torch.tensor([30.0, -10.0, 20.0])  # the one input a zero reconstruction gets badly wrong
    with torch.no_grad():
        sae.W_dec.copy_(torch.nn.functional.normalize(torch.randn(3, 6, 3), dim=-1))
        sae.W_enc.zero_()  # no latent fires: ĥ = b_dec
        sae.W_enc[:, :, 0] = 0.3  # ... though latent 0 has an encoder (norm 0.3 · √3)
        sae.b_enc.fill_(-50.0)
        sae.b_dec.copy_(torch.tensor([0.0, 0.0, 1.0]))
        if architecture == "jumprelu":
            sae.log_threshold.fill_(2.0)
    before = {name: getattr(sae, name).detach().clone() for name in sae.parameter_names}
    dead = torch.tensor([[False, True, True, False, False, False], [False] * 6, [True] * 6])
    result = resample_dead_latents(sae, h, dead, resample_seeds(sae.init_seeds, step=100), encoder_scale=0.2)
    assert result.n_resampled.tolist() == [2, 0, 6] and torch.equal(result.latents, dead)
    # Losses (mean over d_in of (h − b_dec)²): 1361/3 for input 7, 1/3 for the 39 others: drawn in
    # proportion to loss², input 7 is 1.9 million times likelier than all the others together.
    direction = torch.nn.functional.normalize(h[0, 7] - sae.b_dec[0].detach(), dim=0)
    for i, latent in torch.nonzero(dead).tolist():
        torch.testing.assert_close(sae.W_dec[i, latent].detach(), direction)
        live = before["W_enc"][i].norm(dim=0)[~dead[i]]  # the mean encoder norm of live latents (1 if none)
        scale = 0.2 * (live.mean() if len(live) else 1.0)
        torch.testing.assert_close(sae.W_enc[i, :, latent].detach(), direction * scale)
        assert sae.b_enc[i, latent] == 0
    for name in sae.parameter_names:  # live latents and untouched SAEs keep their weights
        keep = ~result.parameter_masks[name] if name in result.parameter_masks else torch.ones_like(before[name], dtype=torch.bool)
        assert torch.equal(getattr(sae, name).detach()[keep], before[name][keep]), name
    if architecture == "jumprelu":
        torch.testing.assert_close(sae.threshold[2], torch.full((6,), 0.1))  # back to threshold_init
        assert torch.equal(sae.threshold[1], torch.full((6,), math.exp(2.0)))


def test_resampling_draws_inputs_in_proportion_to_their_squared_loss_per_sae_alone():
    # Inputs (1, 0) and (0, √2): losses 1/2 and 1 with ĥ = 0, drawn 1 : 4 (ARENA's l2_loss.pow(2)).
    n_latents = 4000
    sae = ReLUSAE(2, 2, n_latents, init_seeds=[9, 10])
    h = torch.tensor([[[1.0, 0.0], [0.0, math.sqrt(2.0)]], [[0.0, math.sqrt(2.0)], [1.0, 0.0]]])  # SAE 1: swapped
    with torch.no_grad():
        sae.W_enc.zero_()
        sae.b_enc.fill_(-1.0)
    dead = torch.ones(2, n_latents, dtype=torch.bool)
    seeds = resample_seeds(sae.init_seeds, step=3)
    resample_dead_latents(sae, h, dead, seeds)
    assert torch.equal(sae.W_dec.detach().abs().amax(dim=-1), torch.ones(2, n_latents))  # one of the two inputs each
    share = (sae.W_dec[:, :, 1] == 1).float().mean(dim=1)  # latents given the second direction
    assert (share - 0.8).abs().max() < 5 * math.sqrt(0.16 / n_latents), share
    # SAE 0's draws are its own: the same seed and batch alone give the same weights.
    alone = ReLUSAE(1, 2, n_latents, init_seeds=[9])
    with torch.no_grad():
        alone.W_enc.zero_()
        alone.b_enc.fill_(-1.0)
    resample_dead_latents(alone, h[:1], dead[:1], seeds[:1])
    assert torch.equal(alone.W_enc[0], sae.W_enc[0]) and torch.equal(alone.W_dec[0], sae.W_dec[0])


def test_resampling_seeds_and_optimizer_reset():
    assert resample_seeds([3, 4], 10) == resample_seeds([3, 4], 10)
    assert len(set(resample_seeds(range(100), 10) + resample_seeds(range(100), 11))) == 200
    sae = JumpReLUSAE(2, 3, 4, sparsity_coefficient=0.1)
    optimizer = torch.optim.Adam(sae.parameters(), lr=1e-3)
    sae(torch.randn(2, 16, 3)).loss.sum().backward()
    optimizer.step()
    dead = torch.tensor([[True, False, False, False], [False, False, False, True]])
    result = resample_dead_latents(sae, torch.randn(2, 16, 3), dead, [0, 1])
    before = {name: {k: v.clone() for k, v in optimizer.state[getattr(sae, name)].items()} for name in sae.parameter_names}
    reset_optimizer_state(optimizer, sae, result.parameter_masks)
    assert set(result.parameter_masks) == {"W_enc", "b_enc", "W_dec", "log_threshold"}
    for name in sae.parameter_names:
        state = optimizer.state[getattr(sae, name)]
        mask = result.parameter_masks.get(name, torch.zeros_like(getattr(sae, name), dtype=torch.bool))
        for key in ("exp_avg", "exp_avg_sq"):
            assert (state[key][mask] == 0).all() and torch.equal(state[key][~mask], before[name][key][~mask])
        assert torch.equal(state["step"], before[name]["step"])
    assert result.parameter_masks["W_enc"][0, :, 0].all() and not result.parameter_masks["W_enc"][0, :, 1].any()
    assert result.parameter_masks["W_dec"][1, 3].all() and not result.parameter_masks["W_dec"][1, 2].any()


def test_groups_hold_each_sae_as_its_own_module_would():
    torch.manual_seed(6)
    sizes, coefficients = [5, 3, 5, 8, 3, 3], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    saes = SAEGroups(ReLUSAE, 6, 2, sizes, init_seeds=10, sparsity_coefficient=coefficients)
    assert saes.indices == [[1, 4, 5], [0, 2], [3]]
    h = torch.randn(6, 32, 2)
    losses = saes.collect(saes(h), "loss")
    for i, (size, coefficient) in enumerate(zip(sizes, coefficients)):
        alone = ReLUSAE(1, 2, size, sparsity_coefficient=coefficient, init_seeds=[10 + i])
        assert torch.equal(alone(h[i : i + 1]).loss[0], losses[i])
    losses.sum().backward()
    saes.remove_parallel_gradient()
    saes.normalize_decoder()
    assert all(sae.W_enc.grad is not None for sae in saes.groups)
    with pytest.raises(ConfigError, match=r"^sparsity_coefficient has 2 values, expected one per SAE \(6\) or a single value$"):
        SAEGroups(ReLUSAE, 6, 2, sizes, sparsity_coefficient=[0.1, 0.2])
    with pytest.raises(ConfigError, match=r"^d_latent must be an integer >= 1, got 0 \(SAE 1\)$"):
        SAEGroups(TopKSAE, 2, 2, [4, 0])
    with pytest.raises(ConfigError, match=r"^k must be at most the dictionary size d_latent=3, got k=4 \(SAE 4\)$"):
        SAEGroups(TopKSAE, 6, 2, sizes, k=[1, 1, 1, 1, 4, 1])  # SAE 4 is the second of the size-3 group


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ReLUSAE(2, 2, 0), "d_latent must be an integer >= 1, got 0"),
        (lambda: ReLUSAE(0, 2, 5), "n_saes must be an integer >= 1, got 0"),
        (lambda: ReLUSAE(2, 2, 5, sparsity_coefficient=-0.1), "sparsity_coefficient must be a finite number >= 0, got -0.1"),
        (lambda: ReLUSAE(2, 2, 5, sparsity_coefficient=[0.1, -1]), "sparsity_coefficient must be a finite number >= 0, got -1 (SAE 1)"),
        (lambda: ReLUSAE(2, 2, 5, sparsity_coefficient=[0.1]), "sparsity_coefficient has 1 values, expected one per SAE (2)"),
        (lambda: JumpReLUSAE(2, 2, 5, sparsity_coefficient=float("nan")), "sparsity_coefficient must be a finite number >= 0"),
        (lambda: JumpReLUSAE(2, 2, 5, threshold_init=0), "threshold_init must be a finite number > 0, got 0"),
        (lambda: TopKSAE(2, 2, 5, k=6), "k must be at most the dictionary size d_latent=5, got k=6"),
        (lambda: TopKSAE(2, 2, 5, k=[2, 9]), "k must be at most the dictionary size d_latent=5, got k=9 (SAE 1)"),
        (lambda: TopKSAE(2, 2, 5, k=0), "k must be an integer >= 1, got 0"),
        (lambda: TopKSAE(2, 2, 5, k=1.5), "k must be an integer >= 1, got 1.5"),
        (lambda: ReLUSAE(2, 2, 5, init_seeds=[1]), "init_seeds has 1 seeds, expected one per instance (2)"),
    ],
)
def test_bad_settings_are_one_line_config_errors(build, message):
    with pytest.raises(ConfigError) as error:
        build()
    assert message in str(error.value) and "\n" not in str(error.value)
