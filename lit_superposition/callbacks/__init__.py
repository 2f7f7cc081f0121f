"""Lightning callbacks: one measurement (or tool) per file, all writing through the Lightning logger."""

from lit_superposition.callbacks.progress import StepProgressBar

__all__ = ["StepProgressBar"]
