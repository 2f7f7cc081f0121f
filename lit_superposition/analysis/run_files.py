"""A finished run, read from its directory: report.json, snapshots.pt, config.yaml and the events; no Lightning.

Example::

    run = load_run("runs/hexagon_patch/version_0")
    run.report["flip_rate"], run.snapshots["W"].shape, run.curves("feature_loss", instance=1)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lit_superposition.analysis.report_schema import CONFIG_FILE, REPORT_FILE, SNAPSHOT_FILE, Report
from lit_superposition.errors import ConfigError



@dataclass
class Run:
    """The files of one run directory.

    Attributes:
        directory: The run directory.
        report: ``report.json``.
        config: ``config.yaml`` (empty when absent).
        snapshots: ``snapshots.pt`` (None when absent).
    """

    directory: Path
    report: Report
    config: dict[str, Any] = field(default_factory=dict)
    snapshots: dict[str, torch.Tensor] | None = None

    @property
    def name(self) -> str:
        """The experiment's name: the logger's ``name`` (the config file's stem), else the folder's."""
        logger = (self.config.get("trainer") or {}).get("logger") or {}
        name = (logger.get("init_args") or {}).get("name") if isinstance(logger, dict) else None
        return str(name or self.directory.parent.name)

    @cached_property
    def _events(self) -> EventAccumulator:
        events = EventAccumulator(str(self.directory), size_guidance={"scalars": 0, "images": 1})
        events.Reload()
        return events

    def scalar_tags(self) -> list[str]:
        """Every scalar tag in the run's TensorBoard events."""
        return list(self._events.Tags().get("scalars", []))

    def curves(self, quantity: str, instance: int) -> dict[int, tuple[list[int], list[float]]]:
        """Per-feature curves of ``QUANTITY/instance_NNN/feature_FF``: ``{feature: (steps, values)}``."""
        prefix = f"{quantity}/instance_{instance:03d}/feature_"
        curves = {}
        for tag in self.scalar_tags():
            if tag.startswith(prefix):
                events = self._events.Scalars(tag)
                curves[int(tag[len(prefix):])] = ([e.step for e in events], [e.value for e in events])
        return dict(sorted(curves.items()))


def load_run(directory: str | Path) -> Run:
    """Read a run directory, or raise a one-line :class:`ConfigError` saying what is missing."""
    path = Path(directory)
    if not path.is_dir():
        raise ConfigError(f"run directory {str(directory)!r} does not exist")
    report_path = path / REPORT_FILE
    if not report_path.is_file():
        raise ConfigError(
            f"{str(directory)!r} has no {REPORT_FILE}: not a finished run directory (expected runs/<config>/version_N)"
        )
    try:
        report = json.loads(report_path.read_text())
    except json.JSONDecodeError as error:
        raise ConfigError(f"{report_path} is not valid JSON ({error.msg})") from None
    config_path = path / CONFIG_FILE
    config = yaml.safe_load(config_path.read_text()) or {} if config_path.is_file() else {}
    snapshot_path = path / SNAPSHOT_FILE
    snapshots = torch.load(snapshot_path, map_location="cpu", weights_only=True) if snapshot_path.is_file() else None
    return Run(directory=path, report=report, config=config, snapshots=snapshots)
