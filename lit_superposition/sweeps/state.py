"""The sweep directory: run directories, override files, each run's state, ``plan.json`` and ``sweep.json``.

Layout of ``sweeps/<name>/``::

    plan.json              the resolved plan: axes, packing decisions, runs, their commands
    sweep.json             each run's overrides, state and headline results (rewritten atomically as runs change)
    overrides/<id>.yaml    each run's override config (passed to fit as its last --config)
    runs/<id>/             each run's own directory (TensorBoard events, config.yaml, checkpoints, report.json)
    states/<id>.json       each run's state, written by the process that runs it (also on a cluster node)
    logs/<id>.out, .err    each run's output
    report/index.html      the sweep report page

A run's ``<id>`` is the hash of its resolved config: the same sweep run again finds its runs again.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lit_superposition.analysis.files import atomic_write_text
from lit_superposition.analysis.report_schema import REPORT_FILE, SWEEP_FILE
from lit_superposition.analysis.sweep_report import headline
from lit_superposition.sweeps.plan import Plan

PLAN_FILE = "plan.json"
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"


@dataclass
class SweepDirectory:
    """Where a sweep keeps its files (see the module docstring)."""

    root: Path

    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / run_id

    def override(self, run_id: str) -> Path:
        return self.root / "overrides" / f"{run_id}.yaml"

    def state_file(self, run_id: str) -> Path:
        return self.root / "states" / f"{run_id}.json"

    def logs(self, run_id: str) -> tuple[Path, Path]:
        return self.root / "logs" / f"{run_id}.out", self.root / "logs" / f"{run_id}.err"

    def read_state(self, run_id: str) -> dict[str, Any] | None:
        path = self.state_file(run_id)
        try:
            return json.loads(path.read_text()) if path.is_file() else None
        except json.JSONDecodeError:
            return None  # written atomically, so only a hand-edited file gets here: treat it as unknown


def next_action(state: dict[str, Any] | None, run_dir: Path) -> tuple[str, str]:
    """What to do with a planned run, given what an earlier invocation left: ``(action, why)``.

    ``skip`` a finished run whose directory is there; ``resume`` one that stopped with a
    ``last.ckpt`` (interrupted, or left running by a sweep that was killed); ``run`` everything
    else from scratch, failed runs included.
    """
    status = (state or {}).get("state")
    if status == "done" and run_dir.is_dir():
        return "skip", "done"
    if status == "done":
        return "run", "done, but its directory is gone"
    if status != "failed" and (run_dir / LAST_CHECKPOINT).is_file():
        return "resume", f"{status or 'stopped'}: continues from {LAST_CHECKPOINT}"
    if status == "failed":
        return "run", "failed before: rerun from the start"
    return "run", "new"


def clear_run(directory: SweepDirectory, run_id: str) -> None:
    """Remove what an earlier attempt left, before a run starts from scratch."""
    shutil.rmtree(directory.run_dir(run_id), ignore_errors=True)
    directory.state_file(run_id).unlink(missing_ok=True)


def plan_record(plan: Plan, commands: dict[str, list[str]]) -> dict[str, Any]:
    """``plan.json``: the sweep, its axes with the packing decisions, and every run with its command."""
    return {
        "name": plan.sweep.name,
        "sweep_file": str(plan.sweep.path),
        "base": [str(b) for b in plan.sweep.bases],
        "options": plan.options,
        "axes": [{"kind": a.axis.kind, "keys": a.axis.keys, "values": a.axis.values, "packed": a.packed, "why": a.why}
                 for a in plan.axes],
        "runs": [{"id": r.id, "label": r.label, "points": r.points, "instances": r.instances, "overrides": r.overrides,
                  "command": commands.get(r.id)} for r in plan.runs],
    }


class SweepRecord:
    """``sweep.json``: the plan's runs with their states and headline results, rebuilt from the state files.

    Results are read from a finished run's ``report.json`` once, and kept.
    """

    def __init__(self, plan: Plan, directory: SweepDirectory) -> None:
        self.plan, self.directory = plan, directory
        self._reports: dict[str, dict[str, Any] | None] = {}

    def _report(self, run_id: str) -> dict[str, Any] | None:
        if run_id not in self._reports:
            path = self.directory.run_dir(run_id) / REPORT_FILE
            try:
                self._reports[run_id] = json.loads(path.read_text()) if path.is_file() else None
            except json.JSONDecodeError:
                self._reports[run_id] = None
        return self._reports[run_id]

    def build(self) -> dict[str, Any]:
        """The record now: each run as its state file says (``pending`` without one)."""
        runs = []
        for run in self.plan.runs:
            state = self.directory.read_state(run.id) or {}
            status = state.get("state", "pending")
            report = self._report(run.id) if status == "done" else None
            runs.append({
                "id": run.id,
                "label": run.label,
                "directory": f"runs/{run.id}",
                "override": f"overrides/{run.id}.yaml",
                "overrides": run.overrides,
                "n_instances": run.n_instances,
                "state": status,
                "returncode": state.get("returncode") if status != "pending" else None,
                "last_line": state.get("last_line") if status in ("failed", "interrupted") else None,
                "seconds": state.get("seconds"),
                "resumed": state.get("resumed", False),
                "results": headline(report) if report else None,
                "points": [{"axes": p, "instances": list(r), "results": headline(report, *r) if report else None}
                           for p, r in zip(run.points, run.instances)],
            })
        return {
            "name": self.plan.sweep.name,
            "sweep_file": str(self.plan.sweep.path),
            "base": [str(b) for b in self.plan.sweep.bases],
            "options": self.plan.options,
            "axes": [{"kind": a.axis.kind, "keys": a.axis.keys, "packed": a.packed, "why": a.why} for a in self.plan.axes],
            "runs": runs,
        }

    def write(self, record: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write ``sweep.json`` atomically (``record``, or the record now); returns what was written."""
        record = record or self.build()
        atomic_write_text(json.dumps(record, indent=1, default=repr), self.directory.root / SWEEP_FILE)
        return record
