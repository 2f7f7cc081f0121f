"""The README is a front page: at most 300 lines, every link resolves, its examples run as written, its layout is the tree."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lit_superposition.cli import build_cli
from tests.conftest import REPO

README = REPO / "README.md"
MAX_LINES = 300


def readme() -> str:
    return README.read_text()


def section(title: str) -> str:
    """The text of the README's ``## title`` section."""
    return readme().split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def section_code(title: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section(title), flags=re.S)


def command_args(command: str) -> list[str]:
    """A shell command line of the README as arguments (backslash continuations joined)."""
    return command.replace("\\\n", " ").split()


# --- a front page -------------------------------------------------------------------------------


def test_the_readme_is_at_most_300_lines():
    n_lines = len(readme().splitlines())
    assert n_lines <= MAX_LINES, f"README.md has {n_lines} lines; the guides in docs/ take the rest"


def test_the_two_commands_are_the_ones_ci_runs():
    """The set-up commands stay as .ci/run runs them, so they keep working on a fresh machine."""
    main_job, tests = section_code("Quick start", "bash")
    assert main_job.strip() == "pip install torch==2.13.0 && pip install -e . && lit-superposition fit --config hexagon_patch.yaml"
    assert tests.strip() == 'pip install torch==2.13.0 && pip install -e ".[test]" && python -m pytest'
    assert tests.strip() in (REPO / ".ci" / "run").read_text()


def test_every_bundled_config_has_a_row_in_the_experiments_table():
    first_cells = re.findall(r"^\| ([^|]+) \|", section("Experiments"), flags=re.M)
    named = [name for cell in first_cells for name in re.findall(r"`(\w+\.yaml)`", cell)]
    configs = REPO / "lit_superposition" / "configs"
    bundled = [p.name for p in configs.glob("*.yaml")] + [p.name for p in (configs / "sweeps").glob("*.yaml")]
    assert sorted(named) == sorted(bundled), "one row per bundled config (and sweep), none of a config that is gone"
    for name in ("finite data", "local learning coefficient", "sparse autoencoders", "sweeps"):
        assert any(cell.startswith(f"*{name}*") for cell in first_cells), f"no marked row for {name}"


# --- links --------------------------------------------------------------------------------------


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading.strip().lower())
    text = "".join(c for c in text if c in " -" or unicodedata.category(c)[0] in "LN")
    return text.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """Every heading anchor of a Markdown file (duplicates get -1, -2, ... as on GitHub)."""
    found: set[str] = set()
    prose = re.sub(r"```.*?```", "", markdown, flags=re.S)
    for heading in re.findall(r"^#{1,6} (.+)$", prose, flags=re.M):
        anchor, n = github_anchor(heading), 0
        while (anchor if n == 0 else f"{anchor}-{n}") in found:
            n += 1
        found.add(anchor if n == 0 else f"{anchor}-{n}")
    return found


def links(markdown: str) -> list[str]:
    """The targets of the Markdown links and images outside code."""
    prose = re.sub(r"```.*?```", "", markdown, flags=re.S)
    prose = re.sub(r"`[^`\n]*`", "", prose)
    return re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", prose)


def test_github_anchor_follows_github():
    assert github_anchor("The optimizer study (seed 000, fig. 10)") == "the-optimizer-study-seed-000-fig-10"
    assert github_anchor("The fast path: declaring a schedule") == "the-fast-path-declaring-a-schedule"
    assert github_anchor("Seed 000's question, answered") == "seed-000s-question-answered"
    assert anchors("# A\n## A\n```\n# not a heading\n```\n") == {"a", "a-1"}


def test_every_link_in_the_readme_resolves():
    targets = links(readme())
    assert len(targets) >= 20  # the guides are linked from the front page
    for target in targets:
        if re.match(r"https?://", target):
            assert " " not in target and "." in target.split("/")[2], target
            continue
        path, _, anchor = target.partition("#")
        file = README if not path else (README.parent / path).resolve()
        assert file.is_relative_to(REPO) and file.exists(), f"README links to {target}: {path} does not exist"
        if anchor:
            assert file.suffix == ".md", f"README links to {target}: an anchor into a file that is not Markdown"
            assert anchor in anchors(file.read_text()), f"README links to {target}: no heading gives #{anchor}"


# --- the callback examples ------------------------------------------------------------------------


