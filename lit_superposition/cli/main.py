"""The ``lit-superposition`` command's entry point: the commands, exit codes and one-line errors.

Only the command that runs imports what it needs: ``--help`` and the analysis commands' bad input
answer without importing Lightning.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lit_superposition.cli.messages import fail, one_line
from lit_superposition.errors import ConfigError, NonFiniteLossError

#: Every command: what it does (one line, for ``--help``) and where it lives.
COMMANDS: dict[str, tuple[str, str]] = {
    "fit": ("train a config's instanced toy models (LightningCLI; fit --help lists its options)", ""),
    "theory": ("expected losses of the symmetric k-gon solutions, beside a run's learned ones", "lit_superposition.cli.theory:run_theory"),
    "report": ("draw a finished run's report page again, from its files alone", "lit_superposition.cli.report:run_report"),
    "llc": ("the local learning coefficient λ̂ of every instance of a finished run (batched SGLD)", "lit_superposition.cli.llc:run_llc"),
    "compare": ("line up runs of the same init seeds, or a sweep's runs: geometry per seed and per run", "lit_superposition.cli.compare:run_compare"),
    "sweep": ("run a sweep file's runs (packed into instances where they share a shape), locally or on SLURM", "lit_superposition.cli.sweep:run_sweep"),
}


def usage() -> str:
    """The top-level help: the commands and the bundled configs."""
    from lit_superposition.cli.configs import bundled_configs

    width = max(map(len, COMMANDS))
    lines = ["usage: lit-superposition COMMAND [options]   (lit-superposition COMMAND --help for its options)", "",
             "Toy models of superposition with PyTorch Lightning.", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (text, _) in COMMANDS.items()]
    lines += ["", "bundled configs (fit --config NAME, from any directory):", "  " + ", ".join(bundled_configs())]
    return "\n".join(lines)


def _command(name: str) -> Callable[[list[str]], Any]:
    module, _, function = COMMANDS[name][1].partition(":")
    return getattr(importlib.import_module(module), function)


def main(args: Sequence[str] | None = None) -> None:
    """Entry point of the ``lit-superposition`` command.

    ``fit`` trains, then prints where the run is and writes its report page; the other commands read
    files and never need the training process. Bad input exits with code 2 and one line; a diverged
    run with code 1 and one line; a run stopped by Ctrl-C or SIGTERM (after saving ``last.ckpt``)
    with ``128 + signal`` and one line.
    """
    args = list(sys.argv[1:] if args is None else args)
    import os

    from lit_superposition.threads import record_user_threads, set_spin_policy

    record_user_threads(os.environ)
    if "torch" not in sys.modules:  # OpenMP reads it once, when torch first loads
        set_spin_policy(os.environ)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        if name.startswith("-"):  # `lit-superposition --config x.yaml` means fit, as it always did
            name, rest = "fit", args
        else:
            fail(f"error: unknown command {name!r}: choose one of {', '.join(COMMANDS)} (lit-superposition --help)", 2)
    if name == "fit":
        _fit(rest)
        return
    try:
        _command(name)(rest)
    except ConfigError as error:
        fail(f"error: {name}: {one_line(str(error))}", 2)
    except Exception as error:  # noqa: BLE001 - jsonargparse's bad-argument error, without importing it up front
        if type(error).__name__ != "ArgumentError":
            raise
        from lit_superposition.cli.messages import explain_argument_error

        fail(f"error: {name}: {one_line(explain_argument_error(str(error)))}", 2)


def _fit(args: list[str]) -> None:
    from lit_superposition.cli.configs import resolve_config_args

    try:
        resolve_config_args(args)  # a config that does not exist needs no Lightning to say so
    except ConfigError as error:
        fail(f"error: {one_line(str(error))}", 2)
    moved = next((arg.split("=")[0] for arg in args if arg.split("=")[0].split(".")[0] in ("--optimizer", "--lr_scheduler")), None)
    if moved is not None:
        new = "--model." + moved.removeprefix("--")
        fail(f"error: {moved} is {new} since release 0.3 (e.g. --model.optimizer SGD --model.optimizer.lr 0.1)", 2)
    from jsonargparse import ArgumentError

    from lit_superposition.callbacks.interrupt import GracefulStop
    from lit_superposition.cli import sae
    from lit_superposition.cli.lightning import build_cli
    from lit_superposition.cli.messages import explain_argument_error, quiet_lightning, unknown_config_setting

    with quiet_lightning():
        try:
            cli = build_cli(args)
        except ArgumentError as error:
            # A misspelt setting in a config file is the likelier cause than what the parser found first
            # (the toy model's sections: an SAE run's model and data are other classes).
            misspelt = None if sae.is_sae_run(resolve_config_args(args)[0]) else unknown_config_setting(args)
            fail(f"error: {one_line(misspelt or explain_argument_error(str(error)))}", 2)
        except ConfigError as error:
            fail(f"error: {one_line(str(error))}", 2)
        except NonFiniteLossError as error:
            fail(f"error: {one_line(str(error))}", 1)
        stop = next((c for c in cli.trainer.callbacks if isinstance(c, GracefulStop)), None)
        _finish(cli, stopped_at=None if stop is None or stop.received is None else stop.stopped_at_step)
    if stop is not None and stop.received is not None:
        last = getattr(cli.trainer.checkpoint_callback, "last_model_path", "")
        resume = f"; resume with --ckpt_path {last}" if last else ""
        fail(f"stopped by {stop.received.name} after step {stop.stopped_at_step}{resume}", 128 + stop.received)


def _finish(cli: Any, stopped_at: int | None) -> None:
    """Say where the run is, and make its report page (the command's own ending, not a callback's)."""
    import torch
    from rich.console import Console

    from lit_superposition.analysis.report_page import log_curve_images, write_report
    from lit_superposition.analysis.run_files import REPORT_FILE, load_run

    log_dir = cli.trainer.log_dir  # a collective under DDP: every rank asks
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # The ranks' last collective: close the group together, before rank 0 goes on alone (a gloo
        # group torn down at exit after its peer had gone aborted the process now and then).
        torch.distributed.destroy_process_group()
    if log_dir is None or not cli.trainer.is_global_zero:
        return
    run = Path(log_dir)
    console = Console(soft_wrap=True)  # a long path stays on its line, also in a log file
    if cli.config.get("report_page", True) and (run / REPORT_FILE).is_file():
        for logger in cli.trainer.loggers:
            logger.finalize("success" if stopped_at is None else "interrupted")  # the events on disk before the page reads them
        with console.status("drawing the report page"):
            finished = load_run(run)
            index = write_report(finished, run / "report", stopped_at=stopped_at)
            log_curve_images(finished, run / "report")
        console.print(f"report page: {index}")
    console.print(f"run directory: {run}   (tensorboard --logdir {run.parent.parent})")


if __name__ == "__main__":
    main()
