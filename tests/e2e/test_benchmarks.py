"""The benchmarks run end to end at a tiny size (smoke tests: no timing is asserted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, cli_env

NUMBER = r"\d+\.\d\d"
LINE = rf"shared hexagon=({NUMBER}) independent hexagon=({NUMBER})"
RATIOS, VS_LIMIT = re.compile(rf"ratios {LINE}"), re.compile(rf"vs_limit {LINE}")


def _benchmark(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python benchmarks/NAME.py ARGS``, checked to succeed and to run runs at full steps per call."""
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / f"{name}.py"), *args],
        cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "one optimizer step per call" not in result.stderr  # no timing callback holds the calls to one step
    assert not (cwd / "runs").exists()  # runs go to a temporary directory
    return result


def _last_lines(result: subprocess.CompletedProcess, n: int) -> list[str]:
    return result.stdout.strip().splitlines()[-n:]


def test_benchmark_prints_the_ratios_and_vs_limit_lines_last(tmp_path):
    result = _benchmark("throughput", "--seconds", "0.1", "--warmup", "2", "--warmup_seconds", "0", "--repeats", "1",
                        "--batch_size", "64", "--workloads", "hexagon", "--limit_settings", "one thread", cwd=tmp_path)
    for pattern, line in zip((RATIOS, VS_LIMIT), _last_lines(result, 2)):
        match = pattern.fullmatch(line)
        assert match, line
        assert all(float(ratio) > 0 for ratio in match.groups())
    assert "reference" in result.stdout and "bare" in result.stdout and "torch" in result.stdout  # the table and the versions


def test_steps_per_call_benchmark_prints_vs_limit_per_value_last(tmp_path):
    result = _benchmark("steps_per_call", "--values", "1,16", "--seconds", "0.1", "--warmup", "2", "--warmup_seconds", "0",
                        "--repeats", "1", "--batch_size", "64", cwd=tmp_path)
    (last,) = _last_lines(result, 1)
    assert re.fullmatch(rf"steps_per_call 1=({NUMBER}) 16=({NUMBER})", last), last
    assert "fixed cost per call" in result.stdout


def test_parallel_runs_benchmark_prints_the_ratio_line_last(tmp_path):
    result = _benchmark("parallel_runs", "--steps", "20", "--runs", "2", cwd=tmp_path)
    (last,) = _last_lines(result, 1)
    assert re.fullmatch(rf"parallel N=2 ratio={NUMBER}", last), last
    assert "one after the other" in result.stdout


def test_stream_cost_benchmark_prints_the_ratios_line_last(tmp_path):
    result = _benchmark("stream_cost", "--steps", "3", "--repeats", "1", "--batch_size", "64", "--workloads", "hexagon,geometry",
                        cwd=tmp_path)
    (last,) = _last_lines(result, 1)
    match = re.fullmatch(rf"ratios signed/uniform shared=({NUMBER}) independent=({NUMBER}) sets=({NUMBER})", last)
    assert match, last
    assert all(float(ratio) > 0 for ratio in match.groups())
    assert "signed/uniform" in result.stdout and "torch" in result.stdout  # the table and the versions


def test_scaling_benchmark_prints_the_scaling_line_last(tmp_path):
    result = _benchmark("scaling", "--repeats", "1", "--workloads", "hexagon", "--modes", "shared", "--steps", "20",
                        "--warmup", "4", "--batch_size", "64", cwd=tmp_path)
    (last,) = _last_lines(result, 1)
    assert re.fullmatch(rf"scaling shared hexagon={NUMBER}", last), last
    assert "sharded: N on 2" in result.stdout and "two: 2 × N/2" in result.stdout


def test_sae_benchmark_prints_the_padded_and_batched_lines_last(tmp_path):
    result = _benchmark("sae", "--smoke", cwd=tmp_path)
    padded, batched = _last_lines(result, 2)
    assert re.fullmatch(rf"padded/grouped pentagon=({NUMBER}) geometry=({NUMBER})", padded), padded
    match = re.fullmatch(rf"sae batched/loop pentagon=({NUMBER}) geometry=({NUMBER})", batched)
    assert match, batched
    assert all(float(ratio) > 0 for ratio in match.groups())
    assert "loop (ARENA)" in result.stdout and "torch" in result.stdout  # the table and the versions


def test_llc_benchmark_prints_the_speedup_line_last(tmp_path):
    pytest.importorskip("devinterp")
    result = _benchmark("llc", "--smoke", cwd=tmp_path)
    (last,) = _last_lines(result, 1)
    match = re.fullmatch(rf"llc instances=4 speedup=({NUMBER})", last)
    assert match, last
    assert float(match.group(1)) > 0
    assert "batched" in result.stdout and "devinterp" in result.stdout and "torch" in result.stdout  # the table and the versions


def test_thread_benchmark_prints_the_end_to_end_line_last(tmp_path):
    result = _benchmark("threads", "--smoke", cwd=tmp_path)
    (last,) = _last_lines(result, 1)
    match = re.fullmatch(rf"threads end_to_end main_job=({NUMBER}) pentagon=({NUMBER})", last)
    assert match, last
    assert "one thread" in result.stdout and "default/best" in result.stdout  # the default against a fixed setting


def test_finite_data_benchmark_prints_the_ratio_line_last(tmp_path):
    result = _benchmark("finite_data", "--smoke", cwd=tmp_path)
    (last,) = _last_lines(result, 1)
    assert re.fullmatch(rf"finite_data arena/lit={NUMBER}", last), last


def test_plain_callback_benchmark_prints_the_kept_line_last(tmp_path):
    result = _benchmark("plain_callback", "--smoke", cwd=tmp_path)
    (last,) = _last_lines(result, 1)
    assert re.fullmatch(rf"plain_callback kept={NUMBER}", last), last
