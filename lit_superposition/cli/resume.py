"""Resuming a run: read the checkpoint once, check it fits the config, and log into the run it continues."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from lit_superposition.errors import ConfigError

CKPT_KEYWORDS = ("last", "best", "hpc", "registry")  # Lightning's special ckpt_path values


def load_checkpoint(path: str) -> dict[str, Any]:
    """Load a checkpoint to resume from (on the CPU), or raise a one-line :class:`ConfigError`."""
    if not Path(path).is_file():
        raise ConfigError(
            f"ckpt_path {path!r} not found: expected a checkpoint file, e.g. runs/<config>/version_N/checkpoints/last.ckpt"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001 - any unreadable file is bad input
        raise ConfigError(f"ckpt_path {path!r} is not a readable checkpoint ({type(error).__name__})") from None
    if not isinstance(checkpoint, dict) or not {"state_dict", "global_step"} <= checkpoint.keys():
        raise ConfigError(f"ckpt_path {path!r} is not a Lightning checkpoint (no state_dict or global_step)")
    return checkpoint


def check_checkpoint_shapes(checkpoint: dict[str, Any], shapes: dict[str, Any], path: str) -> None:
    """Raise a one-line :class:`ConfigError` when the checkpoint's tensors do not have the configured shapes.

    Args:
        checkpoint: The loaded checkpoint.
        shapes: Expected shape (a tuple or a tensor of that shape) by state-dict name.
        path: The ``ckpt_path`` value, for the message.
    """
    saved = checkpoint["state_dict"]
    for name, expected in shapes.items():
        expected = tuple(expected.shape) if isinstance(expected, torch.Tensor) else tuple(expected)
        if name not in saved and name.startswith("model.initial_"):
            continue  # a release-0.1 checkpoint: LitToyModel.on_load_checkpoint fills it in from the seeds
        if name not in saved:
            raise ConfigError(f"ckpt_path {path!r} does not match the config: it has no {name}")
        if tuple(saved[name].shape) != expected:
            raise ConfigError(
                f"ckpt_path {path!r} does not match the config: {name} has shape {tuple(saved[name].shape)} in the "
                f"checkpoint but {expected} in the config (resume with the run's config.yaml)"
            )


def resume_in_run_directory(config: Any, ckpt_path: Path, global_step: int) -> None:
    """Resuming from ``<run>/checkpoints/X.ckpt`` logs into ``<run>`` again: one run, one directory.

    TensorBoard drops the events the stopped run logged after the checkpoint (``purge_step``), so
    the curves continue without overlap.
    """
    run = ckpt_path.resolve().parent.parent
    logger = config.trainer.get("logger")
    if ckpt_path.resolve().parent.name != "checkpoints" or not (run / "config.yaml").is_file():
        return
    if not hasattr(logger, "class_path") or not logger.class_path.endswith("TensorBoardLogger"):
        return
    # Relative where the run is under the working directory, as the run first wrote it: the
    # checkpoint callback then finds its own dirpath again (no "dirpath has changed" warning).
    save_dir = run.parent.parent
    logger.init_args.save_dir = os.path.relpath(save_dir) if save_dir.is_relative_to(Path.cwd()) else str(save_dir)
    logger.init_args.name = run.parent.name
    logger.init_args.version = run.name
    logger.init_args.purge_step = global_step
