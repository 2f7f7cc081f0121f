"""The README's examples work when pasted as-is, and its layout section matches the tree."""

from __future__ import annotations

import json
import re
import runpy
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lit_superposition.cli import build_cli
from tests.conftest import REPO


def section_code(title: str, language: str) -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.S)


def test_write_your_own_callback_example_runs_as_pasted(in_tmp, monkeypatch):
    (code,) = section_code("Write your own callback", "python")
    (in_tmp / "my_callbacks.py").write_text(code)
    runpy.run_path(str(in_tmp / "my_callbacks.py"), run_name="__main__")
    run = in_tmp / "runs" / "bias_monitor" / "version_0"
    accumulator = EventAccumulator(str(run))
    accumulator.Reload()
    assert [e.step for e in accumulator.Scalars("bias_mean/instance_003")] == [100, 200, 300, 400, 500]
    report = json.loads((run / "report.json").read_text())
    assert all("bias_mean" in entry for entry in report["instances"])

    # The command-line form, with the file importable from the working directory.
    (command,) = section_code("Write your own callback", "bash")
    args = command.replace("\\\n", " ").split()
    assert args[:3] == ["PYTHONPATH=.", "lit-superposition", "fit"]
    monkeypatch.syspath_prepend(str(in_tmp))
    sys.modules.pop("my_callbacks", None)
    cli = build_cli([*args[2:], "--trainer.max_steps=50", "--trainer.enable_progress_bar=false"])
    monitors = [c for c in cli.trainer.callbacks if type(c).__name__ == "BiasMonitor"]
    assert len(monitors) == 1 and monitors[0].every_n_steps == 50
    assert sum(type(c).__name__ == "GeometryReport" for c in cli.trainer.callbacks) == 1  # the config's stay


def _layout_entries() -> list[str]:
    """The paths the README's layout block names, from its indentation (two spaces a level)."""
    block = section_code("Layout", "")[0]
    paths, stack = [], []
    for line in block.splitlines():
        indent = len(line) - len(line.lstrip())
        name = line.split()[0] if line.strip() else ""
        if not re.fullmatch(r"[\w.]+/?", name):
            continue  # a continuation line of a description
        depth = indent // 2
        stack = stack[:depth] + [name.rstrip("/")]
        paths.append("/".join(stack))
    return paths


def test_the_layout_section_matches_the_tree():
    paths = _layout_entries()
    for path in paths:
        assert (REPO / path).exists(), f"README layout names {path}, which does not exist"
    for room in ("lit_superposition", "lit_superposition/models", "lit_superposition/data",
                 "lit_superposition/analysis", "lit_superposition/cli"):
        modules = {p.name for p in (REPO / room).glob("*.py") if p.name != "__init__.py"}
        folders = {p.name for p in (REPO / room).iterdir() if p.is_dir() and not p.name.startswith("__")}
        listed = {path.rsplit("/", 1)[-1] for path in paths if path.rsplit("/", 1)[0] == room}
        assert modules | folders <= listed, f"{room}: not in the README layout: {sorted((modules | folders) - listed)}"


def test_your_own_variant_example_runs_as_pasted(in_tmp, monkeypatch):
    (code,) = section_code("Model variants", "python")
    (in_tmp / "my_models.py").write_text(code)
    commands = section_code("Model variants", "bash")
    args = commands[-1].replace("\\\n", " ").split()
    assert args[:3] == ["PYTHONPATH=.", "lit-superposition", "fit"]
    monkeypatch.syspath_prepend(str(in_tmp))
    sys.modules.pop("my_models", None)
    build_cli([*args[2:], "--trainer.max_steps=20", "--trainer.enable_progress_bar=false"])
    report = json.loads((in_tmp / "runs" / "pentagon" / "version_0" / "report.json").read_text())
    assert report["variant"] == "TanhOutput" and report["step"] == 20
