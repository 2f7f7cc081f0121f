"""lit-superposition: PyTorch Lightning framework for toy models of superposition.

The names below are imported when first used, so that ``lit-superposition --help`` and the analysis
commands start without importing torch and Lightning.
"""

from __future__ import annotations

from lit_superposition.lazy import lazy_exports

__version__ = "0.3.0"

_EXPORTS = {
    "LitToyModel": "lit_superposition.module",
    "SparseFeatureDataModule": "lit_superposition.data",
    "ToyModel": "lit_superposition.models",
    "ReLUOutputModel": "lit_superposition.models",
    "LinearOutputModel": "lit_superposition.models",
    "HiddenReLUModel": "lit_superposition.models",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
