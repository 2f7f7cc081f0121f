"""``lit-superposition fit`` for SAE runs: a config with a top-level ``source`` trains SAEs on that run's activations.

What makes a run an SAE run is explicit: a top-level ``source`` section (in a ``--config`` file or as
``--source.*`` arguments), which a toy-model config never has::

    source:
      run: runs/sae_pentagon_source/version_0   # the finished toy-model run (or a checkpoint of one)
      config: pentagon.yaml                     # optional: makes it there first, once, when it is missing
      args: []                                  # optional: arguments of that fit

:class:`SAECLI` shares everything else with :class:`~lit_superposition.cli.lightning.LitSuperpositionCLI`
(run directories, checkpoints and resume, interrupts, the report page, one-line errors); its
``model`` is :class:`~lit_superposition.sae_module.LitSAE`, its ``data``
:class:`~lit_superposition.data.SourceActivations`, its ``instruments`` the SAE ones, and
``resampling`` configures (``null``: turns off) :class:`~lit_superposition.callbacks.DeadLatentResampling`.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.cli import LightningArgumentParser
from pytorch_lightning.utilities.rank_zero import rank_zero_only
from typing_extensions import override

from lit_superposition.callbacks import (
    DeadLatentResampling,
    GracefulStop,
    SAENonFiniteLossStop,
    SAERecovery,
    SAEReport,
    SAEThreadPolicy,
)
from lit_superposition.cli.configs import CONFIG_FLAGS, resolve_config_path
from lit_superposition.cli.lightning import LitSuperpositionCLI, build_cli
from lit_superposition.cli.messages import fail
from lit_superposition.errors import ConfigError
from lit_superposition.data import SourceActivations
from lit_superposition.protocols import InstanceSplit
from lit_superposition.sae_module import LitSAE

#: The SAE runs' default instruments: ``instruments.NAME`` changes (or, ``null``, drops) one.
SAE_INSTRUMENTS: dict[str, tuple[type[Callback], dict[str, Any]]] = {
    "sae_recovery": (SAERecovery, {"every_n_steps": 200}),
    "sae_report": (SAEReport, {}),
}


#: The module and datamodule classes of an SAE run.
SAE_CLASSES = (LitSAE, SourceActivations)


def is_sae_run(argv: Sequence[str]) -> bool:
    """Whether ``argv`` (config paths resolved) describes an SAE run: a config with a top-level ``source``, or ``--source.*``."""
    args = list(argv)
    for k, arg in enumerate(args):
        if arg.split("=", 1)[0].split(".", 1)[0] == "--source":
            return True
        flag, _, value = arg.partition("=")
        if flag in CONFIG_FLAGS and (value or k + 1 < len(args)):
            path = Path(value or args[k + 1])
            try:
                config = yaml.safe_load(path.read_text()) if path.is_file() else None
            except yaml.YAMLError:
                continue  # LightningCLI says what is wrong with it
            if isinstance(config, dict) and "source" in config:
                return True
    return False


class SAECLI(LitSuperpositionCLI):
    """LightningCLI for SAEs on a finished run's activations (see the module docstring).

    Before anything is written it checks the source: it exists with a checkpoint, or ``source.config``
    will make it (that config and its arguments are checked by building them); then the SAEs are
    built for the source's sizes, so every bad setting is one line. A source that must be made is
    trained first, in its own run directory (``source.run``), and read by every later run.
    """

    INSTRUMENTS = SAE_INSTRUMENTS
    NONFINITE_STOP = SAENonFiniteLossStop
    THREAD_POLICY = SAEThreadPolicy
    EXPERIMENT_HELP = "Further callbacks of the experiment."
    CKPT_EXAMPLE = "sae_pentagon"

    @override
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--source.run", type=str, required=True,
                            help="The finished toy-model run the SAEs read: its directory or a checkpoint of it.")
        parser.add_argument("--source.config", type=str | None, default=None,
                            help="A toy-model config that makes source.run first, once, when it does not exist.")
        parser.add_argument("--source.args", type=list[str], default=[],
                            help="Arguments of the fit that makes the source, e.g. ['--trainer.max_steps=5000'].")
        parser.link_arguments("source.run", "data.source")
        self.add_run_arguments(parser)
        parser.add_subclass_arguments(DeadLatentResampling, "resampling", required=False)
        parser.set_defaults({"resampling": {"class_path": f"{DeadLatentResampling.__module__}.{DeadLatentResampling.__name__}"}})

    @override
    def experiment_tools(self, config: Any) -> list[Callback]:
        return [config["resampling"]] if config.get("resampling") is not None else []

    @override
    def check_before_fit(self) -> None:
        world_size = max(self.trainer.world_size, self.trainer.num_devices * self.trainer.num_nodes)
        if world_size > 1 or isinstance(self.trainer.strategy, InstanceSplit):
            raise ConfigError("SAE runs train in one process: use one device (trainer.devices=1) and the default strategy")
        data, source = self.datamodule, self.config.source
        if source.config is not None and not Path(source.run).exists():
            toy = self._source_cli(["--trainer.logger=false"], run=False)  # checks the config and its arguments
            model = toy.model.model
            instances = list(range(model.n_instances)) if data.chosen is None else data.chosen
            bad = [i for i in instances if i >= model.n_instances]
            if bad:
                raise ConfigError(f"data.instances {bad} out of range: the source has instances 0..{model.n_instances - 1}")
            if data.activations == "neurons" and not model.privileged_basis:
                raise ConfigError(f"activations 'neurons' needs a variant with neurons (hidden_relu, computation); the source is {type(model).__name__}")
            self.model.build(instances, model.d_hidden, model.n_features)
        else:
            data.load()
            self.model.build(data.instances, data.d_in, data.n_features)
        super().check_before_fit()

    def _source_cli(self, args: list[str], run: bool) -> Any:
        config = str(resolve_config_path(self.config.source.config))
        return build_cli(["--config", config, *self.config.source.args, "--ckpt_path=null", *args], run=run)

    def make_source(self) -> None:
        """Train ``source.config`` into ``source.run`` when it does not exist yet (rank zero's one process)."""
        source = self.config.source
        run = Path(source.run)
        if source.config is None or run.exists():
            return
        if len(run.parts) < 2:
            raise ConfigError(f"source.run {source.run!r} must be a run directory path such as runs/<name>/version_0")
        rank_zero_only(print)(f"making the source: fit --config {source.config} into {run} (once: later runs read it)")
        toy = self._source_cli([
            f"--trainer.logger.init_args.save_dir={run.parent.parent}", f"--trainer.logger.init_args.name={run.parent.name}",
            f"--trainer.logger.init_args.version={run.name}",
        ], run=True)
        stop = next((c for c in toy.trainer.callbacks if isinstance(c, GracefulStop)), None)
        if stop is not None and stop.received is not None:
            shutil.rmtree(run, ignore_errors=True)
            fail(f"stopped by {stop.received.name} while making the source {run}; it was removed: run again to make it",
                 128 + stop.received)
        if not (run / "checkpoints").is_dir():
            raise ConfigError(f"source.config {source.config!r} did not write a checkpoint into {run}: give it a TensorBoard logger")

    @override
    def fit(self) -> None:
        self.check_before_fit()
        self.make_source()
        super().fit()
