"""Infinite streams of synthetic sparse features, generated on the training device."""

from lit_superposition.datamodules.sparse import SparseFeatureDataModule, StepKeys, step_seed

__all__ = ["SparseFeatureDataModule", "StepKeys", "step_seed"]
