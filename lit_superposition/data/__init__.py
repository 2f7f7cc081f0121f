"""Data: specs (``p``, importance, settings and repeats), the phase grid, feature sets, and the step-keyed datamodule.

The spec classes are re-exported here, so configs name them as ``lit_superposition.data.LogSweep``.
"""

from lit_superposition.data.datamodule import SparseFeatureDataModule, StepKeys, step_seed
from lit_superposition.data.grid import GridAxis, PhaseGrid
from lit_superposition.data.specs import (
    FeatureRamp,
    GeometricDecay,
    LogSweep,
    PerSetting,
    SeededRandom,
    SingleFeatureSweep,
    Spec,
)

__all__ = [
    "FeatureRamp",
    "GeometricDecay",
    "GridAxis",
    "LogSweep",
    "PerSetting",
    "PhaseGrid",
    "SeededRandom",
    "SingleFeatureSweep",
    "SparseFeatureDataModule",
    "Spec",
    "StepKeys",
    "step_seed",
]
