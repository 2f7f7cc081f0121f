"""The LightningCLI class: sizes linked from ``data``, the default instruments, bundled configs and run directories."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentError
from pytorch_lightning import Trainer
from pytorch_lightning.callbacks import Callback, ProgressBar
from pytorch_lightning.cli import (
    LightningArgumentParser,
    LightningCLI,
    LRSchedulerTypeUnion,
    instantiate_class,
)
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from pytorch_lightning.utilities.rank_zero import rank_zero_only
from torch.optim import Optimizer
from typing_extensions import override

from lit_superposition.callbacks import (
    FeatureGeometry,
    FeatureGradNorms,
    FeatureLosses,
    GeometryReport,
    GeometrySnapshots,
    GracefulStop,
    NonFiniteLossStop,
    RunCheckpoint,
    StepProgressBar,
)
from lit_superposition.cli.configs import bundled_configs, resolve_config_args
from lit_superposition.cli.messages import quiet_lightning
from lit_superposition.cli.resume import (
    CKPT_KEYWORDS,
    check_checkpoint_shapes,
    load_checkpoint,
    resume_in_run_directory,
)
from lit_superposition.data import SparseFeatureDataModule
from lit_superposition.errors import ConfigError
from lit_superposition.module import LitToyModel
from lit_superposition.schedules import WarmupDecay

RUNS_DIR = "runs"

#: The default instruments, declared once for every run: ``instruments.NAME`` in YAML or on the
#: command line changes one (``--instruments.feature_losses.every_n_steps 50``) or drops it
#: (``--instruments.feature_losses null``).
INSTRUMENTS: dict[str, tuple[type[Callback], dict[str, Any]]] = {
    "feature_grad_norms": (FeatureGradNorms, {"every_n_steps": 200}),
    "feature_losses": (FeatureLosses, {"every_n_steps": 200}),
    "feature_geometry": (FeatureGeometry, {"every_n_steps": 200}),
    "geometry_snapshots": (GeometrySnapshots, {"spacing": "log", "n_snapshots": 50}),
    "geometry_report": (GeometryReport, {}),
}


class LitSuperpositionCLI(LightningCLI):
    """LightningCLI for toy models: sizes written once, in ``data``, and linked to ``model``.

    Only ``fit`` is offered: the stream has no validation, test or prediction sets (the end-of-fit
    report evaluates on fresh batches instead).
    """

    @staticmethod
    @override
    def subcommands() -> dict[str, set[str]]:
        return {"fit": {"model", "train_dataloaders", "val_dataloaders", "datamodule"}}

    @override
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.n_instances", "model.n_instances")
        parser.link_arguments("data.n_features", "model.n_features")
        parser.link_arguments("data.repeats", "model.repeats")
        parser.link_arguments("data.target", "model.target")
        parser.link_arguments("data.grid", "model.grid")
        # Forced callbacks: always on, configurable as `progress_bar.*`, `checkpoint.*`, ...
        parser.add_lightning_class_args(StepProgressBar, "progress_bar")
        parser.add_lightning_class_args(RunCheckpoint, "checkpoint")
        parser.add_lightning_class_args(GracefulStop, "interrupt")
        parser.add_lightning_class_args(NonFiniteLossStop, "nonfinite_loss")
        for name, (callback, settings) in INSTRUMENTS.items():
            key = f"instruments.{name}"
            parser.add_lightning_class_args(callback, key, subclass_mode=True, required=False)
            parser.set_defaults({key: {"class_path": f"{callback.__module__}.{callback.__name__}", "init_args": settings}})
        parser.add_argument("--report_page", type=bool, default=True,
                            help="Write RUN_DIR/report/index.html when fit ends (lit-superposition report redraws it).")
        # A resumed run writes into the run it continues: last.ckpt is overwritten, never versioned.
        parser.set_defaults({
            "checkpoint.save_last": True, "checkpoint.every_n_train_steps": 1000,
            "checkpoint.enable_version_counter": False,
        })

    @override
    def before_instantiate_classes(self) -> None:
        config = self.config.get(str(self.subcommand), self.config)
        trainer = config.get("trainer")
        if trainer is not None:
            every = trainer.get("log_every_n_steps")
            if every is not None and every < 1:
                raise ConfigError(f"trainer.log_every_n_steps must be >= 1, got {every}")
        _check_schedule(config)
        if self._checkpoint is not None:
            resume_in_run_directory(config, Path(config.ckpt_path), self._checkpoint["global_step"])

    @override
    def _parse_ckpt_path(self) -> None:
        # Lightning would replace the model's settings by the checkpoint's; here the config stays the
        # definition of the run, and a checkpoint that does not fit it is bad input (see before_fit).
        self._checkpoint = None
        config = self.config.get(str(self.config.get("subcommand")), self.config)
        ckpt_path = config.get("ckpt_path")
        if ckpt_path is not None and ckpt_path not in CKPT_KEYWORDS:
            self._checkpoint = load_checkpoint(ckpt_path)

    @override
    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except (ValueError, TypeError, MisconfigurationException) as error:
            raise ConfigError(str(error)) from None

    def before_fit(self) -> None:
        """Check that the checkpoint to resume from fits the configured model, and that the trainer's
        settings suit the model's steps per call, before any file is written (and before Lightning's
        own check, which would not be one line)."""
        self.model.check_trainer(self.trainer)
        if self._checkpoint is not None:
            check_checkpoint_shapes(self._checkpoint, self.model.state_dict(), self.config.fit.ckpt_path)
            self._checkpoint = None  # Lightning loads it again; keep no second copy

    @override
    def _run_subcommand(self, subcommand: str) -> None:
        # Bad input found once fit has started (e.g. a callback's setup) must leave no run directory.
        log_dir = _tensorboard_log_dir(self.trainer)
        new = [] if log_dir is None else [p for p in (log_dir, *log_dir.parents) if not p.exists()]
        try:
            super()._run_subcommand(subcommand)
        except (ConfigError, ArgumentError):
            if new and rank_zero_only.rank == 0 and not any(new[0].rglob("*.ckpt")):
                shutil.rmtree(new[-1], ignore_errors=True)
            raise

    @override
    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Callback]) -> Trainer:
        callbacks = [callback for callback in callbacks if callback is not None]  # instruments set to null
        if config.get("enable_progress_bar") is False:
            # `--trainer.enable_progress_bar=false` turns the always-on bar off instead of failing.
            callbacks = [callback for callback in callbacks if not isinstance(callback, ProgressBar)]
        return super()._instantiate_trainer(config, callbacks)

    @override
    def _add_configure_optimizers_method_to_model(self, subcommand: str | None) -> None:
        config = self.config_init.get(str(self.subcommand), self.config_init)
        if not config.get("optimizer") and config.get("lr_scheduler"):
            # LightningCLI would silently drop a scheduler given without an optimizer: give it
            # LitToyModel's default optimizer instead. (Not a parser default: jsonargparse would carry
            # AdamW's weight_decay over to `--optimizer SGD`.)
            config["optimizer"] = {"class_path": "torch.optim.AdamW", "init_args": {"lr": 1e-3}}
        if config.get("optimizer"):
            # Name the setting at fault: torch's own messages ("Invalid learning rate: -1.0") do not.
            try:
                instantiate_class(self.model.parameters(), config["optimizer"])
            except (ValueError, TypeError) as error:
                raise ConfigError(f"optimizer: {error}") from None
        # Replacing LitToyModel's default AdamW is what --optimizer is for: no warning needed.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*configure_optimizers` will be overridden.*")
            try:
                super()._add_configure_optimizers_method_to_model(subcommand)
            except (ValueError, TypeError) as error:
                raise ConfigError(f"lr_scheduler: {error}") from None

    @staticmethod
    @override
    def configure_optimizers(
        lightning_module: LitToyModel, optimizer: Optimizer, lr_scheduler: LRSchedulerTypeUnion | None = None
    ) -> Any:
        if lr_scheduler is None:
            return optimizer
        if isinstance(lr_scheduler, WarmupDecay) and lr_scheduler.total_steps is None:
            # Its fit with trainer.max_steps was checked before any file was written (_check_schedule).
            max_steps = lightning_module.trainer.max_steps
            lr_scheduler.total_steps = max_steps if max_steps > 0 else None
        # The stream is one endless epoch: schedules must step with the optimizer, not per epoch.
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": lr_scheduler, "interval": "step"}}


def _check_schedule(config: Any) -> None:
    """A decaying WarmupDecay must end after its warmup, within trainer.max_steps (checked before any file is written)."""
    schedule, trainer = config.get("lr_scheduler"), config.get("trainer")
    if schedule is None or trainer is None or not str(getattr(schedule, "class_path", "")).endswith("WarmupDecay"):
        return
    args, max_steps = schedule.get("init_args") or {}, trainer.get("max_steps")
    decay, warmup, total = args.get("decay", "constant"), args.get("warmup_steps", 0), args.get("total_steps")
    if decay == "constant" or total is not None or not isinstance(max_steps, int) or not isinstance(warmup, int):
        return
    if max_steps <= 0:
        raise ConfigError(f"lr_scheduler.decay={decay!r} needs trainer.max_steps > 0, got {max_steps}")
    if max_steps <= warmup:
        raise ConfigError(f"lr_scheduler.warmup_steps ({warmup}) must be below trainer.max_steps ({max_steps})")


def _tensorboard_log_dir(trainer: Trainer | None) -> Path | None:
    logger = getattr(trainer, "logger", None)
    if logger is None or not hasattr(logger, "root_dir"):
        return None
    return Path(logger.log_dir)


def _description() -> str:
    names = ", ".join(name for name in bundled_configs())
    return (
        "Train instanced toy models of superposition with PyTorch Lightning. "
        f"Bundled configs (use by name, e.g. `lit-superposition fit --config pentagon.yaml`): {names}."
    )


def build_cli(args: Sequence[str], run: bool = True) -> LitSuperpositionCLI:
    """Parse ``args`` (config names resolved), build the trainer, model and data, and run the subcommand."""
    quiet_lightning()
    argv, name = resolve_config_args(args)
    return LitSuperpositionCLI(
        LitToyModel,
        SparseFeatureDataModule,
        args=argv,
        run=run,
        seed_everything_default=False,
        save_config_kwargs={"overwrite": True},  # a resumed run rewrites its own config.yaml
        parser_kwargs={
            "description": _description(),
            "exit_on_error": False,
            "allow_abbrev": False,  # `--data.n_feature 6` is an error, not n_features
            "fit": {"exit_on_error": False, "allow_abbrev": False},
        },
        trainer_defaults={
            "max_epochs": -1,
            "max_steps": 10_000,
            "log_every_n_steps": 50,
            "enable_model_summary": False,  # a table of one module with FLOPs 0 says nothing here
            "logger": {
                "class_path": "pytorch_lightning.loggers.TensorBoardLogger",
                "init_args": {"save_dir": RUNS_DIR, "name": name or "default", "default_hp_metric": False},
            },
        },
    )


