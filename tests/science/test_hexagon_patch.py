"""The headline experiment end to end, through the installed command (seed 000, "Hexagon Patching")."""

from __future__ import annotations

import json

import pytest

from tests.conftest import assert_bad_input, run_command, run_in_process


@pytest.mark.slow
def test_hexagon_patch_config_flips_the_shipped_pentagon_seeds_to_hexagons(tmp_path):
    # The config's full 10,000-step schedule: the claim is about its shipped seeds as they stand. A second
    # config adds a callback of the user's under trainer.callbacks, as the README suggests: the patch stays.
    (tmp_path / "with_my_callback.yaml").write_text(
        "trainer:\n  callbacks:\n    - class_path: pytorch_lightning.callbacks.LearningRateMonitor\n"
    )
    result = run_command("fit", "--config", "hexagon_patch.yaml", "--config", "with_my_callback.yaml", "--report_page=false",
                         cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "runs" / "hexagon_patch" / "version_0" / "report.json").read_text())
    assert len(report["triples"]) == 3
    for triple in report["triples"]:
        assert triple["base_geometry"] == "pentagon", triple
        assert triple["patched_geometry"] == "hexagon", triple
        assert triple["donor_geometry"] == "hexagon", triple
        assert triple["flipped"] is True
        for key in ("base_seed", "donor_seed", "features"):
            assert key in triple
    assert report["flip_rate"] == 1.0
    seeds = [instance["init_seed"] for instance in report["instances"]]
    assert seeds == [12, 12, 37, 19, 19, 30, 59, 59, 30]
    assert "Weight patching: flip rate 1.00 over 3 triples" in result.stdout


@pytest.mark.slow
def test_automatic_pairing_from_a_32_seed_scan_measures_a_flip_rate(tmp_path):
    steps = "--trainer.max_steps=4000"  # the geometries of these seeds are settled by then
    scan = run_command("fit", "--config", "hexagon_scan.yaml", "--data.n_instances=32", steps, "--report_page=false",
                       cwd=tmp_path, timeout=900)
    assert scan.returncode == 0, scan.stderr[-3000:]
    scan_report = json.loads((tmp_path / "runs" / "hexagon_scan" / "version_0" / "report.json").read_text())
    geometries = [instance["geometry"] for instance in scan_report["instances"]]
    assert len(geometries) == 32 and "hexagon" in geometries and geometries.count("pentagon") >= 8

    patch = run_command("fit", "--config", "hexagon_patch_auto.yaml", steps, "--report_page=false", cwd=tmp_path, timeout=900)
    assert patch.returncode == 0, patch.stderr[-3000:]
    report = json.loads((tmp_path / "runs" / "hexagon_patch_auto" / "version_0" / "report.json").read_text())
    triples = report["triples"]
    assert len(triples) == 8
    hexagon_seeds = {i["init_seed"] for i in scan_report["instances"] if i["geometry"] == "hexagon"}
    for triple in triples:
        base = next(i for i in scan_report["instances"] if i["init_seed"] == triple["base_seed"])
        assert base["geometry"] == "pentagon" and triple["donor_seed"] in hexagon_seeds
        assert triple["features"] == [f for f in range(6) if f not in base["represented"]]
    flip_rate = report["flip_rate"]
    assert flip_rate == sum(t["flipped"] for t in triples) / 8
    assert f"Weight patching: flip rate {flip_rate:.2f} over 8 triples" in patch.stdout


def test_patch_from_a_missing_scan_report_exits_2_with_one_line(tmp_path):
    result = run_in_process("fit", "--config", "hexagon_patch_auto.yaml", cwd=tmp_path)
    assert_bad_input(result.returncode, result.stderr, "scan_report 'runs/hexagon_scan/version_0/report.json' does not exist", tmp_path)


def test_wrong_instance_count_for_the_triples_exits_2_with_one_line(tmp_path):
    result = run_in_process("fit", "--config", "hexagon_patch.yaml", "--data.n_instances=8", cwd=tmp_path)
    assert_bad_input(result.returncode, result.stderr, "data.n_instances must be 9", tmp_path)
