"""lit-superposition: PyTorch Lightning framework for toy models of superposition."""

import os

# Toy-model kernels are tiny: OpenMP threads that spin between them (the default, ACTIVE) take a
# core each, and two or three runs on a 2-core machine then collapse (a 1500-step hexagon run took
# 94 s beside one other busy process, 13 s with PASSIVE). Set before torch loads its OpenMP
# runtime; OMP_WAIT_POLICY=ACTIVE in the environment restores spinning.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from lit_superposition.data import SparseFeatureDataModule  # noqa: E402
from lit_superposition.models import HiddenReLUModel, LinearOutputModel, ReLUOutputModel, ToyModel  # noqa: E402
from lit_superposition.module import LitToyModel  # noqa: E402

__all__ = ["HiddenReLUModel", "LinearOutputModel", "LitToyModel", "ReLUOutputModel", "SparseFeatureDataModule", "ToyModel"]
__version__ = "0.2.0"
