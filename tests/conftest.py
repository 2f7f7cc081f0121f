"""What the tests share: the command (installed, or its entry point in-process), the bad-input check,
checkpoints, bitwise comparison and TensorBoard scalars.

Layout: unit tests mirror the package (``tests/analysis``, ``tests/callbacks``, ``tests/cli``,
``tests/data``, ``tests/models``, ``tests/sweeps``, ``tests/test_<module>.py``); ``tests/e2e`` runs
the command, the Trainer and the benchmarks end to end; ``tests/science`` checks what runs show.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def cli_env() -> dict[str, str]:
    """The environment for the command: this checkout first on the path, quiet warnings."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONWARNINGS"] = "ignore"
    return env


def run_command(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``lit-superposition ARGS`` as a real subprocess of the installed console script."""
    script = Path(sys.executable).with_name("lit-superposition")
    command = [str(script)] if script.exists() else ["lit-superposition"]
    return subprocess.run(
        [*command, *args], cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=timeout
    )


def run_in_process(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run ``lit-superposition ARGS`` through the command's entry point in this process.

    The same code as the command, without the seconds a fresh interpreter spends importing torch and
    Lightning: for the many bad-input checks (a few of them also run through the installed command).
    """
    from lit_superposition.cli.main import main

    stdout, stderr = io.StringIO(), io.StringIO()
    previous = Path.cwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # as the command's PYTHONWARNINGS=ignore
            try:
                main(list(args))
                code = 0
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        os.chdir(previous)
    return subprocess.CompletedProcess(list(args), code, stdout.getvalue(), stderr.getvalue())


def write_scan_report(path: Path, n_pentagons: int, n_hexagons: int = 1, n_features: int = 6) -> Path:
    """A hand-made scan ``report.json``: pentagon seeds (feature ``i % n_features`` unlearned), then hexagons."""
    instances = [
        {"index": i, "init_seed": i, "geometry": "pentagon", "feature_norms": [1.0] * n_features,
         "represented": [f for f in range(n_features) if f != i % n_features]}
        for i in range(n_pentagons)
    ] + [
        {"index": n_pentagons + k, "init_seed": 1000 + k, "geometry": "hexagon",
         "feature_norms": [1.0] * n_features, "represented": list(range(n_features))}
        for k in range(n_hexagons)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"instances": instances}))
    return path


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty directory outside the repository, so ``runs/`` lands there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def assert_bad_input(returncode: int, stderr: str, message: str, folder: Path) -> None:
    """Bad input as the CLI promises it: exit code 2, one line naming it, no traceback, no ``runs/``."""
    assert returncode == 2, stderr[-2000:]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("lit-superposition: error: ") and message in lines[0], lines[0]
    assert "Traceback" not in stderr
    assert not (folder / "runs").exists()


def load_checkpoint(path: Path) -> dict:
    """A checkpoint, on the CPU (ours: pickled callback states included)."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=False)


def assert_bitwise_equal(a: dict, b: dict) -> None:
    """Two ``{name: tensor}`` dicts with the same names and bitwise equal tensors."""
    import torch

    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs"


def scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar curve of a run's TensorBoard events: ``{tag: [(step, value), ...]}``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
