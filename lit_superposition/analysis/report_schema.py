"""The run directory's files and ``report.json``'s one schema, read by every reader and written by the report.

The end-of-fit report (:class:`~lit_superposition.callbacks.GeometryReport`) writes :class:`Report`;
report extensions (:class:`~lit_superposition.protocols.ReportExtension`) add the optional keys
declared here; the report page, ``compare``, ``theory``, the patch pairing and ``sweep`` read it.
Keys marked ``NotRequired`` are present only where their experiment ran.
"""

from __future__ import annotations

from typing import Any, TypedDict

from typing_extensions import NotRequired

REPORT_FILE = "report.json"
SNAPSHOT_FILE = "snapshots.pt"
CONFIG_FILE = "config.yaml"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
PAGE_DIR = "report"

#: The members of a weight-patching triple, in instance order: ``3k``, ``3k + 1``, ``3k + 2``.
PATCH_ROLES = ("base", "patched", "donor")


class NeuronReport(TypedDict):
    """One neuron of a model with a privileged basis."""

    top_feature: int
    top_share: float  #: of the neuron's squared weight
    weights: list[float]


class InstanceReport(TypedDict):
    """One instance of the run, at the end of fit."""

    index: int
    init_seed: int  #: -1: started from a file, not a seed
    loss: float  #: mean over features of the importance-weighted loss on fresh batches
    per_feature_loss: list[float]
    represented: list[int]  #: features with ‖W_f‖ above the threshold
    n_directions: int
    geometry: str | list[str]  #: a polygon's name in 2-D, else each feature's nearest dimensionality fraction
    feature_norms: list[float]
    dimensionality: list[float]
    bias: list[float]
    importance: list[float]
    regular: NotRequired[bool]  #: 2-D only
    feature_probability: NotRequired[list[float]]
    neurons: NotRequired[list[NeuronReport]]
    computed: NotRequired[list[int]]  #: the computation variant: features whose |x| it computes
    computed_signs: NotRequired[int]  #: the computation variant: (feature, sign) halves computed
    setting: NotRequired[int]  #: with repeats
    repeat: NotRequired[int]
    best_repeat: NotRequired[bool]
    expected_loss: NotRequired[float]  #: theory: the exact expected loss of the learned weights
    expected_loss_error: NotRequired[float]
    kgon_loss: NotRequired[float]
    best_k: NotRequired[int]
    best_kgon_loss: NotRequired[float]
    start: NotRequired[str]  #: TemplateStart: "xavier" or "<name> template"
    phase: NotRequired[str]  #: PhaseDiagram


class TripleReport(TypedDict):
    """One (base, patched base, donor) triple of a weight-patching run."""

    base_seed: int
    donor_seed: int | None
    donor_file: NotRequired[str | None]
    features: list[int]
    base_geometry: str
    patched_geometry: str
    donor_geometry: str
    flipped: bool
    instances: list[int]  #: base, patched, donor


class Report(TypedDict):
    """``report.json``."""

    step: int
    n_instances: int
    n_features: int
    d_hidden: int
    variant: str
    threshold: float
    repeats: int
    loss_definition: str
    instances: list[InstanceReport]
    triples: NotRequired[list[TripleReport]]  #: WeightPatching
    flip_rate: NotRequired[float]
    grid: NotRequired[dict[str, Any]]  #: PhaseDiagram: the axes and, per point, phase, best_instance, theory_phase, theory_loss
    crossover: NotRequired[dict[str, Any]]  #: CrossoverReport
    threads: NotRequired[dict[str, Any]]  #: ThreadPolicy: threads, reason, source, used


def instance_roles(report: Report) -> dict[int, str]:
    """``base``, ``patched`` or ``donor`` by instance, in a patch run (else empty)."""
    return {index: role for triple in report.get("triples", []) for role, index in zip(PATCH_ROLES, triple["instances"])}
