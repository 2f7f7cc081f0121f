"""A finished run, read from its directory: report.json, snapshots.pt, config.yaml and the events; no Lightning.

Example::

    run = load_run("runs/hexagon_patch/version_0")
    run.report["flip_rate"], run.snapshots["W"].shape, run.curves("feature_loss", instance=1)
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from lit_superposition.analysis.report_schema import CONFIG_FILE, REPORT_FILE, SNAPSHOT_FILE, Report
from lit_superposition.errors import ConfigError

if TYPE_CHECKING:  # torch and tensorboard load when a run is read: a bad path is answered without them
    import torch
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

#: What TensorBoard warns ("... Purging expired events") when it reads a resumed run's events: the
#: resume dropped the stopped run's steps after its checkpoint on purpose (``purge_step``).
RESUME_NOTICES = re.compile(r"Detected out of order event\.step")


@contextmanager
def _resume_notices_dropped() -> Iterator[None]:
    """Within: TensorBoard's notices about a resumed run's events are dropped (its logger only, undone after)."""
    logger = logging.getLogger("tensorboard")

    def keep(record: logging.LogRecord) -> bool:
        return not RESUME_NOTICES.match(str(record.msg))

    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


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
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(str(self.directory), size_guidance={"scalars": 0, "images": 1})
        with _resume_notices_dropped():
            events.Reload()
        return events

    def scalar_tags(self) -> list[str]:
        """Every scalar tag in the run's TensorBoard events."""
        return list(self._events.Tags().get("scalars", []))

    def curve_instances(self, quantities: Sequence[str]) -> set[int]:
        """The instances with per-feature curves (``QUANTITY/instance_NNN/feature_FF``) of any of ``quantities``."""
        pattern = re.compile(rf"(?:{'|'.join(map(re.escape, quantities))})/instance_(\d+)/feature_\d+$")
        return {int(match.group(1)) for tag in self.scalar_tags() if (match := pattern.match(tag))}

    def curves(self, quantity: str, instance: int) -> dict[int, tuple[list[int], list[float]]]:
        """Per-feature curves of ``QUANTITY/instance_NNN/feature_FF``: ``{feature: (steps, values)}``."""
        prefix = f"{quantity}/instance_{instance:03d}/feature_"
        curves = {}
        for tag in self.scalar_tags():
            if tag.startswith(prefix):
                events = self._events.Scalars(tag)
                curves[int(tag[len(prefix):])] = ([e.step for e in events], [e.value for e in events])
        return dict(sorted(curves.items()))


def check_run_directory(directory: str | Path) -> Path:
    """The path of ``directory``'s ``report.json``, or a one-line :class:`ConfigError` saying what is missing."""
    path = Path(directory)
    if not path.is_dir():
        raise ConfigError(f"run directory {str(directory)!r} does not exist")
    report_path = path / REPORT_FILE
    if not report_path.is_file():
        raise ConfigError(
            f"{str(directory)!r} has no {REPORT_FILE}: not a finished run directory (expected runs/<config>/version_N)"
        )
    return report_path


def load_run(directory: str | Path) -> Run:
    """Read a run directory, or raise a one-line :class:`ConfigError` saying what is missing."""
    path = Path(directory)
    report_path = check_run_directory(path)
    try:
        report = json.loads(report_path.read_text())
    except json.JSONDecodeError as error:
        raise ConfigError(f"{report_path} is not valid JSON ({error.msg})") from None
    config_path = path / CONFIG_FILE
    config = yaml.safe_load(config_path.read_text()) or {} if config_path.is_file() else {}
    snapshot_path = path / SNAPSHOT_FILE
    import torch

    snapshots = torch.load(snapshot_path, map_location="cpu", weights_only=True) if snapshot_path.is_file() else None
    return Run(directory=path, report=report, config=config, snapshots=snapshots)
