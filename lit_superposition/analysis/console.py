"""The console that tables are printed on: the terminal's width, or the tables' own width when redirected.

Rich lays a table out for 80 columns when the output is not a terminal (a log file, ``| less``,
SLURM's output file), and cuts what does not fit. A file has no width: there the console is as
wide as the widest table asks, up to :data:`MAX_REDIRECTED_WIDTH`, beyond which cells wrap.

Example::

    table_console(table).print(table)
"""

from __future__ import annotations

import os

from rich.console import Console, RenderableType
from rich.measure import Measurement

#: The widest a redirected console gets: past this a table's wrapping columns wrap.
MAX_REDIRECTED_WIDTH = 200


def natural_width(console: Console, renderable: RenderableType) -> int:
    """The columns ``renderable`` takes when nothing is wrapped or cut (up to :data:`MAX_REDIRECTED_WIDTH`)."""
    return Measurement.get(console, console.options.update_width(MAX_REDIRECTED_WIDTH), renderable).maximum


def table_console(*renderables: RenderableType, stderr: bool = False) -> Console:
    """A console for ``renderables``: a terminal's real width, else wide enough that they need not be cut.

    Args:
        renderables: What will be printed (tables, text).
        stderr: Print to standard error instead of standard output.
    """
    console = Console(stderr=stderr)
    if console.is_terminal or console.is_jupyter or "COLUMNS" in os.environ:
        return console  # a real width, or the one the user chose
    widest = max((natural_width(console, renderable) for renderable in renderables), default=0)
    return Console(stderr=stderr, width=max(console.width, widest))
