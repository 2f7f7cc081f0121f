"""Activations of a frozen run as a datamodule: what sparse autoencoders (SAEs) train on.

The *source* is a finished toy-model run (its directory or one of its checkpoints). Its model is
rebuilt from the checkpoint (``model_definition`` and the weights; ``config.yaml`` names a variant
class that is not bundled) and frozen; its data law from the checkpoint's data definition (``p``,
values, instance data, sets). The batch of a step is the source's own features of that step,
``x`` ``(n_sources, batch, n_features)``, drawn on the device from ``(data_seed, rank, step)`` as
:class:`~lit_superposition.data.SparseFeatureDataModule` draws them, mapped to activations:

- ``activations: hidden`` (default): ``h = W x``, the hidden vector of every variant (for the
  computation variant, ``W`` is its first layer).
- ``activations: neurons``: ``ReLU(W x)``, the neurons of a variant with a privileged basis
  (``hidden_relu``, ``computation``); refused for the others, whose hidden units are not neurons.

A source trained on a finite set (``data.dataset_size``) gives fresh draws of its law: the SAEs
read what the model computes on its data distribution, not its training points.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

import pytorch_lightning as pl
import torch
import yaml
from torch import Tensor
from typing_extensions import override

from lit_superposition.data.datamodule import EVALUATION_STEP, SparseFeatureDataModule, StepKeys
from lit_superposition.errors import ConfigError
from lit_superposition.models import VARIANTS, ToyModel, model_class
from lit_superposition.models.sae.base import aligned_bmm

Activations = Literal["hidden", "neurons"]

#: What defines the source's data law in its checkpoint's data definition (finite-set keys are left out).
LAW_KEYS = ("feature_probability", "values", "target", "instance_data", "correlated_sets", "anticorrelated_sets")
#: What makes a source run: any toy-model config, e.g. the bundled pentagon.
MAKE_HINT = "lit-superposition fit --config pentagon.yaml, then name runs/pentagon/version_N"


def source_files(source: str | Path) -> tuple[Path, Path]:
    """The run directory and checkpoint of a source given as either; a one-line :class:`ConfigError` otherwise.

    A run directory resolves to ``checkpoints/last.ckpt`` (else its newest checkpoint); a checkpoint
    file belongs to the run directory above its ``checkpoints/`` folder.
    """
    path = Path(source)
    if path.is_file():
        return path.resolve().parent.parent, path
    if not path.is_dir():
        raise ConfigError(f"source run {str(source)!r} not found: name a finished toy-model run or a checkpoint (make one with {MAKE_HINT})")
    last = path / "checkpoints" / "last.ckpt"
    found = [last] if last.is_file() else sorted((path / "checkpoints").glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise ConfigError(f"source run {str(source)!r} has no checkpoint (checkpoints/*.ckpt): train it to the end first, or name a checkpoint file")
    return path, found[-1]


def _variant(run: Path, definition: dict[str, Any]) -> type[ToyModel]:
    """The source's model class: a bundled variant by class name, else the class path in its ``config.yaml``."""
    bundled = {cls.__name__: cls for cls in VARIANTS.values()}
    if definition["variant"] in bundled:
        return bundled[definition["variant"]]
    config_path = run / "config.yaml"
    config = yaml.safe_load(config_path.read_text()) or {} if config_path.is_file() else {}
    variant = (config.get("model") or {}).get("variant")
    if variant is None:
        raise ConfigError(f"source variant {definition['variant']!r} is not bundled and {config_path} does not name its class path")
    return model_class(variant)


