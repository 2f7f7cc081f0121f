"""The LightningCLI class of ``lit-superposition fit``: sizes linked from ``data``, the instruments, run directories."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytorch_lightning import Trainer
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from pytorch_lightning.utilities.rank_zero import rank_zero_only
from typing_extensions import override

from lit_superposition.callbacks import (
    DataPointGeometry,
    FeatureGeometry,
    FeatureGradNorms,
    FeatureLosses,
    GeometryReport,
    GeometrySnapshots,
    GracefulStop,
    NonFiniteLossStop,
    RunCheckpoint,
    StepProgressBar,
    TestLoss,
    ThreadPolicy,
)
from lit_superposition.cli.configs import bundled_configs, resolve_config_args
from lit_superposition.cli.messages import quiet_lightning
from lit_superposition.cli.resume import (
    check_checkpoint_fits,
    check_writable,
    keep_previous_files,
    load_checkpoint,
    resume_in_run_directory,
)
from lit_superposition.data import SparseFeatureDataModule
from lit_superposition.errors import ConfigError
from lit_superposition.module import LitToyModel
from lit_superposition.protocols import InstanceSplit
from lit_superposition.schedules import WarmupDecay  # noqa: F401 - makes --model.lr_scheduler WarmupDecay resolvable by name
from lit_superposition.steps import check_trainer
from lit_superposition.strategies import StepwiseDDPStrategy

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
    # Finite training sets only (data.dataset_size); nothing on the endless stream.
    "test_loss": (TestLoss, {"every_n_steps": 200}),
    "data_point_geometry": (DataPointGeometry, {}),
}


class LitSuperpositionCLI(LightningCLI):
    """LightningCLI for toy models: sizes written once, in ``data``, and linked to ``model``.

    Besides Lightning's ``trainer``, ``model`` and ``data`` sections a config has ``instruments``
    (the measurements every run gets), ``experiment`` (the callbacks that define the experiment:
    weight patching, templates, phase diagrams; kept apart from ``trainer.callbacks`` so that adding
    a callback of one's own never drops them), ``checkpoint``, ``progress_bar``, ``interrupt``,
    ``nonfinite_loss``, ``report_page`` and ``ckpt_path``. There is one command, ``fit``: the
    stream has no validation, test or prediction sets (the end-of-fit report evaluates on fresh batches).
    """

    #: What a kind of run varies in the shared sections (:class:`~lit_superposition.cli.sae.SAECLI` sets its own).
    INSTRUMENTS = INSTRUMENTS
    NONFINITE_STOP: type[Callback] = NonFiniteLossStop
    THREAD_POLICY: type[Callback] = ThreadPolicy
    EXPERIMENT_HELP = "The callbacks that define the experiment (weight patching, templates, phase diagrams)."
    CKPT_EXAMPLE = "pentagon"

    @override
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.n_instances", "model.n_instances")
        parser.link_arguments("data.n_features", "model.n_features")
        parser.link_arguments("data.repeats", "model.repeats")
        parser.link_arguments("data.target", "model.target")
        parser.link_arguments("data.grid", "model.grid")
        self.add_run_arguments(parser)

    def add_run_arguments(self, parser: LightningArgumentParser) -> None:
        """The sections every run has, toy model or SAE: stops, checkpoint, progress bar, instruments, experiment."""
        # Always on, configurable as `interrupt.*` and `nonfinite_loss.*`.
        parser.add_lightning_class_args(GracefulStop, "interrupt")
        parser.add_lightning_class_args(self.NONFINITE_STOP, "nonfinite_loss")
        # On unless the trainer turns them off (enable_checkpointing / enable_progress_bar: false).
        parser.add_class_arguments(RunCheckpoint, "checkpoint", instantiate=True)
        parser.add_class_arguments(StepProgressBar, "progress_bar", instantiate=True)
        # A resumed run writes into the run it continues: last.ckpt is overwritten, never versioned.
        parser.set_defaults({
            "checkpoint.save_last": True, "checkpoint.every_n_train_steps": 1000, "checkpoint.enable_version_counter": False,
        })
        for name, (callback, settings) in self.INSTRUMENTS.items():
            key = f"instruments.{name}"
            parser.add_subclass_arguments(callback, key, required=False)
            parser.set_defaults({key: {"class_path": f"{callback.__module__}.{callback.__name__}", "init_args": settings}})
        parser.add_argument("--experiment", type=list[Callback] | None, default=None, help=self.EXPERIMENT_HELP)
        parser.add_argument("--report_page", type=bool, default=True,
                            help="Write RUN_DIR/report/index.html when fit ends (lit-superposition report redraws it).")
        parser.add_argument("--ckpt_path", type=str | None, default=None,
                            help=f"A checkpoint to resume from, e.g. runs/{self.CKPT_EXAMPLE}/version_0/checkpoints/last.ckpt.")

    @override
    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        super().parse_arguments(parser, args)
        # Read (and check) the checkpoint before anything else touches it: one line for a bad file.
        ckpt_path = self.config.get("ckpt_path")
        self.checkpoint = load_checkpoint(ckpt_path) if ckpt_path is not None else None

    @override
    def before_instantiate_classes(self) -> None:
        config = self.config
        every = config.trainer.get("log_every_n_steps")
        if every is not None and every < 1:
            raise ConfigError(f"trainer.log_every_n_steps must be >= 1, got {every}")
        if config.trainer.get("strategy") == "ddp":
            # DDP's wrapper expects one backward pass per call; this one averages at every optimizer step.
            config.trainer.strategy = StepwiseDDPStrategy.strategy_name
        _check_schedule(config)
        self.resumed_run = None
        if self.checkpoint is not None:
            self.resumed_run = resume_in_run_directory(config, Path(config.ckpt_path), self.checkpoint["global_step"])

    @override
    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except (ValueError, TypeError, MisconfigurationException) as error:
            raise ConfigError(str(error)) from None

    @override
    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        config, trainer = self.config_init, self.config_init["trainer"]
        callbacks = list(trainer.get("callbacks") or []) + self.experiment_tools(config)
        callbacks += [c for c in (config["instruments"] or {}).values() if c is not None]
        callbacks += list(config.get("experiment") or [])
        if trainer.get("enable_checkpointing") is not False:
            callbacks.append(config["checkpoint"])
        if trainer.get("enable_progress_bar") is not False:
            callbacks.append(config["progress_bar"])
        callbacks.append(self.THREAD_POLICY())
        return super().instantiate_trainer(callbacks=callbacks, **kwargs)

    def experiment_tools(self, config: Any) -> list[Callback]:
        """Callbacks of this kind of run that come before the instruments (none for toy models)."""
        return []

    def check_before_fit(self) -> None:
        """Refuse, in one line and before any file is written, what fit could not honour."""
        check_trainer(self.trainer, self.model.steps_per_call)
        strategy = self.trainer.strategy
        if isinstance(strategy, InstanceSplit):
            # Before Lightning's launcher starts the processes the strategy may not know their number yet.
            world_size = max(self.trainer.world_size, self.trainer.num_devices * self.trainer.num_nodes)
            strategy.check_instances(self.model.model.n_instances, world_size)
        if self.checkpoint is not None:
            check_checkpoint_fits(self.checkpoint, self.model, self.datamodule, self.config.ckpt_path)
        log_dir = _tensorboard_log_dir(self.trainer)
        if log_dir is not None:
            check_writable(log_dir, "--trainer.logger.init_args.save_dir")
        else:
            check_writable(Path(self.trainer.default_root_dir), "--trainer.default_root_dir")

    def fit(self) -> None:
        """Train; bad input found once fit has started (e.g. in a callback's setup) leaves no new run directory."""
        self.check_before_fit()
        ckpt_path = self.config.ckpt_path
        if self.resumed_run is not None:
            # Nothing the stopped run wrote is lost: what the resumed run would replace is moved aside first.
            ckpt_path, kept = keep_previous_files(self.resumed_run, Path(ckpt_path))
            rank_zero_only(print)(f"resuming {_shown(self.resumed_run)} from step {self.checkpoint['global_step']}: the files"
                                  f" the stopped run wrote are kept in {_shown(kept)} (the curves continue)")
        self.checkpoint = None  # Lightning loads it again; keep no second copy
        log_dir = _tensorboard_log_dir(self.trainer)
        new = [] if log_dir is None else [p for p in (log_dir, *log_dir.parents) if not p.exists()]
        try:
            self.trainer.fit(self.model, datamodule=self.datamodule, ckpt_path=ckpt_path)
        except ConfigError:
            if new and rank_zero_only.rank == 0 and not any(new[0].rglob("*.ckpt")):
                shutil.rmtree(new[-1], ignore_errors=True)
            raise


def _check_schedule(config: Any) -> None:
    """A decaying WarmupDecay must end after its warmup, within trainer.max_steps (checked before any file is written)."""
    schedule = config.model.get("lr_scheduler")
    if schedule is None or not str(getattr(schedule, "class_path", "")).endswith("WarmupDecay"):
        return
    args, max_steps = schedule.get("init_args") or {}, config.trainer.get("max_steps")
    decay, warmup, total = args.get("decay", "constant"), args.get("warmup_steps", 0), args.get("total_steps")
    if decay == "constant" or total is not None or not isinstance(max_steps, int) or not isinstance(warmup, int):
        return
    if max_steps <= 0:
        raise ConfigError(f"model.lr_scheduler.decay={decay!r} needs trainer.max_steps > 0, got {max_steps}")
    if max_steps <= warmup:
        raise ConfigError(f"model.lr_scheduler.warmup_steps ({warmup}) must be below trainer.max_steps ({max_steps})")


def _shown(path: Path) -> str:
    """A path as the user would type it: relative to the working directory where it is under it."""
    return os.path.relpath(path) if path.resolve().is_relative_to(Path.cwd()) else str(path)


def _tensorboard_log_dir(trainer: Trainer | None) -> Path | None:
    logger = getattr(trainer, "logger", None)
    if logger is None or not hasattr(logger, "root_dir"):
        return None
    return Path(logger.log_dir)


def description() -> str:
    names = ", ".join(name for name in bundled_configs())
    return (
        "Train instanced toy models of superposition with PyTorch Lightning. "
        f"Bundled configs (use by name, e.g. `lit-superposition fit --config pentagon.yaml`): {names}."
    )


def build_cli(args: Sequence[str], run: bool = True) -> LitSuperpositionCLI:
    """Parse ``args`` (``fit`` first, config names resolved), build the trainer, model and data, and fit if ``run``."""
    args = list(args)
    argv, name = resolve_config_args(args[1:] if args[:1] == ["fit"] else args)
    from lit_superposition.cli import sae  # SAE runs: a config with a top-level `source` (cli/sae.py)

    cli_class, classes = (sae.SAECLI, sae.SAE_CLASSES) if sae.is_sae_run(argv) else (LitSuperpositionCLI, (LitToyModel, SparseFeatureDataModule))
    with quiet_lightning():  # scoped: a script that calls build_cli keeps its own warning filters
        cli = cli_class(
            *classes,
            args=argv,
            run=False,
            auto_configure_optimizers=False,
            seed_everything_default=False,
            save_config_kwargs={"overwrite": True},  # a resumed run first moves the old config.yaml aside
            parser_kwargs={"prog": "lit-superposition fit", "description": description(), "exit_on_error": False, "allow_abbrev": False},
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
        if run:
            cli.fit()
    return cli
