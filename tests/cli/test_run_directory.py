"""What fit does to a run directory: a stopped run's page, resumes that lose nothing, folders it cannot write.

Through the installed command where the user's experience is the point (a signal, what a resume
prints), in-process for bad input.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, assert_bad_input, cli_env, run_in_process

RUN = Path("runs") / "pentagon" / "version_0"
LAST = RUN / "checkpoints" / "last.ckpt"


def _command() -> list[str]:
    script = Path(sys.executable).with_name("lit-superposition")
    return [str(script)] if script.exists() else ["lit-superposition"]


def _hashes(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` by relative path: its SHA-256."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def stopped(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A pentagon run stopped by SIGINT (Ctrl-C) through the installed command: its folder and stderr."""
    folder = tmp_path_factory.mktemp("stopped")
    proc = subprocess.Popen(
        [*_command(), "fit", "--config", "pentagon.yaml", "--trainer.max_steps=1000000", "--checkpoint.every_n_train_steps=40",
         "--trainer.enable_progress_bar=false", "--instruments.geometry_snapshots.n_snapshots=4"],
        cwd=folder, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 240
    while not (folder / LAST).is_file():
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "the run did not save a checkpoint"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 128 + signal.SIGINT, stderr[-2000:]
    return folder, stderr


def test_a_run_stopped_by_ctrl_c_leaves_its_report_page_marked_stopped(stopped):
    folder, stderr = stopped
    line = next(line for line in stderr.splitlines() if line.startswith("lit-superposition"))
    step = int(re.search(r"stopped by SIGINT after step (\d+)", line).group(1))
    page = (folder / RUN / "report" / "index.html").read_text()
    assert f"Stopped at step {step}</b>" in page
    assert json.loads((folder / RUN / "report.json").read_text())["step"] == step  # the page is of the run as it stopped
    images = re.findall(r"<img src='([^']+)'", page)
    assert "polygons.png" in images and all((folder / RUN / "report" / name).is_file() for name in images)


def test_resuming_with_another_variant_is_refused_and_changes_no_file(stopped, tmp_path):
    shutil.copytree(stopped[0] / "runs", tmp_path / "runs")
    before = _hashes(tmp_path / "runs")
    result = run_in_process("fit", "--config", "pentagon.yaml", "--model.variant", "hidden_relu", "--ckpt_path", str(LAST),
                            "--trainer.max_steps", "100000", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "is of another experiment: model variant is 'relu_output' in the checkpoint but 'hidden_relu'" in lines[0]
    assert _hashes(tmp_path / "runs") == before  # every file byte-identical, nothing added


def test_a_resume_keeps_the_stopped_runs_files_and_says_so_in_one_line(stopped, tmp_path):
    shutil.copytree(stopped[0] / "runs", tmp_path / "runs")
    before = _hashes(tmp_path / RUN)
    step = json.loads((tmp_path / RUN / "report.json").read_text())["step"]
    env = {key: value for key, value in cli_env().items() if key != "PYTHONWARNINGS"}  # every warning a user would see
    result = subprocess.run(
        [*_command(), "fit", "--config", "pentagon.yaml", "--ckpt_path", str(LAST), f"--trainer.max_steps={step + 20}",
         "--trainer.enable_progress_bar=false", "--instruments.geometry_snapshots.n_snapshots=4"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert f"resuming {RUN} from step {step}: the files the stopped run wrote are kept in {RUN / 'previous' / '1'}" in output
    for noise in ("exists and is not empty", "Purging expired events", "out of order", "Restoring states", "Restored all states"):
        assert noise not in output, output[-3000:]
    # Nothing the stopped run wrote is lost: its events stay in place (the curves continue), the rest moved aside as is.
    kept = _hashes(tmp_path / RUN / "previous" / "1")
    now = _hashes(tmp_path / RUN)
    for name, digest in before.items():
        assert (kept.get(name) if not name.startswith("events.out.tfevents.") else now.get(name)) == digest, name
    assert json.loads((tmp_path / RUN / "report.json").read_text())["step"] == step + 20
    assert "Stopped at step" not in (tmp_path / RUN / "report" / "index.html").read_text()


def _without_write_override() -> None:
    """Run the child without root's licence to write anywhere (CAP_DAC_OVERRIDE), so folder permissions hold."""
    if os.geteuid() == 0:
        import ctypes

        pr_capbset_drop, cap_dac_override = 24, 1
        if ctypes.CDLL(None, use_errno=True).prctl(pr_capbset_drop, cap_dac_override, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


UNWRITABLE = """
import json, sys
from tests.conftest import run_in_process
results = [run_in_process(*args, cwd=sys.argv[1]) for args in json.loads(sys.argv[2])]
print(json.dumps([[r.returncode, r.stderr] for r in results]))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="drops a Linux capability when run as root")
def test_a_run_folder_that_cannot_be_written_is_one_line_naming_it_and_the_option(tmp_path):
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    read_only.chmod(0o555)
    cases = [
        ["fit", "--config", "pentagon.yaml", "--trainer.max_steps=5"],  # the working directory
        ["fit", "--config", "pentagon.yaml", "--trainer.max_steps=5", "--trainer.logger.init_args.save_dir", str(read_only / "runs")],
    ]
    env = {**cli_env(), "PYTHONPATH": str(REPO)}
    try:
        result = subprocess.run([sys.executable, "-c", UNWRITABLE, str(read_only), json.dumps(cases)], cwd=REPO, env=env,
                                capture_output=True, text=True, timeout=300, preexec_fn=_without_write_override)
    finally:
        read_only.chmod(0o755)
    assert result.returncode == 0, result.stderr[-3000:]
    for (code, stderr), folder in zip(json.loads(result.stdout.splitlines()[-1]), ("runs/pentagon/version_0", read_only / "runs")):
        assert_bad_input(code, stderr, f"cannot write the run directory {folder}", read_only)
        assert f"{read_only} is not writable" in stderr and "--trainer.logger.init_args.save_dir DIR" in stderr
    assert not any(read_only.iterdir())
