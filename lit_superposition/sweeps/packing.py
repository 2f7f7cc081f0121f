"""Packing: points of a sweep that differ only in per-instance settings become instances of one run.

A run of ``n`` instances at point ``k`` of a packed axis becomes instances ``k·n`` to ``k·n + n - 1``
of one run of ``P·n`` instances. Every per-instance setting is written out explicitly for the packed
run (``feature_probability`` and ``importance`` as one row per setting, ``init_seeds`` as one seed per
instance), resolved from each point's own config, so instance ``k·n + j`` starts from the seed and
trains at the settings that instance ``j`` of point ``k``'s separate run would have had. The run's
``repeats`` stay what they were: each point's settings are consecutive groups of ``repeats`` instances.

Whether the instances then train *exactly* as the separate runs did depends on the data mode:

- ``shared`` (the default): one uniform draw per step serves every instance, whatever their number,
  so a packed instance sees the very batches of its separate run; on a CPU its weights are then
  bitwise those of the separate run (tested with ``pentagon.yaml``).
- ``independent``: instances draw in blocks of 64 from one generator per block, so an instance's
  numbers depend on its position: a packed instance at another position draws other numbers of the
  same law. Its results agree in distribution, not bit for bit (point 0's instances, at their own
  positions, keep theirs).
"""

from __future__ import annotations

from typing import Any

from jsonargparse import ArgumentParser

from lit_superposition.data.specs import SpecLike, resolve_feature_probability, resolve_importance
from lit_superposition.errors import ConfigError
from lit_superposition.models.init import resolve_init_seeds

#: Keys that only change what each instance trains with: an axis over them can be packed.
PER_INSTANCE_KEYS = ("data.feature_probability", "model.importance", "model.init_seeds")
N_INSTANCES, N_FEATURES, REPEATS, INSTANCE_DATA = "data.n_instances", "data.n_features", "data.repeats", "data.instance_data"
#: Settings under which instances are not interchangeable: packing would change what they mean.
BLOCKERS = {
    "experiment": "experiment callbacks address instances by index (weight patching, templates)",
    "trainer.callbacks": "callbacks may address instances by index",
    "data.grid": "a phase-diagram grid sets every instance's settings",
}


def get(config: dict[str, Any], key: str) -> Any:
    """The value at a dotted key of a nested config, or None."""
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def is_packable(keys: list[str]) -> bool:
    """Whether an axis over ``keys`` only changes per-instance settings."""
    return all(key in PER_INSTANCE_KEYS for key in keys)


def blocker(config: dict[str, Any]) -> str | None:
    """Why the instances of this (resolved) config cannot be packed with other points' instances, or None."""
    for key, why in BLOCKERS.items():
        if get(config, key):
            return f"{key} is set: {why}"
    return None


def _spec(value: Any) -> SpecLike:
    """A resolved config's spec value as the object the model receives (class paths instantiated)."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--spec", type=SpecLike)
    parsed = parser.parse_object({"spec": value})
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes  # renamed in jsonargparse 4.49
    return instantiate(parsed).spec


def _compact(rows: list[list[float]]) -> Any:
    """A matrix of settings, written as a scalar or a per-feature list where that resolves to the same tensor."""
    if all(row == rows[0] for row in rows):
        return rows[0][0] if all(v == rows[0][0] for v in rows[0]) else rows[0]
    return rows


def pack(configs: list[dict[str, Any]], labels: list[str]) -> dict[str, Any]:
    """The overrides that make the points ``configs`` (each a fully resolved config) instances of one run.

    Args:
        configs: The resolved config of each point's separate run, in packing order.
        labels: Each point's label, for error messages.

    Returns:
        Dotted keys to values: ``data.n_instances``, ``data.feature_probability``, ``model.importance``
        (one row per setting, or shorter where that is the same) and ``model.init_seeds`` (one per instance).
    """
    shapes = {(get(c, N_INSTANCES), get(c, N_FEATURES), get(c, REPEATS) or 1) for c in configs}
    if len(shapes) > 1:
        raise ConfigError(f"packed points differ in n_instances, n_features or repeats: {sorted(shapes)}")
    n, n_features, repeats = shapes.pop()
    probability, importance, seeds = [], [], []
    for config, label in zip(configs, labels):
        try:
            p = resolve_feature_probability(_spec(get(config, "data.feature_probability")), n, n_features, repeats)
            weight = resolve_importance(_spec(get(config, "model.importance")), n, n_features, repeats)
            seeds += resolve_init_seeds(get(config, "model.init_seeds"), n)
        except (ConfigError, ValueError, TypeError) as error:
            raise ConfigError(f"point {label}: {error}") from None
        probability += p[::repeats].tolist()  # (n // repeats, n_features): one row per setting
        importance += weight[::repeats].tolist()
    return {
        N_INSTANCES: len(configs) * n,
        "data.feature_probability": _compact(probability),
        "model.importance": _compact(importance),
        "model.init_seeds": seeds,
    }


def instance_ranges(n_points: int, n_instances: int) -> list[tuple[int, int]]:
    """Where each packed point's instances are: ``[(start, stop), ...]``."""
    return [(k * n_instances, (k + 1) * n_instances) for k in range(n_points)]
