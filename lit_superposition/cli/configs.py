"""Config lookup: a ``--config`` value is a path or the name of a config bundled with the package."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from lit_superposition.errors import ConfigError

CONFIG_FLAGS = ("--config", "-c")


def _bundled(*folder: str) -> dict[str, Path]:
    root = resources.files("lit_superposition").joinpath("configs", *folder)
    return {entry.name: Path(str(entry)) for entry in sorted(root.iterdir(), key=lambda e: e.name) if entry.name.endswith(".yaml")}


def _resolve(value: str, bundled: dict[str, Path], label: str, kind: str) -> Path:
    """``value`` as a path: first as given, then as a bundled file's name (``.yaml`` optional)."""
    path = Path(value)
    if path.is_file():
        return path
    for name in (path.name, f"{path.name}.yaml"):
        if path.parent == Path(".") and name in bundled:
            return bundled[name]
    raise ConfigError(f"{label} {value!r} not found: it is neither a file nor a bundled {kind} ({', '.join(sorted(bundled))})")


def bundled_configs() -> dict[str, Path]:
    """The configs shipped with the package, by file name."""
    return _bundled()


def resolve_config_path(value: str) -> Path:
    """A ``--config`` value as a path: first as given, then as a bundled config name (``.yaml`` optional)."""
    return _resolve(value, bundled_configs(), "config", "config")


def bundled_sweeps() -> dict[str, Path]:
    """The sweep files shipped with the package (``configs/sweeps/``), by file name."""
    return _bundled("sweeps")


def resolve_sweep_path(value: str) -> Path:
    """A sweep file: first as given, then as a bundled sweep name (``.yaml`` optional)."""
    return _resolve(value, bundled_sweeps(), "sweep file", "sweep")


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
