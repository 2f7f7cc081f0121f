"""Model variants: plain ``nn.Module``s behind one contract (:class:`~lit_superposition.models.base.ToyModel`).

A variant is chosen by name (``relu_output``, ``linear_output``, ``hidden_relu``, ``computation``) or by
the import path of a user's own :class:`ToyModel` subclass (``my_models.TanhOutput``).
"""

from __future__ import annotations

import importlib

from lit_superposition.errors import ConfigError
from lit_superposition.models.base import ToyModel
from lit_superposition.models.computation import ComputationModel
from lit_superposition.models.hidden_relu import HiddenReLUModel
from lit_superposition.models.init import resolve_init_seeds, xavier_columns
from lit_superposition.models.linear_output import LinearOutputModel
from lit_superposition.models.relu_output import ReLUOutputModel
from lit_superposition.models.sae import SAE_VARIANTS, JumpReLUSAE, ReLUSAE, SAEGroups, SparseAutoencoder, TopKSAE

#: The bundled variants by name.
VARIANTS: dict[str, type[ToyModel]] = {
    "relu_output": ReLUOutputModel,
    "linear_output": LinearOutputModel,
    "hidden_relu": HiddenReLUModel,
    "computation": ComputationModel,
}


def model_class(variant: str) -> type[ToyModel]:
    """The class of a variant: a bundled name, or ``module.Class`` naming a :class:`ToyModel` subclass.

    Raises:
        ConfigError: one line naming the variant and what is allowed.
    """
    if variant in VARIANTS:
        return VARIANTS[variant]
    allowed = f"choose one of {', '.join(VARIANTS)}, or a class path module.Class of a ToyModel subclass"
    module_name, _, class_name = str(variant).rpartition(".")
    if not module_name:
        raise ConfigError(f"model.variant {variant!r} is not known: {allowed}")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except ImportError as error:
        raise ConfigError(f"model.variant {variant!r}: importing {module_name!r} failed ({error})") from None
    except AttributeError:
        raise ConfigError(f"model.variant {variant!r}: {module_name!r} has no {class_name!r}") from None
    if not (isinstance(cls, type) and issubclass(cls, ToyModel)):
        raise ConfigError(f"model.variant {variant!r} is not a ToyModel subclass: {allowed}")
    return cls


__all__ = [
    "SAE_VARIANTS",
    "VARIANTS",
    "ComputationModel",
    "HiddenReLUModel",
    "JumpReLUSAE",
    "LinearOutputModel",
    "ReLUOutputModel",
    "ReLUSAE",
    "SAEGroups",
    "SparseAutoencoder",
    "ToyModel",
    "TopKSAE",
    "model_class",
    "resolve_init_seeds",
    "xavier_columns",
]
