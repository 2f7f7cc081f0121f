"""The sweep file: base configs and axes over dotted config keys, expanded to points.

A sweep file is YAML::

    name: optimizer_study            # optional: the file's stem; the sweep directory is sweeps/<name>/
    base: hexagon_scan.yaml          # a config (path or bundled name), or a list composed as fit composes them
    options: [--trainer.max_steps=500]   # optional: fit options for every run (the command line's come after)
    grid:                            # every combination of these axes
      model.optimizer: [SGD, Adam]
      model.optimizer.init_args.lr: [0.01, 0.001]
    zip:                             # axes that move together (equal lengths); a mapping or a list of them
      data.feature_probability: [0.05, 0.1]
      model.init_seeds: [0, 100]
    random:                          # n seeded draws of these axes together
      n: 4
      seed: 0
      axes:
        model.optimizer.init_args.weight_decay: {log_uniform: [1.0e-4, 1.0e-1]}
        model.d_hidden: {int: [2, 4]}
        data.instance_data: {choice: [shared, independent]}

Values are anything a config takes at that key: numbers, strings, class paths, lists, dicts with
``class_path``/``init_args``, specs. Axes combine as a product: each grid key, each zip group and the
random group are one axis each, the first varying slowest. A key nested under a class given by name
(``model.optimizer: SGD`` with ``model.optimizer.init_args.lr``) makes that name the ``class_path``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from lit_superposition.analysis.sweep_report import point_label, short_key, short_value  # noqa: F401 (the labels)
from lit_superposition.cli.configs import resolve_config_path, resolve_sweep_path
from lit_superposition.errors import ConfigError

SWEEP_KEYS = ("name", "base", "options", "grid", "zip", "random")
DISTRIBUTIONS = ("uniform", "log_uniform", "int", "choice")


@dataclass
class Axis:
    """One axis of the sweep: keys that move together, and their values at each point of the axis.

    Attributes:
        kind: ``"grid"``, ``"zip"`` or ``"random"``.
        keys: Dotted config keys.
        values: One ``{key: value}`` per point of the axis.
    """

    kind: str
    keys: list[str]
    values: list[dict[str, Any]]

    @property
    def name(self) -> str:
        return " + ".join(self.keys)

    def __len__(self) -> int:
        return len(self.values)


@dataclass
class SweepFile:
    """A parsed sweep file.

    Attributes:
        name: The sweep's name (its directory under ``sweeps/``).
        path: The file.
        bases: Base configs as paths, composed in order.
        options: Fit options for every run.
        axes: The axes, in the order they combine (the first varies slowest).
    """

    name: str
    path: Path
    bases: list[Path]
    options: list[str] = field(default_factory=list)
    axes: list[Axis] = field(default_factory=list)

    def points(self) -> Iterator[dict[str, Any]]:
        """Every point of the sweep: ``{key: value}`` over all axes, the product in axis order."""
        return combine(self.axes)


def combine(axes: list[Axis]) -> Iterator[dict[str, Any]]:
    """The product of ``axes`` (the first varies slowest), each combination as one ``{key: value}``."""
    for combination in itertools.product(*(axis.values for axis in axes)):
        point: dict[str, Any] = {}
        for values in combination:
            point.update(values)
        yield point


def load_sweep_file(value: str) -> SweepFile:
    """Read a sweep file (a path or a bundled sweep's name) and check its shape; one-line errors."""
    path = resolve_sweep_path(value)
    try:
        content = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"sweep file {str(path)!r} is not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(content, dict):
        raise ConfigError(f"sweep file {str(path)!r} must be a mapping with keys {', '.join(SWEEP_KEYS)}")
    unknown = [key for key in content if key not in SWEEP_KEYS]
    if unknown:
        raise ConfigError(f"sweep file {path.name}: unknown key {unknown[0]!r}; allowed: {', '.join(SWEEP_KEYS)}")
    bases = content.get("base")
    if isinstance(bases, str):
        bases = [bases]
    if not bases or not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"sweep file {path.name}: 'base' must name a config or a list of configs, got {bases!r}")
    options = content.get("options") or []
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        raise ConfigError(f"sweep file {path.name}: 'options' must be a list of fit options, got {options!r}")
    axes = [*grid_axes(content.get("grid")), *zip_axes(content.get("zip")), *random_axes(content.get("random"))]
    seen: dict[str, str] = {}
    for axis in axes:
        for key in axis.keys:
            if key in seen:
                raise ConfigError(f"sweep key {key!r} is on two axes ({seen[key]} and {axis.kind}): give each key one axis")
            seen[key] = axis.kind
    name = content.get("name", path.stem)
    if not isinstance(name, str) or not name or "/" in name:
        raise ConfigError(f"sweep file {path.name}: 'name' must be a non-empty name without '/', got {name!r}")
    return SweepFile(name=name, path=path.resolve(), bases=[_base_path(b, path) for b in bases], options=list(options), axes=axes)


def _base_path(value: str, sweep_path: Path) -> Path:
    """A base config: beside the sweep file first, then as ``--config`` resolves it."""
    beside = sweep_path.parent / value
    return beside.resolve() if beside.is_file() else resolve_config_path(value).resolve()


