"""The plan of a sweep: which runs, with which overrides, packing which points, under which identity.

Every point is resolved by the fit command itself (``fit ... --print_config``, in this process): an
unknown key or a value of the wrong type is bad input before any run starts, whatever keys the fit
command accepts, and a run's identity is the hash of its fully resolved config.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lit_superposition.analysis.comparison import IGNORED, flatten
from lit_superposition.errors import ConfigError
from lit_superposition.sweeps import packing
from lit_superposition.sweeps.sweep_file import Axis, SweepFile, combine, nest, point_label

#: Config keys that do not change what a run trains or measures: not part of its identity.
IDENTITY_IGNORED = (*IGNORED, "report_page")
#: Fit options the sweep sets itself for each run.
RESERVED_OPTIONS = ("--ckpt_path", "--print_config")


@dataclass
class AxisPlan:
    """An axis and whether its points are packed into instances of one run, with why."""

    axis: Axis
    packed: bool
    why: str


@dataclass
class PlannedRun:
    """One run of the sweep.

    Attributes:
        id: The hash of its resolved config (its directory's name).
        points: The axis values of each point it trains (one unless packed).
        instances: Each point's ``(start, stop)`` instances in the run.
        overrides: Dotted keys to values: what its override file sets over the base configs and options.
        config: Its fully resolved config (as ``fit --print_config`` gives it).
    """

    id: str
    points: list[dict[str, Any]]
    instances: list[tuple[int, int]]
    overrides: dict[str, Any]
    config: dict[str, Any] = field(repr=False)

    @property
    def label(self) -> str:
        """What sets the run apart: its non-packed axis values (every point's are equal)."""
        shared = {k: v for k, v in self.points[0].items() if all(p.get(k) == v for p in self.points)}
        return point_label(shared) if shared else "(base)"

    @property
    def n_instances(self) -> int:
        return self.instances[-1][1]


@dataclass
class Plan:
    """The resolved sweep: its axes with packing decisions, and its runs."""

    sweep: SweepFile
    options: list[str]
    axes: list[AxisPlan]
    runs: list[PlannedRun]

    def config_args(self, override: Path) -> list[str]:
        """The fit arguments of a run, before the sweep's placement of its directory: bases, options, overrides.

        The override file comes last: an axis value always means what the plan says.
        """
        bases = [arg for base in self.sweep.bases for arg in ("--config", str(base))]
        return [*bases, *self.options, "--config", str(override)]


def resolved_config(args: list[str], what: str) -> dict[str, Any]:
    """``fit ARGS --print_config`` in this process: the config the fit command would train, or a one-line ConfigError."""
    from lit_superposition.cli.main import main  # the command's own parser; imported late (main imports this package)

    out, err = io.StringIO(), io.StringIO()
    code: Any = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            main(["fit", *args, "--print_config"])
        except SystemExit as exit_:
            code = exit_.code
    if code:
        lines = [line for line in err.getvalue().splitlines() if line.strip()] or [f"exit code {code}"]
        message = lines[-1].removeprefix("lit-superposition: ").removeprefix("error: ")
        raise ConfigError(f"{what}: {message}")
    return yaml.safe_load(out.getvalue()) or {}


def identity(config: dict[str, Any]) -> str:
    """A run's identity: a hash of its resolved config, without the keys that only place or display it."""
    flat = {k: v for k, v in flatten(config).items() if not k.startswith(IDENTITY_IGNORED)}
    text = json.dumps(flat, sort_keys=True, default=repr)
    return "run-" + hashlib.sha256(text.encode()).hexdigest()[:12]  # never all digits: a logger version that reads as a number gets "version_"


def write_override(overrides: dict[str, Any], path: Path) -> Path:
    """The override file of a run: its dotted keys as a nested config."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Flow style for the innermost lists: a matrix of settings reads as one row per line.
    path.write_text(yaml.safe_dump(nest(overrides), sort_keys=False, default_flow_style=None, width=200), encoding="utf-8")
    return path


def check_options(options: list[str]) -> None:
    """Options the sweep sets for each run itself are refused with one line."""
    for option in options:
        if option.split("=", 1)[0] in RESERVED_OPTIONS:
            raise ConfigError(f"{option.split('=', 1)[0]} is set by the sweep for each run; leave it out")


def make_plan(sweep: SweepFile, options: list[str], pack: bool = True) -> Plan:
    """Resolve every point, decide what to pack, and give each run its overrides and identity.

    Args:
        sweep: The sweep file.
        options: Fit options from the command line (after the sweep file's own ``options``).
        pack: Whether axes over per-instance settings may become instances of one run.
    """
    options = [*sweep.options, *options]
    check_options(options)
    points = list(sweep.points())
    with tempfile.TemporaryDirectory(prefix="lit-sweep-plan-") as tmp:
        plan = Plan(sweep, options, [], [])

        def resolve(overrides: dict[str, Any], what: str) -> dict[str, Any]:
            override = write_override(overrides, Path(tmp) / "override.yaml")
            return resolved_config(plan.config_args(override), what)

        configs = [resolve(point, f"point {point_label(point) or '(base)'}") for point in points]
        blocked = next((why for config in configs if (why := packing.blocker(config))), None)
        for axis in sweep.axes:
            packed, why = _decide(axis, pack, blocked, configs[0])
            plan.axes.append(AxisPlan(axis, packed, why))
        separate = [a.axis for a in plan.axes if not a.packed]
        packed_axes = [a.axis for a in plan.axes if a.packed]
        by_point = {json.dumps(p, sort_keys=True, default=repr): c for p, c in zip(points, configs)}
        for fixed in combine(separate):
            members = [{**fixed, **p} for p in combine(packed_axes)]
            # Keep the sweep file's key order in every point.
            members = [{k: m[k] for k in points[0] if k in m} for m in members]
            member_configs = [by_point[json.dumps(m, sort_keys=True, default=repr)] for m in members]
            if len(members) == 1:
                overrides, config = members[0], member_configs[0]
                n = packing.get(config, packing.N_INSTANCES)
                ranges = [(0, n)]
            else:
                labels = [point_label(m) for m in members]
                overrides = {**fixed, **packing.pack(member_configs, labels)}
                config = resolve(overrides, f"packed run {point_label(fixed) or '(base)'}")
                ranges = packing.instance_ranges(len(members), packing.get(member_configs[0], packing.N_INSTANCES))
            plan.runs.append(PlannedRun(identity(config), members, ranges, overrides, config))
    seen: dict[str, PlannedRun] = {}
    for run in plan.runs:
        if run.id in seen:
            raise ConfigError(
                f"points {point_label(seen[run.id].points[0])} and {point_label(run.points[0])} resolve to the same run: "
                "give each point a different config"
            )
        seen[run.id] = run
    return plan


def _decide(axis: Axis, pack: bool, blocked: str | None, config: dict[str, Any]) -> tuple[bool, str]:
    """Whether an axis is packed, and why (or why not)."""
    if not packing.is_packable(axis.keys):
        other = ", ".join(k for k in axis.keys if k not in packing.PER_INSTANCE_KEYS)
        return False, f"{other}: not a per-instance setting; one run per value"
    if len(axis) == 1:
        return False, "one value: nothing to pack"
    if not pack:
        return False, "per-instance, but --pack false; one run per value"
    if blocked:
        return False, f"per-instance, but {blocked}; one run per value"
    why = f"per-instance: its {len(axis)} values are instances of one run ({packing.get(config, packing.N_INSTANCES)} each)"
    if packing.get(config, packing.INSTANCE_DATA) == "independent":
        why += ("; independent data is drawn in blocks of 64 instances, so packed instances draw other numbers "
                "(of the same law) than separate runs would")
    return True, why
