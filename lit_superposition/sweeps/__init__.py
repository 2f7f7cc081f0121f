"""Sweeps: many runs from one sweep file, with same-shape runs packed into instances of one run.

Rooms: ``sweep_file`` (the file and its axes), ``packing`` (per-instance axes as instances), ``plan``
(resolved runs and their identities), ``state`` (the sweep directory, resume, ``sweep.json``),
``executors`` (the local pool and submitit), ``engine`` (the command). The command's face (options,
the printed plan, the progress view) is :mod:`lit_superposition.cli.sweep`.

Nothing is imported up front: a cluster job imports only ``executors``.
"""

from __future__ import annotations

from lit_superposition.lazy import lazy_exports

_EXPORTS = {
    "run_sweep": "lit_superposition.sweeps.engine",
    "make_plan": "lit_superposition.sweeps.plan",
    "load_sweep_file": "lit_superposition.sweeps.sweep_file",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
