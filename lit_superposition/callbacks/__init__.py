"""Lightning callbacks: one measurement (or tool) per file, all writing through the Lightning logger."""

from lit_superposition.callbacks.base import MeasurementCallback
from lit_superposition.callbacks.checkpoint import RunCheckpoint
from lit_superposition.callbacks.crossover_report import CrossoverReport
from lit_superposition.callbacks.feature_geometry import FeatureGeometry
from lit_superposition.callbacks.feature_grad_norms import FeatureGradNorms
from lit_superposition.callbacks.feature_losses import FeatureLosses
from lit_superposition.callbacks.geometry_report import GeometryReport
from lit_superposition.callbacks.geometry_snapshots import GeometrySnapshots
from lit_superposition.callbacks.interrupt import GracefulStop
from lit_superposition.callbacks.nonfinite_loss import NonFiniteLossStop
from lit_superposition.callbacks.phase_diagram import PhaseDiagram
from lit_superposition.callbacks.progress import StepProgressBar
from lit_superposition.callbacks.template_start import Template, TemplateStart
from lit_superposition.callbacks.thread_policy import ThreadPolicy
from lit_superposition.callbacks.weight_patching import WeightPatching

__all__ = [
    "CrossoverReport",
    "FeatureGeometry",
    "FeatureGradNorms",
    "FeatureLosses",
    "GeometryReport",
    "GeometrySnapshots",
    "GracefulStop",
    "MeasurementCallback",
    "NonFiniteLossStop",
    "PhaseDiagram",
    "RunCheckpoint",
    "StepProgressBar",
    "Template",
    "TemplateStart",
    "ThreadPolicy",
    "WeightPatching",
]
