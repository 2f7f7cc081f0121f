"""Lightning callbacks: one measurement (or tool) per file, all writing through the Lightning logger."""

from lit_superposition.callbacks.base import MeasurementCallback
from lit_superposition.callbacks.chen_kgon_start import ChenKGonStart
from lit_superposition.callbacks.checkpoint import RunCheckpoint
from lit_superposition.callbacks.crossover_report import CrossoverReport
from lit_superposition.callbacks.data_point_geometry import DataPointGeometry
from lit_superposition.callbacks.dead_latent_resampling import DeadLatentResampling
from lit_superposition.callbacks.feature_geometry import FeatureGeometry
from lit_superposition.callbacks.feature_grad_norms import FeatureGradNorms
from lit_superposition.callbacks.feature_losses import FeatureLosses
from lit_superposition.callbacks.geometry_report import GeometryReport
from lit_superposition.callbacks.geometry_snapshots import GeometrySnapshots
from lit_superposition.callbacks.interrupt import GracefulStop
from lit_superposition.callbacks.llc_over_training import LLCOverTraining
from lit_superposition.callbacks.nonfinite_loss import NonFiniteLossStop
from lit_superposition.callbacks.phase_diagram import PhaseDiagram
from lit_superposition.callbacks.progress import StepProgressBar
from lit_superposition.callbacks.sae_nonfinite_loss import SAENonFiniteLossStop
from lit_superposition.callbacks.sae_recovery import SAERecovery
from lit_superposition.callbacks.sae_report import SAEReport
from lit_superposition.callbacks.sae_thread_policy import SAEThreadPolicy
from lit_superposition.callbacks.template_start import Template, TemplateStart
from lit_superposition.callbacks.test_loss import TestLoss
from lit_superposition.callbacks.thread_policy import ThreadPolicy
from lit_superposition.callbacks.weight_patching import WeightPatching

__all__ = [
    "ChenKGonStart",
    "CrossoverReport",
    "DataPointGeometry",
    "DeadLatentResampling",
    "FeatureGeometry",
    "FeatureGradNorms",
    "FeatureLosses",
    "GeometryReport",
    "GeometrySnapshots",
    "GracefulStop",
    "LLCOverTraining",
    "MeasurementCallback",
    "NonFiniteLossStop",
    "PhaseDiagram",
    "RunCheckpoint",
    "SAENonFiniteLossStop",
    "SAERecovery",
    "SAEReport",
    "SAEThreadPolicy",
    "StepProgressBar",
    "Template",
    "TemplateStart",
    "TestLoss",
    "ThreadPolicy",
    "WeightPatching",
]
