"""lit-superposition: PyTorch Lightning framework for toy models of superposition."""

from lit_superposition.datamodules import SparseFeatureDataModule
from lit_superposition.model import ToyModel
from lit_superposition.module import LitToyModel

__all__ = ["LitToyModel", "SparseFeatureDataModule", "ToyModel"]
__version__ = "0.1.0"
