"""Data: specs (``p``, importance, settings and repeats), the phase grid, feature sets, finite training sets, the step-keyed datamodule, and a frozen run's activations (for SAEs).

The spec classes are re-exported here, so configs name them as ``lit_superposition.data.LogSweep``.
"""

from lit_superposition.data.activations import SourceActivations
from lit_superposition.data.datamodule import EVALUATION_STEP, SparseFeatureDataModule, StepKeys, step_seed
from lit_superposition.data.finite import PackedSets
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
    "EVALUATION_STEP",
    "PackedSets",
    "FeatureRamp",
    "GeometricDecay",
    "GridAxis",
    "LogSweep",
    "PerSetting",
    "PhaseGrid",
    "SeededRandom",
    "SingleFeatureSweep",
    "SourceActivations",
    "SparseFeatureDataModule",
    "Spec",
    "StepKeys",
    "step_seed",
]
