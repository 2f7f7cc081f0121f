"""The ``lit-superposition`` command: LightningCLI with linked sizes, bundled configs and run directories."""

from __future__ import annotations

import logging
import re
import shutil
import sys
import warnings
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import torch
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

from lit_superposition.callbacks.checkpoint import RunCheckpoint
from lit_superposition.callbacks.interrupt import GracefulStop
from lit_superposition.callbacks.nonfinite_loss import NonFiniteLossStop
from lit_superposition.callbacks.progress import StepProgressBar
from lit_superposition.datamodules import SparseFeatureDataModule
from lit_superposition.errors import ConfigError, NonFiniteLossError
from lit_superposition.module import LitToyModel
from lit_superposition.schedules import WarmupDecay

RUNS_DIR = "runs"
CONFIG_FLAGS = ("--config", "-c")
CKPT_KEYWORDS = ("last", "best", "hpc", "registry")  # Lightning's special ckpt_path values


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
    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(_drop_empty_notices)  # added once


def _drop_empty_notices(record: logging.LogRecord) -> bool:
    # An advert, and accelerators that are absent: neither says anything about this run, and on a
    # CPU they would stand between a one-line error and the user.
    return not re.match(r"💡 Tip|(GPU|TPU|HPU) available: False", str(record.msg))


def _one_line(message: str, limit: int = 400) -> str:
    text = re.sub(r"\s+", " ", message).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _type_name(text: str) -> str:
    """``<class 'int'>`` -> ``int``; ``<class 'pkg.mod.Spec'>`` -> ``Spec``; anything else as is."""
    text = re.sub(r"<class '(?:[\w.]*\.)?(\w+)'>", r"\1", text)
    text = re.sub(r"typing\.|(?:[a-z_]+\.)+(?=[A-Z])", "", text)
    return re.sub(r"Literal\[(.*?)\]", r"one of \1", text)


def explain_argument_error(message: str) -> str:
    """One line for a jsonargparse error: the setting, the value and what is allowed.

    jsonargparse reports a bad value of a union-typed setting (``feature_probability``, ``optimizer``,
    ...) as a tree of every alternative's failure, too long for one line. This keeps the setting
    (nested keys joined), the value and the accepted types.
    """
    text = re.sub(r"\s+", " ", message).strip()
    keys = re.findall(r'Parser key "([^"]+)"', text)
    if not keys:
        return text
    key = ".".join(dict.fromkeys(keys))
    key = re.sub(r"\b(\w+)\.\1$", r"\1", key)  # "optimizer.momentum.momentum" -> "optimizer.momentum"
    value = next(
        (match.group(1) for pattern in (r"Given value: (.+?)(?: - |$)", r"Got value: (.+?)(?: - |$)",
                                        r"Expected a path but (.+?) either not accessible")
         if (match := re.search(pattern, text))),
        None,
    )
    subtypes = re.findall(r"Subtypes: \[(.*?)\] Errors:", text)
    if subtypes:
        allowed = " or ".join(
            _type_name(t) for t in re.split(r", (?=<class|typing|list|dict|Literal|int|float|str)", subtypes[-1])
            if "NoneType" not in t
        )
    else:
        expected = re.findall(r"Expected a (<class '[^']+'>|typing\.Literal\[[^\]]*\]|[\w.\[\], ]+?)(?: Got| -|\.|$)", text)
        allowed = _type_name(expected[-1]) if expected else ""
    if "is not accepted" in text:
        option = re.search(r"Option '(\w+)' is not accepted", text)
        name = option.group(1) if option else "?"
        if key == "optimizer":
            return f"optimizer.{name}: choose the optimizer first, e.g. --optimizer AdamW --optimizer.{name} ..."
        return f"{key}: option {name!r} is not accepted by the chosen class"
    if value is None:
        return _one_line(text)
    if nested := re.fullmatch(r"NestedArg\(key='(\w+)', val='(.*)'\)", value):
        key = key if key.endswith(f".{nested.group(1)}") else f"{key}.{nested.group(1)}"
        value = nested.group(2)
        literal = re.search(r"Expected a (typing\.Literal\[[^\]]*\])", text)
        allowed = _type_name(literal.group(1)) if literal else ""
    return f"{key}: invalid value {value}" + (f"; expected {allowed}" if allowed else "")


