"""The ``lit-superposition`` command's entry point: exit codes and one-line errors."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from jsonargparse import ArgumentError
from rich.console import Console

from lit_superposition.analysis.report_page import log_curve_images, write_report
from lit_superposition.analysis.run_files import REPORT_FILE, load_run
from lit_superposition.callbacks.interrupt import GracefulStop
from lit_superposition.cli.compare import run_compare
from lit_superposition.cli.lightning import LitSuperpositionCLI, build_cli
from lit_superposition.cli.messages import explain_argument_error, fail, one_line
from lit_superposition.cli.report import run_report
from lit_superposition.cli.theory import run_theory
from lit_superposition.errors import ConfigError, NonFiniteLossError

#: Commands that read files and compute, without a Trainer.
ANALYSIS_COMMANDS = {"theory": run_theory, "report": run_report, "compare": run_compare}


def main(args: Sequence[str] | None = None) -> None:
    """Entry point of the ``lit-superposition`` command.

    ``fit`` trains, then prints where the run is and writes its report page; ``theory``, ``report``
    and ``compare`` are analysis commands: they read files and never need the training process.
    Bad input exits with code 2 and one line; a diverged run with code 1 and one line; a run
    stopped by Ctrl-C or SIGTERM (after saving ``last.ckpt``) with ``128 + signal`` and one line.
    """
    args = list(sys.argv[1:] if args is None else args)
    if args and args[0] in ANALYSIS_COMMANDS:
        try:
            ANALYSIS_COMMANDS[args[0]](args[1:])
        except ArgumentError as error:
            fail(f"error: {args[0]}: {one_line(explain_argument_error(str(error)))}", 2)
        except ConfigError as error:
            fail(f"error: {args[0]}: {one_line(str(error))}", 2)
        return
    try:
        cli = build_cli(args)
    except ArgumentError as error:
        fail(f"error: {one_line(explain_argument_error(str(error)))}", 2)
    except ConfigError as error:
        fail(f"error: {one_line(str(error))}", 2)
    except NonFiniteLossError as error:
        fail(f"error: {one_line(str(error))}", 1)
    stop = next((c for c in getattr(cli.trainer, "callbacks", []) if isinstance(c, GracefulStop)), None)
    if stop is None or stop.received is None:
        _finish(cli)
    if stop is not None and stop.received is not None:
        last = getattr(cli.trainer.checkpoint_callback, "last_model_path", "")
        resume = f"; resume with --ckpt_path {last}" if last else ""
        fail(f"stopped by {stop.received.name} after step {stop.stopped_at_step}{resume}", 128 + stop.received)


def _finish(cli: LitSuperpositionCLI) -> None:
    """Say where the run is, and make its report page (the command's own ending, not a callback's)."""
    log_dir = cli.trainer.log_dir  # a collective under DDP: every rank asks
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # The ranks' last collective: close the group together, before rank 0 goes on alone (a gloo
        # group torn down at exit after its peer had gone aborted the process now and then).
        torch.distributed.destroy_process_group()
    if log_dir is None or not cli.trainer.is_global_zero:
        return
    run = Path(log_dir)
    console = Console(stderr=False)
    config = cli.config.get(str(cli.subcommand), cli.config)
    if config.get("report_page", True) and (run / REPORT_FILE).is_file():
        for logger in cli.trainer.loggers:
            logger.finalize("success")  # the events on disk before the page reads them
        with console.status("drawing the report page"):
            finished = load_run(run)
            index = write_report(finished, run / "report")
            log_curve_images(finished, run / "report")
        console.print(f"report page: {index}")
    console.print(f"run directory: {run}   (tensorboard --logdir {run.parent.parent})")


if __name__ == "__main__":
    main()
