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
from lit_superposition.models import ToyModel, resolve_init_seeds



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
    """One instance's tensors at the chosen step, by name (``W`` ``(d_hidden, n_features)``, ``b`` ``(n_features,)``, ...)."""

    state: dict[str, Tensor]
    seed: int | None


def _load(path: str) -> dict[str, Any]:
    try:
        # weights_only: a donor file runs no pickled code.
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"donor_file {path!r} does not exist") from None
    except Exception as error:  # noqa: BLE001 - any unreadable file is one clear line
        raise ConfigError(f"donor_file {path!r} is not a snapshot file or checkpoint: {error}") from None


def _checkpoint_state(content: dict[str, Any], path: str, step: int, model_cls: type[ToyModel]) -> tuple[dict[str, Tensor], list[int] | None]:
    """The model's tensors of a Lightning checkpoint at its own step, or at step 0 (its recorded initial state)."""
    state = content["state_dict"]
    names = [key.removeprefix("model.") for key in state if key.startswith("model.") and not key.startswith("model.initial_")]
    n_instances = state["model.W"].shape[0]
    seeds = content.get("init_seeds")  # every instance's, as the run recorded them
    if seeds is None and "init_seeds" in content.get("hyper_parameters", {}):  # a checkpoint of release 0.2 or earlier
        seeds = resolve_init_seeds(content["hyper_parameters"]["init_seeds"], n_instances)
    saved_step = content.get("global_step", 0)
    if step == saved_step:
        return {name: state[f"model.{name}"] for name in names}, seeds
    if step != 0:
        raise ConfigError(f"checkpoint {path!r} holds step {saved_step} (and step 0), not donor_step {step}")
    if all(f"model.initial_{name}" in state for name in names):  # the recorded initial state (patches included)
        return {name: state[f"model.initial_{name}"] for name in names}, seeds
    if seeds is None:  # a release-0.1 checkpoint: its step 0 was its seeds'
        raise ConfigError(f"checkpoint {path!r} has no recorded initial state and no init_seeds: cannot read its step 0")
    W = state["model.W"]
    return model_cls.seeded_state(seeds, W.shape[1], W.shape[2]), seeds


def load_donor(path: str, instance: int = 0, step: int = 0, model_cls: type[ToyModel] = ToyModel) -> DonorState:
    """Read one instance's tensors at ``step`` from a snapshot file or a Lightning checkpoint.

    A snapshot file holds every saved step. A checkpoint holds its own step, and step 0: the
    initial state it recorded (what the run really started from, patches included).
    """
    content = _load(path)
    if "step" in content and "W" in content:  # a GeometrySnapshots file
        steps = content["step"].tolist()
        if step not in steps:
            raise ConfigError(f"donor_step {step} is not saved in {path!r}; saved steps: {steps}")
        names = [name for name, value in content.items() if name not in ("step", "init_seeds") and isinstance(value, Tensor)]
        state = {name: content[name][steps.index(step)] for name in names}  # each (n_instances, ...)
        seeds = content.get("init_seeds")
        seeds = None if seeds is None else [int(s) for s in seeds]
    elif "state_dict" in content and "model.W" in content["state_dict"]:  # a Lightning checkpoint of LitToyModel
        state, seeds = _checkpoint_state(content, path, step, model_cls)
    else:
        raise ConfigError(f"donor_file {path!r} is neither a snapshot file nor a LitToyModel checkpoint")
    n_instances = state["W"].shape[0]
    if not 0 <= instance < n_instances:
        raise ConfigError(f"donor_instance {instance} out of range: {path!r} has instances 0..{n_instances - 1}")
    return DonorState({name: value[instance].float() for name, value in state.items()}, None if seeds is None else seeds[instance])


def donor_state(triple: Triple, model_cls: type[ToyModel], d_hidden: int, n_features: int) -> DonorState:
    """The donor of a triple, from its seed or its file."""
    if triple.donor_seed is not None:
        return DonorState(model_cls.instance_initial_state(triple.donor_seed, d_hidden, n_features), triple.donor_seed)
    donor = load_donor(triple.donor_file, triple.donor_instance, triple.donor_step, model_cls)
    expected = model_cls.instance_initial_state(0, d_hidden, n_features)
    for name, value in expected.items():
        if name not in donor.state or donor.state[name].shape != value.shape:
            found = tuple(donor.state[name].shape) if name in donor.state else "nothing"
            raise ConfigError(
                f"donor_file {triple.donor_file!r} has {name} of shape {found} per instance,"
                f" the model's is {tuple(value.shape)} (d_hidden={d_hidden}, n_features={n_features})"
            )
    return donor


def patched_initial_state(triples: list[Triple], model_cls: type[ToyModel], d_hidden: int, n_features: int) -> dict[str, Any]:
    """The initial tensors and init seeds of a patch experiment, laid out (base, patched, donor) per triple.

    The patched base is the base seed's initial state with the feature columns of the model's
    ``patched_parameters`` (for the bundled variants: the columns of ``W``) taken from the donor.

    Returns:
        ``{"state": {name: (3 * n_triples, ...)}, "init_seeds": [...]}``; a file donor without a
        known seed gets seed -1.
    """
    states, seeds = [], []
    for triple in triples:
        bad = [f for f in triple.features if not 0 <= f < n_features]
        if bad:
            raise ConfigError(f"patched features {bad} out of range: features are 0..{n_features - 1}")
        donor = donor_state(triple, model_cls, d_hidden, n_features)
        base = model_cls.instance_initial_state(triple.base_seed, d_hidden, n_features)
        patched = {name: value.clone() for name, value in base.items()}
        for name, axis in model_cls.patched_parameters.items():
            index = [slice(None)] * patched[name].ndim
            index[axis] = triple.features
            patched[name][tuple(index)] = donor.state[name][tuple(index)]
        states += [base, patched, {name: donor.state[name] for name in base}]
        seeds += [triple.base_seed, triple.base_seed, -1 if donor.seed is None else donor.seed]
    return {"state": {name: torch.stack([s[name] for s in states]) for name in states[0]}, "init_seeds": seeds}


def apply_initial_state(model: ToyModel, initial: dict[str, Any]) -> None:
    """Start ``model`` from a patch experiment's initial state (in place, recorded as its initial state)."""
    n = initial["state"]["W"].shape[0]
    if n != model.n_instances:
        raise ConfigError(
            f"the patch experiment has {n} instances (3 per triple: base, patched, donor),"
            f" the model has {model.n_instances}: set data.n_instances to {n}"
        )
    model.set_initial_state(initial["state"], initial["init_seeds"])


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
