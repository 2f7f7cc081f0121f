import json

import pytest
import torch

from lit_superposition.errors import ConfigError
from lit_superposition.models import ReLUOutputModel, xavier_columns
from lit_superposition.analysis.patching import (
    Triple,
    apply_initial_state,
    load_donor,
    pair_from_scan,
    patched_initial_state,
    summarize_triples,
)


def test_patched_state_is_base_init_except_patched_columns():
    state = patched_initial_state([Triple(base_seed=3, donor_seed=17, features=[1, 4])], ReLUOutputModel, d_hidden=2, n_features=6)
    base, donor = xavier_columns(3, 2, 6), xavier_columns(17, 2, 6)
    W = state["state"]["W"]  # (3, 2, 6): base, patched, donor
    assert torch.equal(W[0], base) and torch.equal(W[2], donor)
    assert torch.equal(W[1][:, [1, 4]], donor[:, [1, 4]])
    assert torch.equal(W[1][:, [0, 2, 3, 5]], base[:, [0, 2, 3, 5]])
    assert torch.equal(state["state"]["b"], torch.zeros(3, 6))
    assert state["init_seeds"] == [3, 3, 17]


def test_donor_from_a_snapshot_file_at_any_saved_step(tmp_path):
    W = torch.randn(3, 4, 2, 6)  # (n_snapshots, n_instances, d_hidden, n_features)
    b = torch.randn(3, 4, 6)
    path = tmp_path / "snapshots.pt"
    torch.save({"step": torch.tensor([0, 10, 20]), "W": W, "b": b, "init_seeds": torch.tensor([5, 6, 7, 8])}, path)
    donor = load_donor(str(path), instance=2, step=10)
    assert torch.equal(donor.state["W"], W[1, 2]) and torch.equal(donor.state["b"], b[1, 2]) and donor.seed == 7
    state = patched_initial_state([Triple(base_seed=0, donor_file=str(path), donor_instance=2, donor_step=10, features=[3])], ReLUOutputModel, 2, 6)
    assert torch.equal(state["state"]["W"][1][:, 3], W[1, 2][:, 3]) and torch.equal(state["state"]["W"][2], W[1, 2])
    with pytest.raises(ConfigError, match="donor_step 5 is not saved"):
        load_donor(str(path), instance=0, step=5)
    with pytest.raises(ConfigError, match="donor_instance 9 out of range"):
        load_donor(str(path), instance=9)


class NotWeights:
    pass


def test_files_load_weights_only_so_no_pickled_code_runs(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"step": torch.tensor([0]), "W": torch.zeros(1, 1, 2, 6), "b": NotWeights()}, path)
    with pytest.raises(ConfigError, match="is not a snapshot file or checkpoint"):
        load_donor(str(path))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Triple(base_seed=0, features=[1]), "exactly one of donor_seed and donor_file"),
        (lambda: Triple(base_seed=0, donor_seed=1, features=[]), "at least one feature"),
        (lambda: Triple(base_seed=0, donor_file="/no/such/file.pt", features=[1]), "does not exist"),
        (lambda: patched_initial_state([Triple(base_seed=0, donor_seed=1, features=[6])], ReLUOutputModel, 2, 6), "out of range"),
    ],
)
def test_bad_patches_raise_one_line(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_mismatched_donor_shape_raises(tmp_path):
    path = tmp_path / "snapshots.pt"
    torch.save({"step": torch.tensor([0]), "W": torch.zeros(1, 1, 3, 6), "b": torch.zeros(1, 1, 6)}, path)
    with pytest.raises(ConfigError, match=r"has W of shape \(3, 6\) per instance, the model.s is \(2, 6\)"):
        patched_initial_state([Triple(base_seed=0, donor_file=str(path), features=[0])], ReLUOutputModel, 2, 6)


def test_apply_keeps_parameters_and_checks_instance_count():
    model = ReLUOutputModel(3, 6, 2)
    W_param = model.W
    state = patched_initial_state([Triple(base_seed=3, donor_seed=17, features=[1])], ReLUOutputModel, 2, 6)
    apply_initial_state(model, state)
    assert model.W is W_param and torch.equal(model.W, state["state"]["W"]) and model.init_seeds == [3, 3, 17]
    with pytest.raises(ConfigError, match="set data.n_instances to 3"):
        apply_initial_state(ReLUOutputModel(4, 6, 2), state)


def _scan_report(geometries, represented):
    return {
        "instances": [
            {"index": i, "init_seed": 100 + i, "geometry": g, "represented": r, "feature_norms": [1.0] * 6}
            for i, (g, r) in enumerate(zip(geometries, represented))
        ]
    }


def test_pair_from_scan_patches_each_pentagon_at_its_unlearned_features(tmp_path):
    report = _scan_report(
        ["pentagon", "hexagon", "pentagon", "pentagon", "hexagon"],
        [[0, 1, 2, 3, 4], list(range(6)), [1, 2, 3, 4, 5], [0, 2, 3, 4, 5], list(range(6))],
    )
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    triples = pair_from_scan(str(path), max_triples=2)
    assert [(t.base_seed, t.donor_seed, t.features) for t in triples] == [(100, 101, [5]), (102, 104, [0])]
    with pytest.raises(ConfigError, match="0 hexagon donors"):
        pair_from_scan(_scan_report(["pentagon"], [[0, 1, 2, 3, 4]]))


def test_summary_counts_flips():
    triples = [Triple(base_seed=0, donor_seed=9, features=[5]), Triple(base_seed=1, donor_seed=9, features=[2])]
    summary = summarize_triples(triples, ["pentagon", "hexagon", "hexagon", "pentagon", "pentagon", "hexagon"])
    assert [row["flipped"] for row in summary["triples"]] == [True, False]
    assert summary["flip_rate"] == 0.5
