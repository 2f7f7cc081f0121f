"""The README's "Write your own callback" example works when pasted as-is."""

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
