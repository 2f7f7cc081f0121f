"""The ``lit-superposition`` command's entry point: exit codes and one-line errors."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from jsonargparse import ArgumentError

from lit_superposition.callbacks.interrupt import GracefulStop
from lit_superposition.cli.lightning import build_cli
from lit_superposition.cli.messages import explain_argument_error, fail, one_line
from lit_superposition.errors import ConfigError, NonFiniteLossError


def main(args: Sequence[str] | None = None) -> None:
    """Entry point of the ``lit-superposition`` command.

    Bad input exits with code 2 and one line; a diverged run with code 1 and one line; a run stopped
    by Ctrl-C or SIGTERM (after saving ``last.ckpt``) with ``128 + signal`` and one line.
    """
    try:
        cli = build_cli(list(sys.argv[1:] if args is None else args))
    except ArgumentError as error:
        fail(f"error: {one_line(explain_argument_error(str(error)))}", 2)
    except ConfigError as error:
        fail(f"error: {one_line(str(error))}", 2)
    except NonFiniteLossError as error:
        fail(f"error: {one_line(str(error))}", 1)
    stop = next((c for c in getattr(cli.trainer, "callbacks", []) if isinstance(c, GracefulStop)), None)
    if stop is not None and stop.received is not None:
        last = getattr(cli.trainer.checkpoint_callback, "last_model_path", "")
        resume = f"; resume with --ckpt_path {last}" if last else ""
        fail(f"stopped by {stop.received.name} after step {stop.stopped_at_step}{resume}", 128 + stop.received)


if __name__ == "__main__":
    main()
