"""lit-superposition: PyTorch Lightning framework for toy models of superposition."""

from lit_superposition.data import SparseFeatureDataModule
from lit_superposition.models import HiddenReLUModel, LinearOutputModel, ReLUOutputModel, ToyModel
from lit_superposition.module import LitToyModel

__all__ = ["HiddenReLUModel", "LinearOutputModel", "LitToyModel", "ReLUOutputModel", "SparseFeatureDataModule", "ToyModel"]
__version__ = "0.2.0"
