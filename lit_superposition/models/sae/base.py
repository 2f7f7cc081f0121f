"""The contract every sparse autoencoder (SAE) variant follows: many SAEs side by side in one set of tensors.

A variant is a plain ``nn.Module`` (no Lightning) that subclasses :class:`SparseAutoencoder` and defines
:meth:`SparseAutoencoder.activation` (and, where it has one, :meth:`SparseAutoencoder.sparsity`). What the
training loop, the callbacks and the analysis may use, and nothing more:

- ``n_saes``, ``d_in``, ``d_latent`` (the dictionary size: latents per SAE, the same for every SAE of
  the module; :class:`~lit_superposition.models.sae.groups.SAEGroups` holds several sizes);
- ``W_enc`` ``(n_saes, d_in, d_latent)``, ``b_enc`` ``(n_saes, d_latent)``, ``W_dec``
  ``(n_saes, d_latent, d_in)`` (row ``l`` is latent ``l``'s direction, unit norm), ``b_dec`` ``(n_saes, d_in)``;
- ``init_seeds`` and the recorded initial state (:meth:`initial_state`, :meth:`set_initial_state`), as the toy models;
- :meth:`forward` → :class:`SAEOutput` with per-SAE loss terms ``(n_saes,)``: SAEs never interact, so the
  backward pass takes their sum;
- the two decoder-norm steps of the training loop: :meth:`remove_parallel_gradient` after ``backward()``
  and before the optimizer step, :meth:`normalize_decoder` after it.

Latents ``a = act(W_enc (h − b_dec) + b_enc)``, reconstruction ``ĥ = W_dec a + b_dec`` (Anthropic,
"Towards Monosemanticity", 2023; ARENA 1.3.1's ``ToySAE``).

SAEs never interact, down to the bit on the CPU: an SAE trains to the same weights alone or at any
position of a tensor of any size (with torch's default, not fused, Adam or AdamW). Elementwise
operations and reductions within one SAE's slice give that for free; batched matrix products do not
(MKL and oneDNN round a matrix whose output is not aligned to a cache line differently), so every
product goes through :func:`aligned_bmm`.

Dictionary sizes that differ are grouped (one module per size, :class:`~lit_superposition.models.sae.groups.SAEGroups`),
not padded to the largest. Padding changes an SAE's rounding with the width its companions impose (a
product over 5 latents and over 40, 35 of them zero, differ in the last bit), which would break the
bitwise independence; and it was not faster: ``benchmarks/sae.py --threads 1`` on a loaded 2-core
machine gave padded/grouped 0.84 (0.83-1.21 over 3 repeats) for 64 SAEs of 3 to 10 latents on 2-D
activations, 0.55 (0.35-0.69) for 10 to 80 latents on 20-D ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor

from lit_superposition.errors import ConfigError
from lit_superposition.models.init import SeededParameters, resolve_init_seeds

#: Norms are clamped to at least this before dividing by them.
EPS = 1e-8


class SAEOutput(NamedTuple):
    """One forward pass of every SAE.

    Attributes:
        latents: ``a``, ``(n_saes, batch, d_latent)``.
        reconstruction: ``ĥ``, ``(n_saes, batch, d_in)``.
        reconstruction_loss: ``mean_batch mean_{d_in} (h − ĥ)²`` per SAE, ``(n_saes,)`` (ARENA's
            ``L_reconstruction``: the mean over ``d_in``, not the sum).
        sparsity: The penalty before its coefficient, ``mean_batch`` of the L1 (``relu``) or L0
            (``jumprelu``) of the latents; 0 for ``topk``. ``(n_saes,)``.
        loss: ``reconstruction_loss + sparsity_coefficient · sparsity``, ``(n_saes,)``: sum it for
            ``backward()``.
    """

    latents: Tensor
    reconstruction: Tensor
    reconstruction_loss: Tensor
    sparsity: Tensor
    loss: Tensor


def per_sae(name: str, value, n_saes: int, kind: type, minimum: float) -> list:
    """One value per SAE from a scalar (shared) or a sequence; a one-line ConfigError for bad values.

    Args:
        name: The setting, for the message.
        value: A number or one number per SAE.
        n_saes: The number of SAEs.
        kind: ``int`` or ``float``.
        minimum: The smallest allowed value.
    """
    values = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value] * n_saes
    if len(values) != n_saes:
        raise ConfigError(f"{name} has {len(values)} values, expected one per SAE ({n_saes}) or a single value")
    allowed = f">= {minimum:g}"
    for i, v in enumerate(values):
        if kind is int:
            ok = isinstance(v, int) and not isinstance(v, bool)
        else:
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if not ok or v < minimum:
            where = "" if n_saes == 1 or not isinstance(value, Sequence) else f" (SAE {i})"
            kind_name = "an integer" if kind is int else "a finite number"
            raise ConfigError(f"{name} must be {kind_name} {allowed}, got {v!r}{where}")
    return [kind(v) for v in values]


class SparseAutoencoder(SeededParameters):
    """Many independent SAEs in one set of tensors; subclasses define :meth:`activation`.

    Each SAE starts from its own seed: ``W_enc`` and then the ``W_dec`` rows are drawn from the seed's
    generator with ARENA's scale (``kaiming_uniform_`` on its ``(n_inst, d_in, d_sae)`` tensor: uniform
    on ``±sqrt(6 / (d_in · d_latent))``), the decoder rows are scaled to unit norm, biases are 0.
    So an SAE's initial weights depend only on ``(seed, d_in, d_latent)``, not on the other SAEs.

    Args:
        n_saes: SAEs trained side by side; they never interact.
        d_in: The dimension of the activations ``h`` (the source's ``d_hidden``).
        d_latent: The dictionary size: latents per SAE.
        init_seeds: A base seed (SAE ``i`` gets ``base + i``) or one seed per SAE.
    """

    #: The name of the variant in :data:`~lit_superposition.models.SAE_VARIANTS`.
    architecture: ClassVar[str] = ""
    #: The parameters with a slice per latent: ``{name: latent axis}`` of the stacked tensor. Resampling
    #: a dead latent rewrites these slices (and the caller resets their optimizer state).
    latent_parameters: ClassVar[dict[str, int]] = {"W_enc": 2, "b_enc": 1, "W_dec": 1}

    def __init__(self, n_saes: int, d_in: int, d_latent: int, init_seeds: int | Sequence[int] = 0) -> None:
        super().__init__()
        for name, value in (("n_saes", n_saes), ("d_in", d_in), ("d_latent", d_latent)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
        self.n_saes, self.d_in, self.d_latent = n_saes, d_in, d_latent
        try:
            self.init_seeds = resolve_init_seeds(init_seeds, n_saes)
        except ValueError as error:
            raise ConfigError(str(error)) from None

    def _register_state(self) -> None:
        """Create every trained tensor from the seeds, and its recorded initial value; subclasses call it last."""
        states = [self.sae_initial_state(int(seed)) for seed in self.init_seeds]
        self.register_seeded_state({name: torch.stack([state[name] for state in states]) for name in states[0]})

    def sae_initial_state(self, seed: int) -> dict[str, Tensor]:
        """One SAE's initial tensors from its seed: a function of ``(seed, d_in, d_latent)`` and the variant's settings."""
        generator = torch.Generator().manual_seed(seed)
        bound = math.sqrt(6.0 / (self.d_in * self.d_latent))
        W_enc = torch.empty(self.d_in, self.d_latent).uniform_(-bound, bound, generator=generator)
        W_dec = torch.empty(self.d_latent, self.d_in).uniform_(-bound, bound, generator=generator)
        return {
            "W_enc": W_enc,  # (d_in, d_latent)
            "b_enc": torch.zeros(self.d_latent),
            "W_dec": W_dec / W_dec.norm(dim=1, keepdim=True).clamp_min(EPS),  # (d_latent, d_in)
            "b_dec": torch.zeros(self.d_in),
        }

    def pre_activation(self, h: Tensor) -> Tensor:
        """``W_enc (h − b_dec) + b_enc``: ``(n_saes, batch, d_latent)`` from ``h`` ``(n_saes, batch, d_in)``."""
        if h.ndim != 3 or h.shape[0] != self.n_saes or h.shape[2] != self.d_in:
            raise ValueError(f"h must have shape (n_saes={self.n_saes}, batch, d_in={self.d_in}), got {tuple(h.shape)}")
        return _Encode.apply(h, self.W_enc, self.b_enc, self.b_dec)

    def activation(self, pre: Tensor) -> Tensor:
        """The latents from the pre-activations, both ``(n_saes, batch, d_latent)``."""
        raise NotImplementedError

    def sparsity(self, pre: Tensor, latents: Tensor) -> Tensor | None:
        """The sparsity penalty before its coefficient ``sparsity_coefficient``, ``(n_saes,)``; None: no penalty (TopK)."""
        return None

    def encode(self, h: Tensor) -> Tensor:
        """The latents ``a``, ``(n_saes, batch, d_latent)``."""
        return self.activation(self.pre_activation(h))

    def decode(self, latents: Tensor) -> Tensor:
        """``ĥ = W_dec a + b_dec``, ``(n_saes, batch, d_in)``."""
        return _Decode.apply(latents, self.W_dec, self.b_dec)

    def forward(self, h: Tensor) -> SAEOutput:
        """Encode, decode and the per-SAE loss terms of ``h`` ``(n_saes, batch, d_in)``.

        Example::

            out = sae(h)
            out.loss.sum().backward()
        """
        pre = self.pre_activation(h)
        latents = self.activation(pre)
        reconstruction = self.decode(latents)
        reconstruction_loss = (reconstruction - h).square().mean(dim=(1, 2))  # (n_saes,)
        sparsity = self.sparsity(pre, latents)  # (n_saes,)
        if sparsity is None:
            sparsity, loss = torch.zeros_like(reconstruction_loss), reconstruction_loss
        else:
            loss = reconstruction_loss + self.sparsity_coefficient * sparsity
        return SAEOutput(latents, reconstruction, reconstruction_loss, sparsity, loss)

    def decoder_directions(self) -> Tensor:
        """The decoder rows scaled to unit norm: ``(n_saes, d_latent, d_in)``."""
        W_dec = self.W_dec.detach()
        return W_dec / W_dec.norm(dim=-1, keepdim=True).clamp_min(EPS)

    @torch.no_grad()
    def remove_parallel_gradient(self) -> None:
        """Remove the component of each decoder row's gradient along that row; call before the optimizer step.

        The gradient then only turns the unit-norm rows, as in Anthropic's "Towards Monosemanticity"
        and SAELens (ARENA instead differentiates through ``W_dec / ‖W_dec‖``).
        """
        grad = self.W_dec.grad
        if grad is None:
            return
        direction = self.decoder_directions()  # (n_saes, d_latent, d_in)
        parallel = (grad * direction).sum(dim=-1, keepdim=True)  # (n_saes, d_latent, 1)
        grad.sub_(parallel * direction)

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Scale every decoder row back to unit norm; call after each optimizer step (ARENA's ``W_dec_normalized``)."""
        self.W_dec.copy_(self.decoder_directions())

    def extra_repr(self) -> str:
        return f"n_saes={self.n_saes}, d_in={self.d_in}, d_latent={self.d_latent}"


#: Bytes at which every matrix of a batched product's output starts (a cache line).
ALIGNMENT = 64


def aligned_bmm(a: Tensor, b: Tensor, bias: Tensor | None = None) -> Tensor:
    """``torch.bmm(a, b)`` (plus ``bias`` ``(n, N)`` on every row) with each output matrix on a 64-byte boundary.

    On the CPU the batched product rounds a matrix differently when its output is not aligned (MKL and
    oneDNN pick another kernel): with ``(n, 2, 1024) @ (n, 1024, 5)`` (a pentagon SAE's encoder
    gradient) every other matrix of the batch came out different in the last bit from the same product
    alone. Aligned outputs make each SAE's result independent of its position and of how many SAEs
    share the tensor. Matrix-vector products (``N = 1``: ``d_in = 1`` or one latent) varied even when
    aligned; they are computed as a product and a sum over ``K``, which did not.

    Args:
        a: ``(n, M, K)``.
        b: ``(n, K, N)``.
        bias: ``(n, N)``, added to every row of the product, or None.

    Returns:
        ``(n, M, N)``, contiguous when ``M·N`` elements fill whole cache lines, else a view into a
        buffer with ``M·N`` rounded up.
    """
    n, M, N = a.shape[0], a.shape[1], b.shape[2]
    if N == 1:
        product = (a * b.transpose(1, 2)).sum(dim=2, keepdim=True)
        return product if bias is None else product.add_(bias.unsqueeze(1))
    size = M * N
    line = max(ALIGNMENT // a.element_size(), 1)
    stride = -(-size // line) * line
    out = a.new_empty(n, stride).as_strided((n, M, N), (stride, N, 1)) if stride != size else a.new_empty(n, M, N)
    if bias is None:
        return torch.bmm(a, b, out=out)
    return torch.baddbmm(bias.unsqueeze(1), a, b, out=out)


class _Encode(torch.autograd.Function):
    """``(h − b_dec) W_enc + b_enc`` per SAE, its products through :func:`aligned_bmm`.

    ``b_dec``'s gradient is ``−(Σ_batch ∂pre) W_encᵀ``: one small product from ``b_enc``'s gradient
    instead of a batch-sized one.
    """

    @staticmethod
    def forward(ctx: Any, h: Tensor, W_enc: Tensor, b_enc: Tensor, b_dec: Tensor) -> Tensor:
        # h: (n_saes, batch, d_in), W_enc: (n_saes, d_in, d_latent), b_enc: (n_saes, d_latent), b_dec: (n_saes, d_in)
        centred = h - b_dec.unsqueeze(1)
        ctx.save_for_backward(centred, W_enc)
        return aligned_bmm(centred, W_enc, b_enc)  # (n_saes, batch, d_latent)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None, Tensor | None]:
        centred, W_enc = ctx.saved_tensors
        grad_h = aligned_bmm(grad, W_enc.transpose(1, 2)) if ctx.needs_input_grad[0] else None
        grad_W = aligned_bmm(centred.transpose(1, 2), grad).contiguous() if ctx.needs_input_grad[1] else None
        grad_b_enc = grad.sum(dim=1)  # (n_saes, d_latent)
        grad_b_dec = -(W_enc * grad_b_enc.unsqueeze(1)).sum(dim=2) if ctx.needs_input_grad[3] else None
        return grad_h, grad_W, grad_b_enc if ctx.needs_input_grad[2] else None, grad_b_dec


class _Decode(torch.autograd.Function):
    """``a W_dec + b_dec`` per SAE, its products through :func:`aligned_bmm`."""

    @staticmethod
    def forward(ctx: Any, latents: Tensor, W_dec: Tensor, b_dec: Tensor) -> Tensor:
        # latents: (n_saes, batch, d_latent), W_dec: (n_saes, d_latent, d_in), b_dec: (n_saes, d_in)
        ctx.save_for_backward(latents, W_dec)
        return aligned_bmm(latents, W_dec, b_dec)  # (n_saes, batch, d_in)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        latents, W_dec = ctx.saved_tensors
        grad_latents = aligned_bmm(grad, W_dec.transpose(1, 2)) if ctx.needs_input_grad[0] else None
        grad_W = aligned_bmm(latents.transpose(1, 2), grad).contiguous() if ctx.needs_input_grad[1] else None
        grad_b = grad.sum(dim=1) if ctx.needs_input_grad[2] else None
        return grad_latents, grad_W, grad_b