def _check_key(key: Any, where: str) -> str:
    if not isinstance(key, str) or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"{where}: {key!r} is not a dotted config key (e.g. optimizer.init_args.lr)")
    return key


def _check_values(key: str, values: Any, where: str) -> list[Any]:
    if not isinstance(values, list):
        raise ConfigError(f"{where} axis {key!r} must list its values, got {values!r}")
    if not values:
        raise ConfigError(f"{where} axis {key!r} is empty: list at least one value")
    return values


def grid_axes(grid: Any) -> list[Axis]:
    """One axis per key of ``grid``."""
    if grid is None:
        return []
    if not isinstance(grid, dict):
        raise ConfigError(f"'grid' must map config keys to lists of values, got {grid!r}")
    return [Axis("grid", [_check_key(k, "grid")], [{k: v} for v in _check_values(k, vs, "grid")]) for k, vs in grid.items()]


def zip_axes(groups: Any) -> list[Axis]:
    """One axis per zip group; the group's keys must list equally many values."""
    if groups is None:
        return []
    groups = [groups] if isinstance(groups, dict) else groups
    if not isinstance(groups, list) or not all(isinstance(g, dict) and g for g in groups):
        raise ConfigError("'zip' must be a mapping of config keys to lists, or a list of such mappings")
    axes = []
    for group in groups:
        columns = {_check_key(k, "zip"): _check_values(k, vs, "zip") for k, vs in group.items()}
        lengths = {k: len(vs) for k, vs in columns.items()}
        if len(set(lengths.values())) > 1:
            listed = ", ".join(f"{k} has {n}" for k, n in lengths.items())
            raise ConfigError(f"zip axes must have equal lengths: {listed}")
        keys = list(columns)
        axes.append(Axis("zip", keys, [dict(zip(keys, row)) for row in zip(*columns.values())]))
    return axes


def random_axes(random: Any) -> list[Axis]:
    """One axis of ``n`` seeded draws of every key in ``random.axes`` together."""
    if random is None:
        return []
    if not isinstance(random, dict) or set(random) - {"n", "seed", "axes"}:
        raise ConfigError("'random' must have n (draws), seed (optional, default 0) and axes")
    n, seed, axes = random.get("n"), random.get("seed", 0), random.get("axes")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ConfigError(f"random.n must be a positive number of draws, got {n!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"random.seed must be an integer, got {seed!r}")
    if not isinstance(axes, dict) or not axes:
        raise ConfigError("random.axes must map config keys to distributions, e.g. {optimizer.init_args.lr: {log_uniform: [1e-4, 1e-2]}}")
    generator = np.random.default_rng(seed)
    columns = {_check_key(key, "random"): draw(key, distribution, n, generator) for key, distribution in axes.items()}
    keys = list(columns)
    return [Axis("random", keys, [dict(zip(keys, row)) for row in zip(*columns.values())])]


def draw(key: str, distribution: Any, n: int, generator: np.random.Generator) -> list[Any]:
    """``n`` draws of one distribution: ``uniform``, ``log_uniform`` or ``int`` (``[low, high]``, int inclusive), or ``choice``.

    Drawn floats are rounded to 6 significant digits, so that they read well in labels and YAML.
    """
    if not isinstance(distribution, dict) or len(distribution) != 1 or next(iter(distribution)) not in DISTRIBUTIONS:
        raise ConfigError(f"random axis {key!r} needs one distribution of {', '.join(DISTRIBUTIONS)}, got {distribution!r}")
    kind, args = next(iter(distribution.items()))
    if kind == "choice":
        return [args[int(k)] for k in generator.integers(0, len(_check_values(key, args, "random")), size=n)]
    if not (isinstance(args, list) and len(args) == 2 and all(isinstance(a, (int, float)) for a in args) and args[0] <= args[1]):
        raise ConfigError(f"random axis {key!r}: {kind} needs [low, high] with low <= high, got {args!r}")
    low, high = args
    if kind == "int":
        return [int(k) for k in generator.integers(int(low), int(high), size=n, endpoint=True)]
    if kind == "log_uniform":
        if low <= 0:
            raise ConfigError(f"random axis {key!r}: log_uniform needs low > 0, got {low}")
        values = np.exp(generator.uniform(math.log(low), math.log(high), size=n))
    else:
        values = generator.uniform(low, high, size=n)
    return [float(f"{v:.6g}") for v in values]


def nest(point: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys to the nested mapping of a config file: ``{"a.b": 1}`` -> ``{"a": {"b": 1}}``.

    Shorter keys are placed first, so a deeper key refines its parent's value; a class given by name
    (``optimizer: SGD``) becomes ``{class_path: SGD}`` when a deeper key is set under it.
    """
    config: dict[str, Any] = {}
    for key in sorted(point, key=lambda k: k.count(".")):
        *parents, last = key.split(".")
        node = config
        for part in parents:
            child = node.get(part)
            if isinstance(child, str):
                child = {"class_path": child}
            elif not isinstance(child, dict):
                child = {}
            else:
                child = dict(child)
            node[part] = child
            node = child
        value = point[key]
        if isinstance(node.get(last), dict) and isinstance(value, dict):
            value = _merge(node[last], value)
        node[last] = value
    return config


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        merged[key] = _merge(merged[key], value) if isinstance(merged.get(key), dict) and isinstance(value, dict) else value
    return merged
