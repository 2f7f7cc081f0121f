"""Lightning callbacks: one measurement (or tool) per file, all writing through the Lightning logger."""

from lit_superposition.callbacks.checkpoint import RunCheckpoint
from lit_superposition.callbacks.interrupt import GracefulStop
from lit_superposition.callbacks.nonfinite_loss import NonFiniteLossStop
from lit_superposition.callbacks.progress import StepProgressBar
from lit_superposition.callbacks.weight_patching import WeightPatching

__all__ = ["GracefulStop", "NonFiniteLossStop", "RunCheckpoint", "StepProgressBar", "WeightPatching"]
