"""The thread policy: a pure function of the run's sizes and the environment, in which the user's setting wins."""

from __future__ import annotations

import pytest

from lit_superposition.threads import (
    ONE_THREAD_BELOW,
    USER_ENVIRONMENT,
    choose_threads,
    record_user_threads,
    set_spin_policy,
    step_work,
    user_threads,
)

HEXAGON = step_work(16, 1024, 6, 2)  # the main job's step
GEOMETRY = step_work(20, 1024, 200, 20)  # feature_geometry.yaml's


def test_small_steps_get_one_thread_and_large_ones_the_free_cores():
    small = choose_threads(HEXAGON, free=2, environ={}, current=2, default=2)
    assert (small.threads, small.source) == (1, "policy") and "small step" in small.reason
    large = choose_threads(GEOMETRY, free=2, environ={}, current=2, default=2)
    assert (large.threads, large.source) == (2, "policy")
    assert choose_threads(GEOMETRY, free=1, environ={}, current=2, default=2).threads == 1  # a busy core is not taken
    assert HEXAGON < ONE_THREAD_BELOW <= GEOMETRY


@pytest.mark.parametrize(("environ", "current", "reason"), [
    ({"OMP_NUM_THREADS": "2"}, 2, "OMP_NUM_THREADS=2 in the environment"),
    ({"MKL_NUM_THREADS": "1"}, 2, "MKL_NUM_THREADS=1 in the environment"),
    ({}, 1, "torch.set_num_threads(1) before the run"),
])
def test_the_users_setting_wins(environ, current, reason):
    for work in (HEXAGON, GEOMETRY):
        choice = choose_threads(work, free=2, environ=environ, current=current, default=2)
        assert (choice.threads, choice.source, choice.reason) == (None, "user", reason)


def test_a_gpu_run_leaves_the_host_threads_alone():
    assert choose_threads(GEOMETRY, free=2, environ={}, current=2, default=2, device="cuda").source == "device"


def test_the_spin_is_bounded_unless_the_user_chose_how_threads_wait():
    environ: dict[str, str] = {}
    assert "bounded spin" in set_spin_policy(environ) and environ["GOMP_SPINCOUNT"]
    for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        mine = {name: "PASSIVE" if name == "OMP_WAIT_POLICY" else "7"}
        assert "the user's" in set_spin_policy(mine) and len(mine) == 1


def test_the_commands_processes_know_the_users_threads_not_lightnings():
    environ = {"OMP_NUM_THREADS": "3"}
    record_user_threads(environ)
    environ["OMP_NUM_THREADS"] = "1"  # what Lightning sets for the processes it launches
    record_user_threads(environ)  # the first call wins
    assert user_threads(environ) == {"OMP_NUM_THREADS": "3"}
    assert user_threads({USER_ENVIRONMENT: ""}) == {} and user_threads({}) is None
