"""The ``lit-superposition`` command: LightningCLI with linked sizes, bundled configs and run directories."""

from __future__ import annotations

import logging
import re
import sys
import warnings
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentError
from pytorch_lightning import Trainer
from pytorch_lightning.callbacks import Callback, ModelCheckpoint, ProgressBar
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI, LRSchedulerTypeUnion
from torch.optim import Optimizer
from typing_extensions import override

from lit_superposition.callbacks.progress import StepProgressBar
from lit_superposition.datamodules import SparseFeatureDataModule
from lit_superposition.errors import ConfigError
from lit_superposition.module import LitToyModel
from lit_superposition.schedules import WarmupDecay

RUNS_DIR = "runs"
CONFIG_FLAGS = ("--config", "-c")


def bundled_configs() -> dict[str, Path]:
    """The configs shipped with the package, by file name."""
    folder = resources.files("lit_superposition") / "configs"
    return {entry.name: Path(str(entry)) for entry in sorted(folder.iterdir(), key=lambda e: e.name) if entry.name.endswith(".yaml")}


def resolve_config_path(value: str) -> Path:
    """A ``--config`` value as a path: first as given, then as a bundled config name (``.yaml`` optional)."""
    path = Path(value)
    if path.is_file():
        return path
    bundled = bundled_configs()
    for name in (path.name, f"{path.name}.yaml"):
        if path.parent == Path(".") and name in bundled:
            return bundled[name]
    raise ConfigError(
        f"config {value!r} not found: it is neither a file nor a bundled config ({', '.join(sorted(bundled))})"
    )


def resolve_config_args(argv: Sequence[str]) -> tuple[list[str], str | None]:
    """Replace every ``--config`` value by a resolvable path.

    Returns:
        The rewritten arguments and the experiment name (the first config's stem), if any.
    """
    resolved: list[str] = []
    name = None
    args = iter(argv)
    for arg in args:
        flag, value = arg, None
        if "=" in arg and arg.split("=", 1)[0] in CONFIG_FLAGS:
            flag, value = arg.split("=", 1)
        elif arg in CONFIG_FLAGS:
            value = next(args, None)
            if value is None:
                raise ConfigError("--config needs a value: a YAML path or a bundled config name")
        if value is None:
            resolved.append(arg)
            continue
        path = resolve_config_path(value)
        name = name or path.stem
        resolved += [flag, str(path)]
    return resolved, name


def _quiet_lightning() -> None:
    """Silence Lightning's notices that say nothing about this run."""
    for message in (
        r".*args parameter is intended to run from within Python.*",  # main() always passes args
        r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",  # Lightning internals on newer torch
    ):
        warnings.filterwarnings("ignore", message=message)
    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(
        lambda record: not str(record.msg).startswith("💡 Tip")
    )


def _one_line(message: str, limit: int = 400) -> str:
    text = re.sub(r"\s+", " ", message).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


class LitSuperpositionCLI(LightningCLI):
    """LightningCLI for toy models: sizes written once, in ``data``, and linked to ``model``."""

    @override
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.n_instances", "model.n_instances")
        parser.link_arguments("data.n_features", "model.n_features")
        parser.link_arguments("data.repeats", "model.repeats")
        # Forced callbacks: always on, configurable as `progress_bar.*` and `checkpoint.*`.
        parser.add_lightning_class_args(StepProgressBar, "progress_bar")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.save_last": True, "checkpoint.every_n_train_steps": 1000})

    @override
    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except (ValueError, TypeError) as error:
            raise ConfigError(str(error)) from None

    @override
    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Callback]) -> Trainer:
        if config.get("enable_progress_bar") is False:
            # `--trainer.enable_progress_bar=false` turns the always-on bar off instead of failing.
            callbacks = [callback for callback in callbacks if not isinstance(callback, ProgressBar)]
        return super()._instantiate_trainer(config, callbacks)

    @override
    def _add_configure_optimizers_method_to_model(self, subcommand: str | None) -> None:
        # Replacing LitToyModel's default AdamW is what --optimizer is for: no warning needed.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*configure_optimizers` will be overridden.*")
            super()._add_configure_optimizers_method_to_model(subcommand)

    @staticmethod
    @override
    def configure_optimizers(
        lightning_module: LitToyModel, optimizer: Optimizer, lr_scheduler: LRSchedulerTypeUnion | None = None
    ) -> Any:
        if lr_scheduler is None:
            return optimizer
        if isinstance(lr_scheduler, WarmupDecay) and lr_scheduler.total_steps is None:
            max_steps = lightning_module.trainer.max_steps
            lr_scheduler.total_steps = max_steps if max_steps > 0 else None
        # The stream is one endless epoch: schedules must step with the optimizer, not per epoch.
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": lr_scheduler, "interval": "step"}}


def _description() -> str:
    names = ", ".join(name for name in bundled_configs())
    return (
        "Train instanced toy models of superposition with PyTorch Lightning. "
        f"Bundled configs (use by name, e.g. `lit-superposition fit --config pentagon.yaml`): {names}."
    )


def build_cli(args: Sequence[str], run: bool = True) -> LitSuperpositionCLI:
    """Parse ``args`` (config names resolved), build the trainer, model and data, and run the subcommand."""
    _quiet_lightning()
    argv, name = resolve_config_args(args)
    return LitSuperpositionCLI(
        LitToyModel,
        SparseFeatureDataModule,
        args=argv,
        run=run,
        seed_everything_default=False,
        parser_kwargs={
            "description": _description(),
            "exit_on_error": False,
            **{cmd: {"exit_on_error": False} for cmd in ("fit", "validate", "test", "predict")},
        },
        trainer_defaults={
            "max_epochs": -1,
            "max_steps": 10_000,
            "log_every_n_steps": 50,
            "logger": {
                "class_path": "pytorch_lightning.loggers.TensorBoardLogger",
                "init_args": {"save_dir": RUNS_DIR, "name": name or "default", "default_hp_metric": False},
            },
        },
    )


def main(args: Sequence[str] | None = None) -> None:
    """Entry point of the ``lit-superposition`` command: bad input exits with code 2 and one line."""
    try:
        build_cli(list(sys.argv[1:] if args is None else args))
    except (ArgumentError, ConfigError) as error:
        print(f"lit-superposition: error: {_one_line(str(error))}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