class SourceActivations(pl.LightningDataModule):
    """The activations of a frozen toy-model run, step-keyed on the device (a :class:`~lit_superposition.protocols.StepData`).

    The source is read when first needed (:meth:`load`: ``setup`` calls it), so a run that makes its
    source first (``source.config`` of an SAE config) can configure this before the source exists.

    Args:
        source: The source: a run directory (``runs/pentagon/version_0``: its ``checkpoints/last.ckpt``)
            or a checkpoint file of one.
        instances: The source instances whose activations are streamed (default: all), in this order.
        activations: ``"hidden"``, ``h = W x``; or ``"neurons"``, ``ReLU(W x)`` for variants with a
            privileged basis.
        batch_size: Inputs per step and source instance.
        data_seed: Seeds the stream: batch ``k`` depends only on ``(data_seed, rank, k)``.

    Example::

        data = SourceActivations("runs/pentagon/version_0", instances=[0, 3])
        data.load()
        h = data.make_batch(step=0)  # (2, 1024, 2): h = W x of source instances 0 and 3
    """

    def __init__(
        self,
        source: str,
        instances: list[int] | None = None,
        activations: Activations = "hidden",
        batch_size: int = 1024,
        data_seed: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(source, (str, Path)) or not str(source):
            raise ConfigError(f"source must be a run directory or a checkpoint file, got {source!r}")
        if activations not in ("hidden", "neurons"):
            raise ConfigError(f"activations must be 'hidden' or 'neurons', got {activations!r}")
        for name, value, minimum in (("batch_size", batch_size, 1), ("data_seed", data_seed, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
        if instances is not None and (not instances or any(not isinstance(i, int) or i < 0 for i in instances)):
            raise ConfigError(f"instances must be a non-empty list of source instance indices >= 0, got {instances!r}")
        self.source, self.chosen = str(source), instances
        self.activations, self.batch_size, self.data_seed = activations, batch_size, data_seed
        self.model: ToyModel | None = None  # the frozen source model, once loaded
        self.features: SparseFeatureDataModule | None = None  # the source's data law, once loaded
        self._on_device: dict[torch.device, tuple[Tensor, Tensor]] = {}

    def load(self) -> None:
        """Read the source (once): its frozen model and data law; a one-line :class:`ConfigError` for a bad source."""
        if self.model is not None:
            return
        run, path = source_files(self.source)
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as error:  # noqa: BLE001 - any unreadable file is bad input
            raise ConfigError(f"source checkpoint {str(path)!r} is not readable ({type(error).__name__})") from None
        definition = checkpoint.get("model_definition") if isinstance(checkpoint, dict) else None
        law = (checkpoint.get("SparseFeatureDataModule") or {}).get("definition") if isinstance(checkpoint, dict) else None
        if definition is None or law is None:
            raise ConfigError(f"source checkpoint {str(path)!r} is not a toy-model checkpoint (no model_definition or data definition)")
        if "sae_definition" in checkpoint:
            raise ConfigError(f"source {str(path)!r} is an SAE run: SAEs read a toy-model run")
        cls = _variant(run, definition)
        model = cls(definition["n_instances"], definition["n_features"], definition["d_hidden"])
        state = {name.removeprefix("model."): value for name, value in checkpoint["state_dict"].items() if name.startswith("model.")}
        model.load_state_dict(state, strict=False)  # the recorded initial state may be absent (release 0.1)
        model.requires_grad_(False).eval()
        n = model.n_instances
        chosen = list(range(n)) if self.chosen is None else self.chosen
        bad = [i for i in chosen if i >= n]
        if bad:
            raise ConfigError(f"instances {bad} out of range: the source has instances 0..{n - 1}")
        if self.activations == "neurons" and not model.privileged_basis:
            raise ConfigError(f"activations 'neurons' needs a variant with neurons (hidden_relu, computation); the source is {cls.__name__}")
        self.features = SparseFeatureDataModule(
            n, model.n_features, batch_size=self.batch_size, data_seed=self.data_seed, **{key: law[key] for key in LAW_KEYS if key in law}
        )
        self.model, self.instances, self.checkpoint_path = model, chosen, path
        self.source_step = int(checkpoint.get("global_step", 0))
        weights = b"".join(value.detach().cpu().contiguous().numpy().tobytes() for _, value in sorted(model.named_parameters()))
        self.fingerprint = hashlib.sha256(weights).hexdigest()[:16]

    @property
    def n_sources(self) -> int:
        """Source instances streamed (after :meth:`load`)."""
        return len(self.instances)

    @property
    def d_in(self) -> int:
        """The dimension of an activation vector: the source's ``d_hidden`` (after :meth:`load`)."""
        return self.model.d_hidden

    @property
    def n_features(self) -> int:
        return self.model.n_features

    @override
    def setup(self, stage: str) -> None:
        self.load()

    def _weights(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """The chosen instances' index and ``Wᵀ`` ``(n_sources, n_features, d_in)`` on ``device``, made once per device."""
        device = torch.empty(0, device=device).device
        if device not in self._on_device:
            index = torch.tensor(self.instances, device=device)
            WT = self.model.W.detach().to(device).index_select(0, index).transpose(1, 2).contiguous()
            self._on_device[device] = (index, WT)
        return self._on_device[device]

    def make_features(self, step: int, rank: int = 0, device: torch.device | str = "cpu") -> Tensor:
        """The source's features of batch ``step``: ``x`` ``(n_sources, batch, n_features)``, the chosen instances' rows."""
        x = self.features.make_batch(step, rank=rank, device=device)  # (source instances, batch, n_features)
        if self.chosen is None:
            return x
        return x.index_select(0, self._weights(x.device)[0])

    def activations_of(self, x: Tensor) -> Tensor:
        """``h = W x`` (or ``ReLU(W x)``) of features ``x`` ``(n_sources, batch, n_features)``: ``(n_sources, batch, d_in)``."""
        _, WT = self._weights(x.device)
        # Aligned products: a source instance's activations do not depend on which others are streamed.
        h = aligned_bmm(x, WT)
        return h.relu_() if self.activations == "neurons" else h

    def make_batch(self, step: int, rank: int = 0, device: torch.device | str = "cpu") -> Tensor:
        """The activations of batch ``step``: ``(n_sources, batch, d_in)``, a pure function of ``(data_seed, rank, step)``."""
        return self.activations_of(self.make_features(step, rank, device))

    def evaluation_features(self, n_batches: int, device: torch.device | str = "cpu") -> Tensor:
        """Fresh features no training step draws (step keys ``EVALUATION_STEP + k``), ``n_batches`` batches
        joined: ``(n_sources, n_batches · batch, n_features)``; the same for every run of the same source and seed."""
        return torch.cat([self.make_features(EVALUATION_STEP + k, device=device) for k in range(n_batches)], dim=1)

    def true_directions(self) -> Tensor:
        """What an SAE should find: each true feature's direction in the activations, ``(n_sources, d_in, n_truth)``.

        For ``hidden`` activations, feature ``f``'s column ``W_f``; for ``neurons``, ``ReLU(W_f)`` (the
        neurons of ``f`` alone active). A source with signed values has two per feature, one per sign
        (``W_f`` then ``−W_f``: SAE latents are nonnegative, so each sign needs its own), ``n_truth = 2 n_features``.
        """
        W = self.model.W.detach().cpu()[self.instances]  # (n_sources, d_in, n_features)
        if self.features.values == "signed":
            W = torch.cat([W, -W], dim=2)
        return W.relu() if self.activations == "neurons" else W

    def true_l0(self) -> Tensor:
        """The expected number of active features per input, ``Σ_f p_f``, per source instance: ``(n_sources,)``."""
        return self.features.feature_probability[self.instances].double().sum(dim=1).float()

    def definition(self) -> dict[str, Any]:
        """What defines the stream: a checkpoint of another source or selection is not resumed with this one."""
        self.load()
        return {
            "source_weights": self.fingerprint, "instances": self.instances, "activations": self.activations,
        }

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"definition": self.definition(), "source": str(self.checkpoint_path), "source_step": self.source_step}

    @override
    def train_dataloader(self) -> StepKeys:
        return StepKeys()