class LitSuperpositionCLI(LightningCLI):
    """LightningCLI for toy models: sizes written once, in ``data``, and linked to ``model``."""

    @override
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.n_instances", "model.n_instances")
        parser.link_arguments("data.n_features", "model.n_features")
        parser.link_arguments("data.repeats", "model.repeats")
        # Forced callbacks: always on, configurable as `progress_bar.*`, `checkpoint.*`, ...
        parser.add_lightning_class_args(StepProgressBar, "progress_bar")
        parser.add_lightning_class_args(RunCheckpoint, "checkpoint")
        parser.add_lightning_class_args(GracefulStop, "interrupt")
        parser.add_lightning_class_args(NonFiniteLossStop, "nonfinite_loss")
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
            # Checked here, before the Trainer exists, so that bad input stays one line on stderr.
            data, model = config.get("data"), config.get("model")
            if data is not None and model is not None and isinstance(model.get("d_hidden"), int):
                shapes = {
                    "model.W": (data.n_instances, model.d_hidden, data.n_features),
                    "model.b": (data.n_instances, data.n_features),
                }
                check_checkpoint_shapes(self._checkpoint, shapes, config.ckpt_path)
            _resume_in_run_directory(config, Path(config.ckpt_path), self._checkpoint["global_step"])

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
        """Check that the checkpoint to resume from fits the configured model, before any file is written."""
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
        if name not in saved:
            raise ConfigError(f"ckpt_path {path!r} does not match the config: it has no {name}")
        if tuple(saved[name].shape) != expected:
            raise ConfigError(
                f"ckpt_path {path!r} does not match the config: {name} has shape {tuple(saved[name].shape)} in the "
                f"checkpoint but {expected} in the config (resume with the run's config.yaml)"
            )


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


def _resume_in_run_directory(config: Any, ckpt_path: Path, global_step: int) -> None:
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
    logger.init_args.save_dir = str(run.parent.parent)
    logger.init_args.name = run.parent.name
    logger.init_args.version = run.name
    logger.init_args.purge_step = global_step


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
    _quiet_lightning()
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


def _fail(message: str, code: int) -> None:
    if rank_zero_only.rank == 0:  # in multi-process runs every rank fails alike: say it once
        print(f"lit-superposition: {message}", file=sys.stderr)
    sys.exit(code)


def main(args: Sequence[str] | None = None) -> None:
    """Entry point of the ``lit-superposition`` command.

    Bad input exits with code 2 and one line; a diverged run with code 1 and one line; a run stopped
    by Ctrl-C or SIGTERM (after saving ``last.ckpt``) with ``128 + signal`` and one line.
    """
    try:
        cli = build_cli(list(sys.argv[1:] if args is None else args))
    except ArgumentError as error:
        _fail(f"error: {_one_line(explain_argument_error(str(error)))}", 2)
    except ConfigError as error:
        _fail(f"error: {_one_line(str(error))}", 2)
    except NonFiniteLossError as error:
        _fail(f"error: {_one_line(str(error))}", 1)
    stop = next((c for c in getattr(cli.trainer, "callbacks", []) if isinstance(c, GracefulStop)), None)
    if stop is not None and stop.received is not None:
        last = getattr(cli.trainer.checkpoint_callback, "last_model_path", "")
        resume = f"; resume with --ckpt_path {last}" if last else ""
        _fail(f"stopped by {stop.received.name} after step {stop.stopped_at_step}{resume}", 128 + stop.received)


if __name__ == "__main__":
    main()
