"""Lightning callbacks: one measurement (or tool) per file, all writing through the Lightning logger."""

from lit_superposition.callbacks.feature_geometry import FeatureGeometry
from lit_superposition.callbacks.feature_grad_norms import FeatureGradNorms
from lit_superposition.callbacks.feature_losses import FeatureLosses
from lit_superposition.callbacks.geometry_report import GeometryReport
from lit_superposition.callbacks.geometry_snapshots import GeometrySnapshots
from lit_superposition.callbacks.progress import StepProgressBar

__all__ = [
    "FeatureGeometry",
    "FeatureGradNorms",
    "FeatureLosses",
    "GeometryReport",
    "GeometrySnapshots",
    "StepProgressBar",
]
