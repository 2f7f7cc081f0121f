"""Runs side by side: the same init seeds trained under different settings (seed 000's optimizer study); no Lightning."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from lit_superposition.analysis.run_files import Run
from lit_superposition.errors import ConfigError

if TYPE_CHECKING:  # matplotlib loads with the figure: comparing runs, and refusing bad ones, needs none of it
    from matplotlib.figure import Figure

#: Config keys that differ between runs without changing what was trained.
IGNORED = ("trainer.logger", "ckpt_path", "trainer.enable_progress_bar", "trainer.enable_model_summary", "progress_bar")
#: What a config without these keys trains with (LitToyModel's defaults), so a label names it.
DEFAULTS = {"model.optimizer.class_path": "torch.optim.AdamW", "model.optimizer.init_args.lr": 0.001}


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay values."""
    if isinstance(config, dict):
        items: dict[str, Any] = {}
        for key, value in config.items():
            items.update(flatten(value, f"{prefix}{key}."))
        return items
    return {prefix.rstrip("."): config}


def _short(key: str, value: Any) -> str:
    if key.endswith(".class_path") and isinstance(value, str):
        return f"{key.removesuffix('.class_path')}={value.rsplit('.', 1)[-1]}"
    key = key.replace(".init_args.", ".")
    return f"{key}={value}"


def _with_defaults(flat: dict[str, Any]) -> dict[str, Any]:
    """``flat`` with the module's defaults where it names none (``model.optimizer: null`` is AdamW)."""
    if flat.get("model.optimizer", "absent") is None:
        del flat["model.optimizer"]
    if not any(key.startswith("model.optimizer.") for key in flat):
        flat.update(DEFAULTS)
    return flat


def run_labels(runs: list[Run]) -> list[str]:
    """Each run labelled by the settings in which its ``config.yaml`` differs from the others' (e.g. ``optimizer=Adam``)."""
    flat = [_with_defaults(flatten(run.config)) for run in runs]
    keys = sorted({key for f in flat for key in f if not key.startswith(IGNORED)})
    differing = [key for key in keys if len({repr(f.get(key)) for f in flat}) > 1]
    # A class explains its own init_args: an argument is shown only where runs of one class differ in
    # it (two AdamW runs at two learning rates), and one a config leaves out is the class's default.
    def differs_within_a_class(key: str) -> bool:
        owner, _, argument = key.partition(".init_args.")
        if not argument:
            return True
        values: dict[str, set[str]] = {}
        for f in flat:
            if f.get(key) is not None:
                values.setdefault(repr(f.get(f"{owner}.class_path")), set()).add(repr(f[key]))
        return any(len(v) > 1 for v in values.values())

    shown = [key for key in differing if differs_within_a_class(key)]
    labels = [", ".join(_short(key, f.get(key)) for key in shown) or run.directory.name for f, run in zip(flat, runs)]
    if len(set(labels)) < len(labels):  # identical configs: tell them apart by directory
        labels = [f"{label} ({run.directory.parent.name}/{run.directory.name})" for label, run in zip(labels, runs)]
    return labels


def compare_runs(runs: list[Run], labels: list[str] | None = None) -> dict[str, Any]:
    """Line up runs of the same init seeds and shapes: per-seed geometry and per-run counts.

    Args:
        runs: The runs.
        labels: Their labels (default: :func:`run_labels`; a sweep gives its own).

    Raises:
        ConfigError: one line, when the runs differ in their seeds or shapes.
    """
    if len(runs) < 2:
        raise ConfigError("compare needs at least two run directories")
    first = runs[0].report
    for run in runs[1:]:
        for key in ("n_instances", "n_features", "d_hidden"):
            if run.report[key] != first[key]:
                raise ConfigError(
                    f"runs differ in {key}: {runs[0].directory} has {first[key]}, {run.directory} has {run.report[key]}; "
                    "compare lines up runs of the same shape and init seeds"
                )
        seeds = [row["init_seed"] for row in run.report["instances"]]
        if seeds != [row["init_seed"] for row in first["instances"]]:
            raise ConfigError(
                f"runs differ in their init seeds: {runs[0].directory} and {run.directory}; compare lines up the same seeds"
            )
    labels = labels or run_labels(runs)
    seeds = [row["init_seed"] for row in first["instances"]]
    table = [
        {"instance": i, "init_seed": seed, **{label: _geometry(run.report["instances"][i]) for label, run in zip(labels, runs)}}
        for i, seed in enumerate(seeds)
    ]
    counts = {label: dict(Counter(_geometry(row) for row in run.report["instances"]).most_common()) for label, run in zip(labels, runs)}
    return {"runs": [str(run.directory) for run in runs], "labels": labels, "seeds": table, "counts": counts}


def _geometry(row: dict[str, Any]) -> str:
    return row["geometry"] if isinstance(row["geometry"], str) else f"{len(row['represented'])} represented"


def counts_figure(comparison: dict[str, Any]) -> Figure:
    """Stacked bars: how many seeds end in each geometry, one bar per run (its label's settings a line each)."""
    import numpy as np
    from matplotlib.figure import Figure

    labels = comparison["labels"]
    geometries = sorted({g for counts in comparison["counts"].values() for g in counts})
    lines = [label.split(", ") for label in labels]
    width = max(len(line) for label in lines for line in label)  # characters of the longest setting
    # The legend sits beside the bars (never over one) and the layout makes room for it and the labels.
    fig = Figure(figsize=(2.6 + len(labels) * max(1.4, 0.075 * width), 3.2 + 0.16 * max(map(len, lines))), dpi=90,
                 layout="constrained")
    ax = fig.add_subplot()
    bottom = np.zeros(len(labels))
    for k, geometry in enumerate(geometries):
        heights = np.array([comparison["counts"][label].get(geometry, 0) for label in labels], dtype=float)
        ax.bar(range(len(labels)), heights, bottom=bottom, label=geometry, color=f"C{k % 10}")
        bottom += heights
    ax.set_xticks(range(len(labels)), ["\n".join(label) for label in lines], fontsize=8)
    ax.set_ylabel("instances (init seeds)")
    ax.legend(fontsize=8, title="geometry", loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    return fig
