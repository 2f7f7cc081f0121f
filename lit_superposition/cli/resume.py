"""Resuming a run: read the checkpoint once, check it fits the config, and continue the run it belongs to.

What a resume may change in a run directory: it continues the TensorBoard curves (new events from
the checkpoint's step on; the old events stay on disk) and writes a new ``config.yaml``,
``checkpoints/``, ``snapshots.pt``, ``report.json`` and report page. Before it writes anything,
everything else in the run directory (all of those, and any figure an analysis command put there)
is moved, as it is, into ``previous/N/`` (N = 1, 2, ... for successive resumes): nothing the
stopped run wrote is lost, and no stale figure stays on the new page. A checkpoint whose model or
data differ from the config's (variant, shapes, target, importance, grid, feature probabilities,
sets, values) is refused with one line, before any of that.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from lit_superposition.errors import ConfigError

CKPT_KEYWORDS = ("last", "best", "hpc", "registry")  # Lightning's special ckpt_path values
PREVIOUS_DIR = "previous"
#: What a run keeps of every run before a resume: its TensorBoard events (the curves continue).
KEPT_IN_PLACE = ("events.out.tfevents.", PREVIOUS_DIR)


def load_checkpoint(path: str) -> dict[str, Any]:
    """Load a checkpoint to resume from (on the CPU), or raise a one-line :class:`ConfigError`."""
    if path in CKPT_KEYWORDS:
        raise ConfigError(f"ckpt_path {path!r}: name the checkpoint file, e.g. runs/<config>/version_N/checkpoints/last.ckpt")
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


def check_checkpoint_fits(checkpoint: dict[str, Any], module: Any, datamodule: Any, path: str) -> None:
    """Raise a one-line :class:`ConfigError` when the checkpoint is not of the configured model and data.

    Args:
        checkpoint: The loaded checkpoint.
        module: The configured :class:`~lit_superposition.module.LitToyModel`.
        datamodule: The configured datamodule (its ``definition()`` where it has one).
        path: The ``ckpt_path`` value, for the message.
    """
    saved = checkpoint["state_dict"]
    for name, expected in module.state_dict().items():
        if name not in saved and name.startswith("model.initial_"):
            continue  # a release-0.1 checkpoint: LitToyModel.on_load_checkpoint fills it in from the seeds
        if name not in saved:
            raise ConfigError(f"ckpt_path {path!r} does not match the config: it has no {name}")
        if tuple(saved[name].shape) != tuple(expected.shape):
            raise ConfigError(
                f"ckpt_path {path!r} does not match the config: {name} has shape {tuple(saved[name].shape)} in the "
                f"checkpoint but {tuple(expected.shape)} in the config (resume with the run's config.yaml)"
            )
    definitions = [("model", checkpoint.get("model_definition"), module.definition)]
    data_state = checkpoint.get(type(datamodule).__qualname__) if datamodule is not None else None
    if isinstance(data_state, dict) and hasattr(datamodule, "definition"):
        definitions.append(("data", data_state.get("definition"), datamodule.definition()))
    for section, stored, configured in definitions:
        if stored is None:
            continue  # a checkpoint of an earlier release: the shapes are all it can be checked by
        for key in configured:
            if key in stored and stored[key] != configured[key]:
                raise ConfigError(
                    f"ckpt_path {path!r} is of another experiment: {section} {key} is {_short(key, stored[key])} in the"
                    f" checkpoint but {_short(key, configured[key])} in the config (resume with the run's config.yaml,"
                    " or start a new run)"
                )


def _short(key: str, value: Any) -> str:
    """A stored value as the config writes it (a variant by its ``model.variant`` name), at most 60 characters."""
    if key == "variant":
        from lit_superposition.models import VARIANTS

        value = next((name for name, cls in VARIANTS.items() if cls.__name__ == value), value)
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def resume_in_run_directory(config: Any, ckpt_path: Path, global_step: int) -> Path | None:
    """Resuming from ``<run>/checkpoints/X.ckpt`` logs into ``<run>`` again: one run, one directory.

    TensorBoard drops the events the stopped run logged after the checkpoint (``purge_step``), so
    the curves continue without overlap. Returns the run directory, or None for a checkpoint elsewhere.
    """
    run = ckpt_path.resolve().parent.parent
    logger = config.trainer.get("logger")
    if ckpt_path.resolve().parent.name != "checkpoints" or not (run / "config.yaml").is_file():
        return None
    if not hasattr(logger, "class_path") or not logger.class_path.endswith("TensorBoardLogger"):
        return None
    # Relative where the run is under the working directory, as the run first wrote it: the
    # checkpoint callback then finds its own dirpath again (no "dirpath has changed" warning).
    save_dir = run.parent.parent
    logger.init_args.save_dir = os.path.relpath(save_dir) if save_dir.is_relative_to(Path.cwd()) else str(save_dir)
    logger.init_args.name = run.parent.name
    logger.init_args.version = run.name
    logger.init_args.purge_step = global_step
    return run


def keep_previous_files(run: Path, ckpt_path: Path) -> tuple[Path, Path]:
    """Move what a resumed run would replace into ``run/previous/N/``.

    Returns:
        Where the checkpoint to resume from is now, and the folder the files went to.
    """
    previous = run / PREVIOUS_DIR
    number = 1 + max((int(p.name) for p in previous.glob("*") if p.name.isdigit()), default=0)
    kept = previous / str(number)
    kept.mkdir(parents=True)
    resolved = ckpt_path.resolve()
    for entry in sorted(run.iterdir()):
        if not entry.name.startswith(KEPT_IN_PLACE):
            shutil.move(str(entry), str(kept / entry.name))
    moved = kept / resolved.relative_to(run.resolve())
    return moved, kept


def check_writable(folder: Path, option: str) -> None:
    """Raise a one-line :class:`ConfigError` when the run directory ``folder`` cannot be written.

    Tried, not inferred from permission bits (which say nothing to root or on a read-only mount):
    an unnamed temporary file is made in the nearest folder that exists, and goes with it.

    Args:
        folder: The run directory fit would write (it need not exist yet).
        option: The option that moves it, for the message.
    """
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    try:
        if not existing.is_dir():
            raise NotADirectoryError(f"{existing} is a file")
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        reason = error.strerror or str(error)
        raise ConfigError(
            f"cannot write the run directory {folder}: {existing.resolve()} is not writable ({reason});"
            f" choose where runs go with {option} DIR"
        ) from None
