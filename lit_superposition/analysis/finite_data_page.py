"""The report page's finite-data section: double descent, and where a model stores its data points; no Lightning.

Drawn from ``report.json`` (``dataset_size``, ``train_loss``, ``test_loss``, the dimensionalities of
:class:`~lit_superposition.callbacks.DataPointGeometry`) and ``data_points.pt`` (the training
points' hidden vectors), as the paper (Anthropic 2023) draws them.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from lit_superposition.analysis.plotting import feature_colors
from lit_superposition.analysis.report_schema import DATA_POINTS_FILE, InstanceReport
from lit_superposition.analysis.run_files import Run

MAX_PICTURES = 6  # sizes whose points and features are drawn


def best_per_size(rows: list[InstanceReport]) -> dict[int, InstanceReport]:
    """The repeat of every dataset size with the lowest training loss (the paper's and ARENA's choice)."""
    best: dict[int, InstanceReport] = {}
    for row in rows:
        size = row["dataset_size"]
        if size not in best or row["train_loss"] < best[size]["train_loss"]:
            best[size] = row
    return dict(sorted(best.items()))


def double_descent(rows: list[InstanceReport]) -> Figure:
    """Test loss (the double-descent curve) and train loss against the dataset size: every repeat as a
    dot, the best repeat of each size as a line."""
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    sizes = np.array([row["dataset_size"] for row in rows])
    best = best_per_size(rows)
    for axis, key, colour, label, yscale in (
        (axes[0], "test_loss", "tab:red", "test loss", "linear"),
        (axes[1], "train_loss", "tab:blue", "train loss", "log"),
    ):
        axis.scatter(sizes, [row[key] for row in rows], s=10, color=colour, alpha=0.35, label="every repeat")
        axis.plot(list(best), [row[key] for row in best.values()], "o-", color=colour, label="best repeat (lowest train loss)")
        axis.set(xscale="log", yscale=yscale, xlabel="training set size T (points)", ylabel=f"{label} (mean over features)", title=label)
        axis.legend(fontsize=8)
    return figure


def dimensionalities(rows: list[InstanceReport]) -> Figure:
    """Mean data-point and mean feature dimensionality against the dataset size (the best repeat per size)."""
    figure, axis = plt.subplots(figsize=(7, 4.2), layout="constrained")
    best = best_per_size(rows)
    for key, colour, label in (("data_dimensionality", "tab:purple", "data points"), ("feature_dimensionality", "tab:green", "features")):
        axis.plot(list(best), [row.get(key, np.nan) for row in best.values()], "o-", color=colour, label=label)
    axis.set(xscale="log", xlabel="training set size T (points)", ylabel="mean dimensionality")
    axis.legend()
    return figure


def points_and_features(hidden: list[torch.Tensor], W: torch.Tensor, chosen: list[InstanceReport]) -> Figure:
    """Per chosen instance, the training points' hidden vectors beside the features' directions (2-D)."""
    figure, axes = plt.subplots(2, len(chosen), figsize=(2.6 * len(chosen), 5.2), layout="constrained", squeeze=False)
    colours = feature_colors(W.shape[2])
    for column, row in enumerate(chosen):
        i = row["index"]
        H = hidden[i].numpy()  # (2, T_i)
        points, features = axes[0, column], axes[1, column]
        points.plot(np.stack([np.zeros(H.shape[1]), H[0]]), np.stack([np.zeros(H.shape[1]), H[1]]), color="0.3", lw=0.6)
        for f in range(W.shape[2]):
            features.plot([0, float(W[i, 0, f])], [0, float(W[i, 1, f])], color=colours[f], lw=0.8)
        points.set_title(f"T = {row['dataset_size']}: data points", fontsize=9)
        features.set_title(f"instance {i}: features", fontsize=9)
        for axis, values in ((points, H), (features, W[i].numpy())):
            limit = max(float(np.abs(values).max()), 1e-6) * 1.1
            axis.set(xlim=(-limit, limit), ylim=(-limit, limit), aspect="equal", xticks=[], yticks=[])
    return figure


def finite_data_figures(run: Run, out: Path) -> list:
    """The section's figures (none for a run on the endless stream)."""
    from lit_superposition.analysis.report_page import figure_saver

    rows = run.report["instances"]
    if not rows or "dataset_size" not in rows[0]:
        return []
    figures: list = []
    save = figure_saver(out, figures)
    save("double_descent.png", double_descent(rows), "Test and train loss against the training set size",
         "Every repeat as a dot, the lowest-training-loss repeat of each size as a line: the test loss peaks where the "
         "model stops memorizing its points and starts storing features (double descent).")
    if "data_dimensionality" in rows[0]:
        save("dimensionality_by_size.png", dimensionalities(rows), "Where the model stores data points or features",
             "Mean dimensionality of the training points' hidden vectors and of the represented features, best repeat per "
             "size: small sets store points in superposition, large ones features.")
    points_file = run.directory / DATA_POINTS_FILE
    if points_file.is_file() and run.report["d_hidden"] == 2:
        content = torch.load(points_file, map_location="cpu", weights_only=True)
        best = list(best_per_size(rows).values())
        chosen = [best[round(k * (len(best) - 1) / (MAX_PICTURES - 1))] for k in range(MAX_PICTURES)] if len(best) > MAX_PICTURES else best
        chosen = list({row["index"]: row for row in chosen}.values())
        save("data_points.png", points_and_features(content["hidden"], content["W"], chosen),
             "Hidden vectors of the training points beside the features",
             "Top: each training point's hidden vector h = W x; bottom: each feature's column of W, coloured by feature; "
             "best repeat of a few sizes, small to large.")
    return figures
