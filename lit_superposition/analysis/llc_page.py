"""The report page's LLC section and the LLC figures (Agg backend, no Lightning).

Three figures where the run has λ̂ (``instances[i].llc`` in ``report.json``): every instance's λ̂
with its spread over chains, coloured by geometry; the per-chain loss traces of a few instances
(from ``llc.pt``), which show whether the chains settled; and λ̂ over training where
:class:`~lit_superposition.callbacks.LLCOverTraining` measured it. Chain warnings are listed under
the figures that show them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import Tensor  # noqa: E402

from lit_superposition.analysis.report_schema import LLC_FILE  # noqa: E402
from lit_superposition.analysis.run_files import Run  # noqa: E402

if TYPE_CHECKING:
    from lit_superposition.analysis.report_page import PageFigure

#: Panels of the trace figure.
MAX_TRACE_PANELS = 8
#: Warnings quoted under a figure (all of them are in report.json).
MAX_QUOTED_WARNINGS = 6


def geometry_label(row: dict[str, Any]) -> str:
    """An instance's geometry as one word: the polygon's name, else how many features it represents."""
    return row["geometry"] if isinstance(row["geometry"], str) else f"{len(row['represented'])} represented"


def _colors(labels: Sequence[str]) -> dict[str, Any]:
    """One tab10 colour per label, in order of first appearance."""
    names = list(dict.fromkeys(labels))
    return {name: plt.get_cmap("tab10")(k % 10) for k, name in enumerate(names)}


def trace_figure(traces: Tensor, draws: Tensor, nbeta: Tensor, init_loss: Tensor, titles: Sequence[str]) -> Figure:
    """Per-chain loss traces, one panel per instance: ``nβ · (L_batch(w_t) − L_n(w*))`` against the draw.

    On that scale a chain's mean is its λ̂; the dashed line is the instance's λ̂ (mean over chains).
    A settled chain wanders around a flat level; a chain still climbing, or sinking below zero
    (lower loss than the trained weights), has not.

    Args:
        traces: ``(k, n_chains, kept)`` minibatch losses of the kept draws.
        draws: ``(kept,)`` their indices among the draws.
        nbeta: ``(k,)``; init_loss: ``(k,)`` ``L_n(w*)``.
        titles: One per instance.
    """
    k = traces.shape[0]
    ncols = min(k, 4)
    nrows = -(-k // ncols)
    fig = Figure(figsize=(3.3 * ncols + 0.4, 2.6 * nrows + 0.5), dpi=90)
    axes = fig.subplots(nrows, ncols, squeeze=False).flatten()
    scaled = (traces.double() - init_loss.double()[:, None, None]) * nbeta.double()[:, None, None]  # (k, n_chains, kept)
    chain_colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, traces.shape[1]))
    x = draws.numpy()
    for ax, lines, title in zip(axes, scaled.numpy(), titles):
        for color, line in zip(chain_colors, lines):
            ax.plot(x, line, color=color, lw=0.6, alpha=0.8)
        mean = float(np.nanmean(lines)) if np.isfinite(lines).any() else float("nan")
        ax.axhline(mean, color="black", ls="--", lw=1.0)
        ax.axhline(0.0, color="grey", lw=0.5)
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("draw", fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in axes[k:]:
        ax.set_visible(False)
    axes[0].set_ylabel("nβ · (L_batch − L_n(w*))", fontsize=7)
    fig.suptitle("per-chain loss traces (one colour per chain; dashed: λ̂, the mean over chains and draws)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig


def estimates_figure(rows: Sequence[dict[str, Any]]) -> Figure:
    """λ̂ ± its std over chains for every instance with ``llc`` (left), and by geometry (right)."""
    rows = [row for row in rows if "llc" in row]
    labels = [geometry_label(row) for row in rows]
    colors = _colors(labels)
    mean = np.array([np.nan if row["llc"]["mean"] is None else row["llc"]["mean"] for row in rows])
    std = np.array([0.0 if row["llc"]["std"] is None else row["llc"]["std"] for row in rows])
    fig = Figure(figsize=(10.0, 3.8), dpi=90)
    by_instance, by_geometry = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2.2, 1]})
    for name, color in colors.items():
        chosen = [j for j, label in enumerate(labels) if label == name]
        by_instance.errorbar([rows[j]["index"] for j in chosen], mean[chosen], yerr=std[chosen], fmt="o", ms=4,
                             color=color, lw=1.0, capsize=2, label=f"{name} ({len(chosen)})")
    by_instance.set_xlabel("instance", fontsize=8)
    by_instance.set_ylabel("λ̂ (± std over chains)", fontsize=8)
    by_instance.legend(fontsize=7, title="geometry", title_fontsize=7)
    names = list(colors)
    for position, name in enumerate(names):
        values = mean[[j for j, label in enumerate(labels) if label == name]]
        values = values[np.isfinite(values)]
        jitter = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else np.zeros(len(values))
        by_geometry.scatter(position + jitter, values, color=colors[name], s=14)
        if len(values):
            by_geometry.errorbar(position + 0.3, values.mean(), yerr=values.std(ddof=1) if len(values) > 1 else 0,
                                 fmt="s", color="black", ms=5, capsize=3)
    by_geometry.set_xticks(range(len(names)), names, fontsize=7, rotation=20)
    by_geometry.set_title("by geometry (black: mean ± sd over instances)", fontsize=8)
    for ax in (by_instance, by_geometry):
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def over_training_figure(rows: Sequence[dict[str, Any]]) -> Figure:
    """λ̂ against the training step, one line per instance, coloured by the geometry it ends in."""
    rows = [row for row in rows if row.get("llc_over_training")]
    labels = [geometry_label(row) for row in rows]
    colors = _colors(labels)
    fig = Figure(figsize=(7.0, 4.0), dpi=90)
    ax = fig.add_subplot()
    for row, label in zip(rows, labels):
        points = [(p["step"], p["mean"]) for p in row["llc_over_training"] if p["mean"] is not None]
        ax.plot([p[0] for p in points], [p[1] for p in points], color=colors[label], lw=0.9, alpha=0.7, marker=".", ms=3)
    for name, color in colors.items():
        ax.plot([], [], color=color, label=f"{name} ({labels.count(name)})")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("training step", fontsize=8)
    ax.set_ylabel("λ̂", fontsize=8)
    ax.axhline(0.0, color="grey", lw=0.5)
    ax.legend(fontsize=7, title="geometry at the end", title_fontsize=7)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def trace_instances(rows: Sequence[dict[str, Any]], available: Sequence[int], limit: int = MAX_TRACE_PANELS) -> list[int]:
    """The instances whose traces are drawn: the first of each geometry, then those with warnings, then the rest."""
    by_index = {row["index"]: row for row in rows}
    present = [i for i in available if i in by_index]
    chosen = list(dict.fromkeys(
        [next(i for i in present if geometry_label(by_index[i]) == name) for name in dict.fromkeys(geometry_label(by_index[i]) for i in present)]
        + [i for i in present if by_index[i].get("llc", {}).get("warnings")]
        + present
    ))
    return chosen[:limit]


def llc_value(record: dict[str, Any]) -> str:
    """``λ̂ = m ± s`` of an ``llc`` record."""
    mean, std = record.get("mean"), record.get("std")
    return "λ̂ not finite" if mean is None else f"λ̂ = {mean:.2f}" + ("" if std is None else f" ± {std:.2f}")


def instance_title(row: dict[str, Any]) -> str:
    """``i (geometry, seed s): λ̂ = m ± s`` (no seed for an instance that started from a file: seed -1)."""
    seed = f", seed {row['init_seed']}" if row.get("init_seed", -1) >= 0 else ""
    return f"{row['index']} ({geometry_label(row)}{seed}): {llc_value(row.get('llc') or {})}"


def _warning_note(messages: Sequence[str]) -> str:
    if not messages:
        return " No chain warnings."
    quoted = "; ".join(messages[:MAX_QUOTED_WARNINGS])
    more = f" (and {len(messages) - MAX_QUOTED_WARNINGS} more in report.json)" if len(messages) > MAX_QUOTED_WARNINGS else ""
    return f" {len(messages)} chain warning(s): {quoted}{more}."


def _settings_note(settings: dict[str, Any]) -> str:
    return ", ".join(f"{name} {value:.4g}" if isinstance(value, float) else f"{name} {value}" for name, value in settings.items())


def llc_figures(run: Run, out: Path) -> list[PageFigure]:
    """The page's LLC section: λ̂ per instance and by geometry, the chains' traces, λ̂ over training."""
    from lit_superposition.analysis.report_page import figure_saver  # the page imports this section

    rows = run.report["instances"]
    measured = [row for row in rows if "llc" in row]
    figures: list[PageFigure] = []
    if not measured:
        return figures
    save = figure_saver(out, figures)
    first = measured[0]["llc"]
    warnings = [message for row in measured for message in row["llc"]["warnings"]]
    # Finite training sets of several sizes give each size its own n (and the defaults that follow it).
    shared = {name: value for name, value in first["settings"].items() if all(row["llc"]["settings"].get(name) == value for row in measured)}
    differ = "" if len(shared) == len(first["settings"]) else f"; {', '.join(sorted(set(first['settings']) - set(shared)))} per instance in report.json"
    save("llc_estimates.png", estimates_figure(rows), "Local learning coefficient λ̂",
         f"λ̂ of every instance at step {first['step']} (points: mean over chains, bars: std over chains), and by the geometry "
         f"each instance ends in. Sample: {first['sample']}. Hyperparameters: {_settings_note(shared)}{differ}."
         + _warning_note(warnings))
    trace_path = run.directory / LLC_FILE
    if trace_path.is_file():
        content = torch.load(trace_path, map_location="cpu", weights_only=True)
        available = content["instances"].tolist()
        shown = trace_instances(rows, available)
        position = [available.index(i) for i in shown]
        by_index = {row["index"]: row for row in rows}
        figure = trace_figure(content["traces"][position], content["draws"], content["nbeta"][position],
                              content["init_loss"][position], [instance_title(by_index[i]) for i in shown])
        shown_warnings = [message for i in shown for message in by_index[i].get("llc", {}).get("warnings", [])]
        save("llc_traces.png", figure, f"λ̂: the chains' loss traces (step {content['step']})",
             "Each chain's minibatch loss minus the loss at the weights, times nβ, over the draws after burn-in (every "
             f"{int(content['draws'][1] - content['draws'][0]) if len(content['draws']) > 1 else 1}-th draw): a chain's mean is "
             "its λ̂. Flat, overlapping chains have settled; a trend, a chain below zero or a gap between chains is "
             "what the warnings flag." + _warning_note(shown_warnings))
    if any(len(row.get("llc_over_training", [])) > 1 for row in rows):
        save("llc_over_training.png", over_training_figure(rows), "λ̂ over training",
             "λ̂ of every instance at the estimated steps (log-spaced), coloured by the geometry it ends in: loss, "
             "λ̂ and geometry on one timeline (TensorBoard: llc/instance_NNN).")
    return figures
