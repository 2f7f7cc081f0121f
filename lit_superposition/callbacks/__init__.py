"""Lightning callbacks: one measurement (or tool) per file, all writing through the Lightning logger."""

from lit_superposition.callbacks.progress import StepProgressBar
from lit_superposition.callbacks.weight_patching import WeightPatching

__all__ = ["StepProgressBar", "WeightPatching"]
