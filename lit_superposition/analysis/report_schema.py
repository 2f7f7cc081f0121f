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
DATA_POINTS_FILE = "data_points.pt"  #: finite data: each instance's training points' hidden vectors
LLC_FILE = "llc.pt"  #: LLC: the latest estimate's per-chain loss traces (analysis/llc_results.py)
SWEEP_FILE = "sweep.json"  #: a sweep directory's runs, states and headline results (sweeps/state.py)

#: The members of a weight-patching triple, in instance order: ``3k``, ``3k + 1``, ``3k + 2``.
PATCH_ROLES = ("base", "patched", "donor")


class NeuronReport(TypedDict):
    """One neuron of a model with a privileged basis."""

    top_feature: int
    top_share: float  #: of the neuron's squared weight
    weights: list[float]


class LLCRecord(TypedDict):
    """An instance's local learning coefficient λ̂ (analysis/llc.py); null where a value is not finite."""

    mean: float | None  #: λ̂ averaged over chains
    std: float | None  #: its standard deviation over chains (null with one chain)
    per_chain: list[float | None]
    init_loss: float | None  #: L_n(w*): the mean loss over the sample at the weights
    settings: dict[str, Any]  #: the resolved hyperparameters (LLCSettings)
    warnings: list[str]  #: chains that may not have settled
    step: int  #: the training step of the weights
    sample: str  #: "training set" or "stream, sample_seed S"


class LLCPoint(TypedDict):
    """λ̂ of an instance at one step of training (LLCOverTraining)."""

    step: int
    mean: float | None
    std: float | None
    warnings: list[str]  #: the kinds: nonfinite, negative, trend


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
    dataset_size: NotRequired[int]  #: finite data: the instance's training points
    train_loss: NotRequired[float]  #: finite data: mean over its training points
    test_loss: NotRequired[float]  #: finite data: mean over its held-out test points
    data_dimensionality: NotRequired[float]  #: finite data: mean over its training points' hidden vectors
    feature_dimensionality: NotRequired[float]  #: finite data: mean over its represented features
    llc: NotRequired[LLCRecord]  #: the latest λ̂ (lit-superposition llc, or LLCOverTraining's last estimate)
    llc_over_training: NotRequired[list[LLCPoint]]  #: LLCOverTraining: λ̂ at each estimated step


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


class SAEInstanceReport(TypedDict):
    """One SAE of an SAE run (:class:`~lit_superposition.callbacks.SAEReport`): its setting and scores against the true features."""

    index: int
    init_seed: int  #: the SAE's seed
    source_instance: int  #: the source run's instance it reads
    d_latent: int
    sparsity_coefficient: NotRequired[float]  #: relu, jumprelu
    k: NotRequired[int]  #: topk
    setting_label: str  #: "d=5 λ=0.1": the setting, the same for every source instance and seed
    loss: float  #: reconstruction + weighted sparsity, on fresh batches
    reconstruction_loss: float
    sparsity_loss: float
    mmcs: float | None  #: mean max cosine over the represented true directions (live latents); null: none represented
    matched_cosine: float | None  #: Hungarian-matched mean cosine
    n_recovered: int  #: represented directions matched at a cosine >= sae.recovered_above
    n_represented: int
    n_split: int  #: represented directions with two or more live latents at that cosine
    n_mixed: int  #: live latents at that cosine to no represented direction
    l0: float  #: mean active latents per input
    true_l0: float  #: Σ p over the source's features
    represented_l0: float  #: Σ p over its represented features: an ideal dictionary's L0
    dead_latents: int  #: latents active on none of the evaluation inputs
    explained_variance: float
    l2_ratio: float | None  #: shrinkage: mean ‖ĥ‖/‖h‖ over inputs with h != 0
    relative_reconstruction_bias: float | None
    geometry: str  #: "4/5 recovered" (what compare and the page count)
    represented: list[int]  #: the represented true directions
    max_cosine: list[float | None]  #: per true direction; null where not represented
    matched_latent: list[int]  #: per true direction; -1 where none
    dead: list[int]  #: the dead latents
    decoder: NotRequired[list[list[float]]]  #: 2-D sources: the decoder rows (d_latent, 2), unit norm
    n_resampled: NotRequired[int]  #: DeadLatentResampling: latents resampled over the run


class ResamplingReport(TypedDict):
    """DeadLatentResampling's settings and what it did."""

    every_n_steps: int
    window: int
    encoder_scale: float
    events: list[dict[str, Any]]  #: {"step": int, "n_resampled": [per SAE]}


class SAERunReport(TypedDict):
    """What an SAE run read and how it scored: ``report["sae"]``."""

    architecture: str
    sparsity_name: str  #: "sparsity_coefficient" or "k"
    source: str  #: the source checkpoint
    source_step: int
    source_variant: str
    activations: str  #: "hidden" or "neurons"
    source_instances: list[int]
    recovered_above: float
    true_l0: list[float]  #: per source instance streamed
    represented_l0: list[float]
    features: NotRequired[list[list[list[float]]]]  #: 2-D sources: the true directions (n_sources, 2, n_truth)
    resampling: NotRequired[ResamplingReport]


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
    instances: list[InstanceReport] | list[SAEInstanceReport]  #: an SAE run's instances are its SAEs
    triples: NotRequired[list[TripleReport]]  #: WeightPatching
    flip_rate: NotRequired[float]
    grid: NotRequired[dict[str, Any]]  #: PhaseDiagram: the axes and, per point, phase, best_instance, theory_phase, theory_loss
    crossover: NotRequired[dict[str, Any]]  #: CrossoverReport
    threads: NotRequired[dict[str, Any]]  #: ThreadPolicy: threads, reason, source, used
    sae: NotRequired[SAERunReport]  #: an SAE run (SAEReport)


def instance_roles(report: Report) -> dict[int, str]:
    """``base``, ``patched`` or ``donor`` by instance, in a patch run (else empty)."""
    return {index: role for triple in report.get("triples", []) for role, index in zip(PATCH_ROLES, triple["instances"])}
