"""Weight patching between initialization seeds (seed 000, "Hexagon Patching").

A patch experiment is a list of triples. Each triple trains three instances side by side: the
unpatched base, the patched base (the base's initial ``W`` with the columns of ``features`` replaced
by the donor's), and the donor. Instances are laid out ``(base, patched, donor)`` per triple, so
triple ``k`` occupies instances ``3k``, ``3k + 1`` and ``3k + 2``. No Lightning in here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lit_superposition.errors import ConfigError
from lit_superposition.model import ToyModel, initial_weights, resolve_init_seeds

ROLES = ("base", "patched", "donor")


@dataclass
class Triple:
    """One (base, patched base, donor) comparison.

    Args:
        base_seed: Init seed of the base.
        features: The features whose initial columns come from the donor.
        donor_seed: Init seed of the donor (its init is recomputed: cheap and exact).
        donor_file: Or a ``snapshots.pt`` or Lightning checkpoint of an earlier run.
        donor_instance: Which instance of ``donor_file``.
        donor_step: Which saved step of ``donor_file`` (0, the initialization, by default).
    """

    base_seed: int
    features: list[int] = field(default_factory=list)
    donor_seed: int | None = None
    donor_file: str | None = None
    donor_instance: int = 0
    donor_step: int = 0

    def __post_init__(self) -> None:
        if (self.donor_seed is None) == (self.donor_file is None):
            raise ConfigError(f"triple with base_seed {self.base_seed}: give exactly one of donor_seed and donor_file")
        if not self.features:
            raise ConfigError(f"triple with base_seed {self.base_seed}: features must list at least one feature")
        if self.donor_file is not None and not Path(self.donor_file).is_file():
            raise ConfigError(f"donor_file {self.donor_file!r} does not exist")


@dataclass
class DonorState:
    """The donor's weights at the chosen step: ``W`` ``(d_hidden, n_features)``, ``b`` ``(n_features,)``."""

    W: Tensor
    b: Tensor
    seed: int | None


def _load(path: str) -> dict[str, Any]:
    try:
        # weights_only: a donor file runs no pickled code.
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"donor_file {path!r} does not exist") from None
    except Exception as error:  # noqa: BLE001 - any unreadable file is one clear line
        raise ConfigError(f"donor_file {path!r} is not a snapshot file or checkpoint: {error}") from None


def load_donor(path: str, instance: int = 0, step: int = 0) -> DonorState:
    """Read one instance's weights at ``step`` from a snapshot file or a Lightning checkpoint.

    A snapshot file holds every saved step. A checkpoint holds its own step, and step 0, which is
    recomputed from the init seeds in its hyperparameters.
    """
    content = _load(path)
    if "step" in content and "W" in content:  # a GeometrySnapshots file
        W_all, b_all, steps = content["W"], content["b"], content["step"].tolist()
        if step not in steps:
            raise ConfigError(f"donor_step {step} is not saved in {path!r}; saved steps: {steps}")
        W, b = W_all[steps.index(step)], b_all[steps.index(step)]  # (n_instances, d_hidden, n_features)
        seeds = content.get("init_seeds")
        seeds = None if seeds is None else [int(s) for s in seeds]
    elif "state_dict" in content:  # a Lightning checkpoint of LitToyModel
        state = content["state_dict"]
        W, b = state["model.W"], state["model.b"]
        hparams = content.get("hyper_parameters", {})
        seeds = resolve_init_seeds(hparams["init_seeds"], W.shape[0]) if "init_seeds" in hparams else None
        if step == 0 and content.get("global_step", 0) != 0:
            if seeds is None:
                raise ConfigError(f"checkpoint {path!r} has no init_seeds: cannot recompute its step 0")
            W = torch.stack([initial_weights(s, W.shape[1], W.shape[2]) for s in seeds])
            b = torch.zeros_like(b)
        elif step not in (0, content.get("global_step", 0)):
            raise ConfigError(
                f"checkpoint {path!r} holds step {content.get('global_step')} (and step 0), not donor_step {step}"
            )
    else:
        raise ConfigError(f"donor_file {path!r} is neither a snapshot file nor a LitToyModel checkpoint")
    if not 0 <= instance < W.shape[0]:
        raise ConfigError(f"donor_instance {instance} out of range: {path!r} has instances 0..{W.shape[0] - 1}")
    return DonorState(W=W[instance].float(), b=b[instance].float(), seed=None if seeds is None else seeds[instance])


def donor_state(triple: Triple, d_hidden: int, n_features: int) -> DonorState:
    """The donor of a triple, from its seed or its file."""
    if triple.donor_seed is not None:
        return DonorState(initial_weights(triple.donor_seed, d_hidden, n_features), torch.zeros(n_features), triple.donor_seed)
    donor = load_donor(triple.donor_file, triple.donor_instance, triple.donor_step)
    if tuple(donor.W.shape) != (d_hidden, n_features):
        raise ConfigError(
            f"donor_file {triple.donor_file!r} has W of shape (d_hidden, n_features) = {tuple(donor.W.shape)},"
            f" the model has ({d_hidden}, {n_features})"
        )
    return donor