def user_environment() -> dict[str, str]:
    """The environment a user runs the example in: this checkout importable, no test-only settings."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONWARNINGS", "OMP_WAIT_POLICY")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


@pytest.fixture(scope="module")
def bare_example(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """``python my_callbacks.py``, as the README says, in a fresh directory."""
    (code,) = section_code("Write your own callback", "python")
    directory = tmp_path_factory.mktemp("bare")
    (directory / "my_callbacks.py").write_text(code)
    result = subprocess.run([sys.executable, "my_callbacks.py"], cwd=directory, env=user_environment(),
                            capture_output=True, text=True, timeout=300)
    return directory, result


def test_the_python_example_runs_as_written_and_logs_every_interval(bare_example):
    directory, result = bare_example
    assert result.returncode == 0, result.stderr[-3000:]
    run = directory / "runs" / "bias_monitor" / "version_0"
    events = EventAccumulator(str(run))
    events.Reload()
    for i in range(4):
        assert [e.step for e in events.Scalars(f"bias_mean/instance_{i:03d}")] == [100, 200, 300, 400, 500]
    assert "steps_per_call" not in result.stderr and "step per call" not in result.stderr


def test_the_python_example_prints_only_what_it_is_about(bare_example):
    """No model summary, no advertisement, no notice about accelerators the user does not have."""
    _, result = bare_example
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert lines == ["bias curves: tensorboard --logdir runs/bias_monitor/version_0"], "\n".join(lines)


def test_the_callback_joins_an_experiment_from_the_command_line(in_tmp, monkeypatch):
    (code,) = section_code("Write your own callback", "python")
    (in_tmp / "my_callbacks.py").write_text(code)
    command = section_code("Write your own callback", "bash")[0]
    args = command_args(command)
    assert args[:3] == ["PYTHONPATH=.", "lit-superposition", "fit"]
    monkeypatch.syspath_prepend(str(in_tmp))
    sys.modules.pop("my_callbacks", None)
    cli = build_cli([*args[2:], "--trainer.max_steps=50", "--trainer.enable_progress_bar=false", "--report_page=false"])
    monitors = [c for c in cli.trainer.callbacks if type(c).__name__ == "BiasMonitor"]
    assert len(monitors) == 1 and monitors[0].every_n_steps == 50
    assert sum(type(c).__name__ == "GeometryReport" for c in cli.trainer.callbacks) == 1  # the instruments stay


def _lightning_calls(cli) -> int:
    """How many training_step calls Lightning made: the fewer, the more steps each call ran."""
    return cli.trainer.fit_loop.epoch_loop.batch_progress.total.completed


def test_the_yaml_example_keeps_the_experiment_and_runs_at_full_speed(in_tmp, monkeypatch):
    (code,) = section_code("Write your own callback", "python")
    (yaml,) = section_code("Write your own callback", "yaml")
    (in_tmp / "my_callbacks.py").write_text(code)
    (in_tmp / "with_monitors.yaml").write_text(yaml)
    (command,) = re.findall(r"`(PYTHONPATH=\. lit-superposition fit --config \S+\s+--config\s+with_monitors\.yaml)`",
                            section("Write your own callback"))
    args = command_args(command)
    monkeypatch.syspath_prepend(str(in_tmp))
    sys.modules.pop("my_callbacks", None)
    short = ["--trainer.max_steps=200", "--trainer.enable_progress_bar=false", "--report_page=false"]

    plain = build_cli([*args[2:5], *short, "--trainer.logger.init_args.name=plain"])
    with_monitors = build_cli([*args[2:], *short])
    names = [type(c).__name__ for c in with_monitors.trainer.callbacks]
    assert {"LearningRateMonitor", "BiasMonitor", "WeightPatching"} <= set(names)
    # The user's plain callbacks see every step and cost at most one more call end per logging step (where what a
    # per-step hook logs with self.log reaches the loggers, as with one step per call): the calls stay long.
    logging_steps = 200 // with_monitors.trainer.log_every_n_steps
    assert _lightning_calls(plain) <= _lightning_calls(with_monitors) <= _lightning_calls(plain) + logging_steps < 200 // 2

    run = Path(with_monitors.trainer.log_dir)
    events = EventAccumulator(str(run))
    events.Reload()
    assert [e.step for e in events.Scalars("bias_mean/instance_000")] == [50, 100, 150, 200]
    (lr_tag,) = [tag for tag in events.Tags()["scalars"] if tag.startswith("lr-")]
    assert len(events.Scalars(lr_tag)) >= 4
    report = json.loads((run / "report.json").read_text())
    assert len(report["triples"]) == 3  # the experiment's weight patching ran


# --- the layout ---------------------------------------------------------------------------------


def layout() -> list[tuple[str, bool]]:
    """``(path, expanded)`` for every path the README's layout block names (two spaces a level);
    ``expanded`` when the block lists the folder's contents below it."""
    (block,) = section_code("Layout", "")
    entries: list[tuple[str, int]] = []
    stack: list[str] = []
    for line in block.splitlines():
        name = line.split()[0] if line.strip() else ""
        if not re.fullmatch(r"\w+/|\w+\.\w+", name):
            continue  # a continuation line of a description: entries are folders (x/) and files (x.py)
        depth = (len(line) - len(line.lstrip())) // 2
        stack = [*stack[:depth], name.rstrip("/")]
        entries.append(("/".join(stack), depth))
    return [(path, i + 1 < len(entries) and entries[i + 1][1] > depth) for i, (path, depth) in enumerate(entries)]


def test_the_layout_section_matches_the_tree():
    named = dict(layout())
    for path in named:
        assert (REPO / path).exists(), f"README layout names {path}, which does not exist"
    package = REPO / "lit_superposition"
    folders = {p for p in package.rglob("*") if p.is_dir() and not p.name.startswith("__") and any(p.glob("*.py"))}
    for folder in folders | {package}:
        room = folder.relative_to(REPO).as_posix()
        assert room in named, f"README layout does not name the package folder {room}"
        if named[room]:  # listed file by file: every module and folder in it
            contents = {p.name for p in folder.glob("*.py") if p.name != "__init__.py"} | {
                p.name for p in folder.iterdir() if p in folders}
            listed = {path.rsplit("/", 1)[-1] for path in named if path.rsplit("/", 1)[0] == room}
            assert contents <= listed, f"{room}: not in the README layout: {sorted(contents - listed)}"
    for expanded in ("lit_superposition", "lit_superposition/models", "lit_superposition/data",
                     "lit_superposition/analysis", "lit_superposition/cli"):
        assert named.get(expanded), f"the README layout should list {expanded} file by file"
