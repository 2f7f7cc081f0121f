"""The throughput benchmark runs end to end at a tiny size (a smoke test: no timing is asserted)."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import REPO, cli_env

NUMBER = r"\d+\.\d\d"
LINE = (
    rf"shared hexagon=({NUMBER}) geometry=({NUMBER}) sweep=({NUMBER})"
    rf" independent hexagon=({NUMBER}) geometry=({NUMBER}) sweep=({NUMBER})"
)
RATIOS, VS_LIMIT = re.compile(rf"ratios {LINE}"), re.compile(rf"vs_limit {LINE}")


def test_benchmark_prints_the_ratios_and_vs_limit_lines_last(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "throughput.py"), "--seconds", "0.1", "--warmup", "2", "--warmup_seconds", "0",
         "--repeats", "1", "--batch_size", "64"],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ratios, vs_limit = result.stdout.strip().splitlines()[-2:]
    for pattern, line in ((RATIOS, ratios), (VS_LIMIT, vs_limit)):
        match = pattern.fullmatch(line)
        assert match, line
        assert all(float(ratio) > 0 for ratio in match.groups())
    assert "reference" in result.stdout and "bare" in result.stdout and "torch" in result.stdout  # the table and the versions
    assert not (tmp_path / "runs").exists()  # runs go to a temporary directory


def test_parallel_runs_benchmark_prints_the_ratio_line_last(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "parallel_runs.py"), "--steps", "20", "--runs", "2"],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    last = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(rf"parallel N=2 ratio={NUMBER}", last), last
    assert "one after the other" in result.stdout


def test_stream_cost_benchmark_prints_the_ratios_line_last(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "stream_cost.py"), "--steps", "3", "--repeats", "1",
         "--batch_size", "64", "--workloads", "hexagon,geometry"],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    last = result.stdout.strip().splitlines()[-1]
    match = re.fullmatch(rf"ratios signed/uniform shared=({NUMBER}) independent=({NUMBER}) sets=({NUMBER})", last)
    assert match, last
    assert all(float(ratio) > 0 for ratio in match.groups())
    assert "signed/uniform" in result.stdout and "torch" in result.stdout  # the table and the versions