def patched_initial_state(triples: list[Triple], d_hidden: int, n_features: int) -> dict[str, Any]:
    """The initial ``W``, ``b`` and init seeds of a patch experiment, laid out (base, patched, donor) per triple.

    Returns:
        ``{"W": (3 * n_triples, d_hidden, n_features), "b": (3 * n_triples, n_features),
        "init_seeds": [...]}``; a file donor without a known seed gets seed -1.
    """
    W, b, seeds = [], [], []
    for triple in triples:
        bad = [f for f in triple.features if not 0 <= f < n_features]
        if bad:
            raise ConfigError(f"patched features {bad} out of range: features are 0..{n_features - 1}")
        donor = donor_state(triple, d_hidden, n_features)
        base = initial_weights(triple.base_seed, d_hidden, n_features)  # (d_hidden, n_features)
        patched = base.clone()
        patched[:, triple.features] = donor.W[:, triple.features]
        W += [base, patched, donor.W]
        b += [torch.zeros(n_features), torch.zeros(n_features), donor.b]
        seeds += [triple.base_seed, triple.base_seed, -1 if donor.seed is None else donor.seed]
    return {"W": torch.stack(W), "b": torch.stack(b), "init_seeds": seeds}


@torch.no_grad()
def apply_initial_state(model: ToyModel, state: dict[str, Any]) -> None:
    """Write a patch experiment's initial state into ``model`` in place (same Parameter objects)."""
    if tuple(state["W"].shape) != tuple(model.W.shape):
        raise ConfigError(
            f"the patch experiment has {state['W'].shape[0]} instances (3 per triple: base, patched, donor),"
            f" the model has {model.n_instances}: set data.n_instances to {state['W'].shape[0]}"
        )
    model.W.copy_(state["W"])
    model.b.copy_(state["b"])
    model.init_seeds = list(state["init_seeds"])


def pair_from_scan(report: str | dict[str, Any], max_triples: int = 8, base: str = "pentagon", donor: str = "hexagon") -> list[Triple]:
    """Build triples from a scan's ``report.json``: each ``base``-geometry seed gets a ``donor``-geometry seed.

    The patched features are those the report marks as not represented in the base. Donors are
    used in turn, so every base is paired even when donors are few.

    Args:
        report: A ``report.json`` path or its content.
        max_triples: At most this many triples (bases in instance order).
        base: The geometry of the bases.
        donor: The geometry of the donors.
    """
    if not isinstance(report, dict):
        if not Path(report).is_file():
            raise ConfigError(f"scan_report {str(report)!r} does not exist")
        report = json.loads(Path(report).read_text())
    instances = report.get("instances", [])
    n_features = max((len(i.get("feature_norms", [])) for i in instances), default=0)
    bases = [i for i in instances if i.get("geometry") == base and len(i["represented"]) < n_features]
    donors = [i for i in instances if i.get("geometry") == donor]
    if not bases or not donors:
        found = sorted({str(i.get("geometry")) for i in instances})
        raise ConfigError(
            f"scan report has {len(bases)} {base} bases and {len(donors)} {donor} donors; need at least one of each"
            f" (geometries found: {', '.join(found)})"
        )
    triples = []
    for k, entry in enumerate(bases[:max_triples]):
        unlearned = [f for f in range(n_features) if f not in entry["represented"]]
        triples.append(Triple(base_seed=int(entry["init_seed"]), features=unlearned, donor_seed=int(donors[k % len(donors)]["init_seed"])))
    return triples


def summarize_triples(triples: list[Triple], geometries: list[str]) -> dict[str, Any]:
    """The patch outcome per triple and the flip rate.

    A triple *flipped* when the patched base ends in the donor's geometry while the base does not.

    Args:
        triples: The experiment's triples.
        geometries: The final geometry name of every instance, laid out (base, patched, donor).
    """
    rows = []
    for k, triple in enumerate(triples):
        base_geometry, patched_geometry, donor_geometry = geometries[3 * k : 3 * k + 3]
        rows.append(
            {
                "base_seed": triple.base_seed,
                "donor_seed": triple.donor_seed,
                "donor_file": triple.donor_file,
                "features": list(triple.features),
                "instances": [3 * k, 3 * k + 1, 3 * k + 2],
                "base_geometry": base_geometry,
                "patched_geometry": patched_geometry,
                "donor_geometry": donor_geometry,
                "flipped": patched_geometry == donor_geometry != base_geometry,
            }
        )
    flip_rate = sum(row["flipped"] for row in rows) / len(rows) if rows else float("nan")
    return {"triples": rows, "flip_rate": flip_rate}
