"""Matplotlib figures of feature geometry (Agg backend, no Lightning): each function returns a Figure.

Example::

    fig = polygon_grid(model.W.detach())          # the 2-D solutions of every instance
    fig.savefig("polygons.png"); plt.close(fig)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from torch import Tensor  # noqa: E402

from lit_superposition.analysis import geometry, neurons  # noqa: E402


def feature_colors(n_features: int) -> np.ndarray:
    """One colour per feature: tab10 up to ten features, a hue circle beyond. ``(n_features, 4)``."""
    if n_features <= 10:
        return plt.get_cmap("tab10")(np.arange(n_features))
    return plt.get_cmap("hsv")(np.linspace(0.0, 1.0, n_features, endpoint=False))


def _select(W: Tensor, instances: Sequence[int] | None) -> tuple[Tensor, list[int]]:
    W = W.detach().cpu().float()
    chosen = list(range(W.shape[0])) if instances is None else list(instances)
    return W[chosen], chosen


def polygon_grid(
    W: Tensor,
    instances: Sequence[int] | None = None,
    titles: Sequence[str] | None = None,
    canonicalize: bool = True,
    threshold: float = 0.5,
    ncols: int | None = None,
    scale: float = 1.0,
) -> Figure:
    """The 2-D solutions of several instances in a grid, features coloured by index (as in Anthropic 2022).

    Each cell shows every feature as a line from the origin to ``W[i, :, f]`` over the unit circle.
    All cells share one axes: a few hundred instances still draw in well under a second.

    Args:
        W: ``(n_instances, 2, n_features)``.
        instances: Which instances to draw (default: all).
        titles: One title per drawn instance (default: the index and the polygon name).
        canonicalize: Rotate and flip each solution to the common orientation first.
        threshold: Norm above which a feature counts as represented (for the default titles).
        ncols: Cells per row (default: about square).
        scale: Size of the figure relative to the default (about 1.7 inches a cell at 80 dpi).
    """
    W, chosen = _select(W, instances)
    if W.shape[1] != 2:
        raise ValueError(f"polygon_grid needs d_hidden = 2, got {W.shape[1]}")
    if canonicalize:
        W = geometry.canonicalize_2d(W, threshold)
    if titles is None:
        titles = [f"{i}: {p.name}" for i, p in zip(chosen, geometry.classify_2d(W, threshold))]
    n, n_features = W.shape[0], W.shape[2]
    ncols = ncols or max(1, math.ceil(math.sqrt(n)))
    nrows = max(1, math.ceil(n / ncols))
    radius = max(1.0, float(W.norm(dim=1).max())) if n else 1.0
    cell = 2.5 * radius
    centres = np.array([((k % ncols) * cell, -(k // ncols) * cell) for k in range(n)]).reshape(n, 2)
    fig = Figure(figsize=(scale * (1.7 * ncols + 0.3), scale * (1.8 * nrows + 0.4)), dpi=80)
    ax = fig.add_axes((0.0, 0.0, 1.0, 0.93 if nrows > 1 else 0.88))
    colors = feature_colors(n_features)
    ends = W.numpy().transpose(0, 2, 1) + centres[:, None, :]  # (n, n_features, 2)
    segments = np.stack([np.broadcast_to(centres[:, None, :], ends.shape), ends], axis=2).reshape(-1, 2, 2)
    ax.add_collection(LineCollection(segments, colors=np.tile(colors, (n, 1)), linewidths=1.5))
    ax.scatter(ends[..., 0].ravel(), ends[..., 1].ravel(), c=np.tile(colors, (n, 1)), s=10, zorder=3)
    circle = np.linspace(0.0, 2.0 * np.pi, 65)
    rings = np.stack([np.cos(circle), np.sin(circle)], axis=-1)[None] + centres[:, None, :]
    ax.add_collection(LineCollection(rings, colors="0.8", linewidths=0.6, zorder=0))
    for (x, y), title in zip(centres, titles):
        ax.text(x, y + 1.12 * radius, title, ha="center", va="bottom", fontsize=7 * scale ** 0.5)
    ax.set_xlim(-cell / 2, (ncols - 0.5) * cell)
    ax.set_ylim(-(nrows - 0.5) * cell, cell / 2 + 0.15 * radius)
    ax.set_aspect("equal")
    ax.axis("off")
    handles = [matplotlib.lines.Line2D([], [], color=c, lw=2) for c in colors]
    if n_features <= 12:
        fig.legend(handles, [f"f{f}" for f in range(n_features)], loc="upper center", ncol=n_features,
                   fontsize=6, frameon=False, handlelength=1.0)
    return fig


def wtw_grid(W: Tensor, instances: Sequence[int] | None = None, titles: Sequence[str] | None = None) -> Figure:
    """``WᵀW`` heatmaps (blue-red, symmetric scale) with a bar of feature norms beside each.

    Args:
        W: ``(n_instances, d_hidden, n_features)``.
        instances: Which instances to draw (default: all; keep it to a handful).
        titles: One title per drawn instance (default: the instance index).
    """
    W, chosen = _select(W, instances)
    titles = titles or [f"instance {i}" for i in chosen]
    gram = torch.bmm(W.transpose(1, 2), W).numpy()  # (n, n_features, n_features)
    norms = W.norm(dim=1).numpy()  # (n, n_features)
    n, n_features = W.shape[0], W.shape[2]
    ncols = min(n, 4) or 1
    nrows = max(1, math.ceil(n / ncols))
    fig = Figure(figsize=(3.2 * ncols, 2.8 * nrows), dpi=80)
    grid = fig.add_gridspec(nrows, 2 * ncols, width_ratios=[5, 1] * ncols, wspace=0.15, hspace=0.35)
    limit = max(1e-6, float(np.abs(gram).max())) if n else 1.0
    image = None
    for k in range(n):
        r, c = divmod(k, ncols)
        ax = fig.add_subplot(grid[r, 2 * c])
        image = ax.imshow(gram[k], cmap="RdBu", vmin=-limit, vmax=limit)
        ax.set_title(titles[k], fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        bars = fig.add_subplot(grid[r, 2 * c + 1])
        bars.barh(np.arange(n_features), norms[k], color=feature_colors(n_features), height=0.9)
        bars.set_ylim(n_features - 0.5, -0.5)
        bars.set_xlim(0, max(1.0, float(norms.max())))
        bars.set_yticks([])
        bars.tick_params(labelsize=6)
        bars.set_title("‖W_f‖", fontsize=7)
    if image is not None:
        fig.colorbar(image, ax=fig.axes, shrink=0.6, label="WᵀW")
    return fig


def is_probability_sweep(feature_probability: Tensor) -> bool:
    """Whether ``p`` is one value per instance (equal across features) that varies across instances."""
    p = feature_probability
    return p.ndim == 2 and p.shape[0] > 1 and bool((p == p[:, :1]).all()) and bool((p[:, 0] != p[0, 0]).any())


def dimensionality_sweep(W: Tensor, feature_probability: Tensor, threshold: float = 0.5) -> Figure:
    """ARENA's feature-geometry plot, against ``1/p`` (log scale), for instances that sweep ``p``.

    Top: dimensions per feature, ``d_hidden / ‖W‖²_F``. Bottom: the dimensionality of every feature
    of every instance, with the fractions it sticks to (1, 3/4, 2/3, 1/2, 2/5, 3/8, …) as lines.

    Args:
        W: ``(n_instances, d_hidden, n_features)``.
        feature_probability: ``(n_instances,)`` or ``(n_instances, n_features)`` (the first feature's).
        threshold: Features below this norm get dimensionality 0.
    """
    W = W.detach().cpu().float()
    p = feature_probability.detach().cpu().float()
    p = p[:, 0] if p.ndim == 2 else p  # (n_instances,)
    x = (1.0 / p).numpy()
    dims = geometry.dimensions_per_feature(W).numpy()
    D = geometry.dimensionality(W, threshold).numpy()  # (n_instances, n_features)
    fig = Figure(figsize=(6.5, 6.0), dpi=80)
    top, bottom = fig.subplots(2, 1, sharex=True)
    # Several instances may share a p (repeats, seeds): dots for each, a line through their mean.
    ps, where = np.unique(x, return_inverse=True)
    top.plot(ps, np.bincount(where, weights=dims) / np.bincount(where), lw=1.2)
    top.scatter(x, dims, s=9, zorder=3)
    top.set_ylabel("dimensions per feature\nd_hidden / ‖W‖²_F")
    top.axhline(1.0, color="0.8", lw=0.8, ls="--")
    top.axhline(0.5, color="0.8", lw=0.8, ls="--")
    for fraction in geometry.FRACTIONS:
        if fraction > 0:
            bottom.axhline(float(fraction), color="0.75", lw=0.8, ls="--", zorder=0)
            bottom.text(x.max() * 1.05, float(fraction), str(fraction), va="center", fontsize=7, color="0.4")
    jitter = np.exp(np.random.default_rng(0).normal(0.0, 0.03, size=D.shape))
    bottom.scatter((x[:, None] * jitter).ravel(), D.ravel(), s=6, alpha=0.5, c="tab:blue")
    bottom.set_ylabel("dimensionality D_f")
    bottom.set_xlabel("1 / feature probability  (= 1 / (1 - S))")
    bottom.set_xscale("log")
    bottom.set_ylim(-0.05, 1.1)
    fig.tight_layout()
    return fig


def neuron_weights(W: Tensor, instances: Sequence[int] | None = None, titles: Sequence[str] | None = None) -> Figure:
    """Neuron × feature weight heatmaps, one panel per instance (ARENA 1.3.1's neuron plots).

    Rows are neurons (hidden units), columns features; blue-red on a symmetric scale, each row
    labelled with its top-feature share (monosemantic near 1, polysemantic below).

    Args:
        W: ``(n_instances, d_hidden, n_features)``.
        instances: Which instances to draw (default: all; keep it to a handful).
        titles: One title per drawn instance (default: the instance index).
    """
    W, chosen = _select(W, instances)
    titles = titles or [f"instance {i}" for i in chosen]
    share = neurons.top_feature_share(W).numpy()  # (n, d_hidden)
    n, d_hidden, n_features = W.shape
    ncols = min(n, 4) or 1
    nrows = max(1, math.ceil(n / ncols))
    fig = Figure(figsize=(0.35 * n_features * ncols + 1.5 * ncols + 1.0, 0.35 * d_hidden * nrows + 1.0 * nrows + 0.4), dpi=80)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    limit = max(1e-6, float(W.abs().max())) if n else 1.0
    image = None
    for k, ax in enumerate(axes.flat):
        if k >= n:
            ax.axis("off")
            continue
        image = ax.imshow(W[k].numpy(), cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
        ax.set_title(titles[k], fontsize=8)
        ax.set_xlabel("feature", fontsize=7)
        ax.set_ylabel("neuron", fontsize=7)
        ax.set_xticks(range(n_features))
        ax.set_yticks(range(d_hidden), [f"{j} ({share[k, j]:.2f})" for j in range(d_hidden)])
        ax.tick_params(labelsize=6)
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.7, label="weight")
    return fig


def kgon_losses(solutions: Sequence, learned: Sequence[dict] = (), title: str = "") -> Figure:
    """Seed 000's figure: the theory loss of each k-gon against k, with learned losses overlaid.

    Args:
        solutions: Objects with ``k`` and ``loss`` (``theory.KGonSolution``), one per k.
        learned: ``{"k": directions, "loss": expected loss}`` per trained instance (drawn as dots).
        title: The figure's title.
    """
    ks = [s.k for s in solutions]
    losses = [s.loss for s in solutions]
    best = min(range(len(losses)), key=losses.__getitem__) if losses else None
    fig = Figure(figsize=(6.0, 4.0), dpi=100)
    ax = fig.add_subplot()
    ax.plot(ks, losses, marker="o", color="tab:blue", label="theory: best k-gon of each k")
    if best is not None:
        ax.scatter([ks[best]], [losses[best]], s=160, facecolors="none", edgecolors="tab:red", zorder=4,
                   label=f"theory optimum (k = {ks[best]})")
    if learned:
        rng = np.random.default_rng(0)
        x = np.array([entry["k"] for entry in learned], dtype=float) + rng.uniform(-0.12, 0.12, len(learned))
        ax.scatter(x, [entry["loss"] for entry in learned], s=14, color="tab:orange", alpha=0.7, zorder=3,
                   label=f"learned ({len(learned)} instances, at their directions)")
    ax.set_xlabel("k (directions of the polygon)")
    ax.set_ylabel("expected loss per instance")
    ax.set_xticks(ks)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def crossover(entry: dict) -> Figure:
    """Seed 004's figure: each template family's loss against a feature's relative density, theory beside.

    Args:
        entry: ``report.json``'s ``crossover``: ``relative_density``, ``families`` (``learned`` and
            ``theory`` losses per family), ``xavier_best`` and the crossing densities.
    """
    x = np.asarray(entry["relative_density"])
    fig = Figure(figsize=(6.5, 4.2), dpi=100)
    ax = fig.add_subplot()
    colors = plt.get_cmap("tab10")
    for k, (name, curves) in enumerate(entry["families"].items()):
        ax.plot(x, curves["theory"], color=colors(k), lw=1.2, ls="--", label=f"{name}: theory")
        learned = np.array([np.nan if v is None else v for v in curves["learned"]], dtype=float)
        ax.plot(x, learned, color=colors(k), marker="o", ms=4, lw=0, label=f"{name}: trained from template")
    best = [(xi, b["loss"], b["geometry"]) for xi, b in zip(x, entry.get("xavier_best", [])) if b is not None]
    if best:
        ax.scatter([b[0] for b in best], [b[1] for b in best], marker="x", color="0.3", s=30, zorder=4,
                   label="best Xavier repeat")
    for key, style, label in (("crossover_density", "-", "learned curves cross"),
                              ("theory_crossover_density", ":", "theory curves cross")):
        if entry.get(key) is not None:
            ax.axvline(entry[key], color="tab:red", ls=style, lw=1, label=f"{label} ({entry[key]:.2f})")
    ax.set_xscale("log")
    ax.set_xlabel(f"relative density of feature {entry['feature']} (p_f / p_others)")
    ax.set_ylabel("expected loss per instance")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def feature_curves(panels: dict[str, dict[int, tuple[Sequence[int], Sequence[float]]]], title: str = "") -> Figure:
    """Per-feature curves over steps, one panel per quantity, one colour per feature with a legend (seed 000, figs. 4-8).

    Args:
        panels: ``{panel title: {feature: (steps, values)}}``.
        title: The figure's title (e.g. the instance, its seed and geometry).
    """
    n_features = 1 + max((f for curves in panels.values() for f in curves), default=0)
    colors = feature_colors(n_features)
    fig = Figure(figsize=(4.2 * max(1, len(panels)) + 1.2, 3.4), dpi=90)
    axes = fig.subplots(1, max(1, len(panels)), squeeze=False)[0]
    for ax, (name, curves) in zip(axes, panels.items()):
        for feature, (steps, values) in curves.items():
            ax.plot(steps, values, color=colors[feature], lw=1.3, label=f"feature {feature}")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        if curves and min(v for _, values in curves.values() for v in values) > 0:
            ax.set_yscale("log")
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="center right", fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1 - 1.1 / fig.get_figwidth(), 0.95))
    return fig


def feature_bars(
    W: Tensor, instances: Sequence[int] | None = None, titles: Sequence[str] | None = None, threshold: float = 0.0,
) -> Figure:
    """‖W_f‖ per feature, one row per instance, coloured by how much the feature shares its dimension.

    The colour is the interference ``Σ_{j≠f} (Ŵ_f·W_j)²`` (dark: a dimension of its own; bright:
    superposition), as the Anthropic paper and seed 003 draw it. A feature at or below ``threshold``
    is grey: it is not represented, and its direction alone (``Ŵ_f``) says nothing of sharing.

    Args:
        W: ``(n_instances, d_hidden, n_features)``.
        instances: Which instances (default: all).
        titles: One label per row.
        threshold: Norm at or below which a feature counts as not represented (0: colour every feature).
    """
    W, chosen = _select(W, instances)
    titles = titles or [f"instance {i}" for i in chosen]
    norms = geometry.feature_norms(W).numpy()  # (n, n_features)
    shared = geometry.interference(W).numpy()  # (n, n_features)
    represented = norms > threshold
    n, n_features = norms.shape
    fig = Figure(figsize=(1.2 + 0.3 * n_features + 2.0, 0.45 * n + 1.2), dpi=90)
    ax = fig.add_subplot()
    cmap = plt.get_cmap("viridis")
    limit = max(1.0, float(shared[represented].max())) if represented.any() else 1.0
    for row in range(n):
        bottoms = row - 0.4 + np.arange(n_features) * (0.8 / n_features)  # one thin bar per feature
        colors = np.where(represented[row][:, None], cmap(shared[row] / limit), matplotlib.colors.to_rgba("0.75"))
        ax.barh(bottoms, norms[row], height=0.8 / n_features, align="edge", color=colors)
    ax.set_yticks(range(n), titles, fontsize=7)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_xlabel("‖W_f‖ (bars top to bottom: features 0, 1, …)", fontsize=8)
    mappable = matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(0, limit), cmap=cmap)
    fig.colorbar(mappable, ax=ax, label=r"interference $\sum_{j \neq f}\,(\hat{W}_f \cdot W_j)^2$")
    fig.tight_layout()
    return fig


def loss_by_swept(x: Sequence[float], loss: Sequence[float], labels: Sequence[str], xlabel: str) -> Figure:
    """Each instance's loss against the swept quantity, coloured by its geometry (one legend entry each)."""
    fig = Figure(figsize=(6.0, 4.0), dpi=90)
    ax = fig.add_subplot()
    names = sorted(set(labels), key=lambda name: [i for i, label in enumerate(labels) if label == name][0])
    colors = plt.get_cmap("tab10")
    for k, name in enumerate(names):
        points = [(xi, li) for xi, li, label in zip(x, loss, labels) if label == name]
        ax.scatter([p[0] for p in points], [p[1] for p in points], color=colors(k % 10), s=22, label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("loss per instance")
    ax.legend(fontsize=8, title="geometry", title_fontsize=8)
    fig.tight_layout()
    return fig


#: Phase colours: the paper's grey (not represented), blue (dedicated) and red (superposition).
PHASE_COLORS = {"not_represented": "#d9d9d9", "dedicated": "#4c72b0", "superposition": "#dd5f4f"}


def _log_edges(values: np.ndarray) -> np.ndarray:
    """Cell edges around log-spaced centres: geometric midpoints, and half a step beyond each end."""
    if len(values) == 1:
        return np.array([values[0] / 1.5, values[0] * 1.5])
    logs = np.log(values)
    mids = (logs[1:] + logs[:-1]) / 2
    return np.exp(np.concatenate([[2 * logs[0] - mids[0]], mids, [2 * logs[-1] - mids[-1]]]))


def phase_map(grid: dict, title: str = "") -> Figure:
    """The paper's phase diagram: the grid coloured by the best fit's phase, theory's boundary drawn over it.

    Args:
        grid: ``report.json``'s ``grid``: ``importance`` and ``probability`` (``values``, ``feature``),
            ``phase`` (rows: importance, columns: probability) and optionally ``theory_phase``.
        title: The figure's title.
    """
    names = list(PHASE_COLORS)
    importance = np.asarray(grid["importance"]["values"], dtype=float)
    probability = np.asarray(grid["probability"]["values"], dtype=float)
    x_edges, y_edges = _log_edges(probability), _log_edges(importance)
    codes = np.array([[names.index(phase) for phase in row] for row in grid["phase"]], dtype=float)  # (n_importance, n_probability)
    fig = Figure(figsize=(6.0, 4.8), dpi=100)
    ax = fig.add_subplot()
    ax.pcolormesh(x_edges, y_edges, codes, cmap=ListedColormap(list(PHASE_COLORS.values())), vmin=-0.5, vmax=2.5,
                  edgecolors="white", linewidth=0.3)
    handles = [Patch(color=color, label=name.replace("_", " ")) for name, color in PHASE_COLORS.items()]
    theory = grid.get("theory_phase")
    if theory is not None:
        # Theory's boundary: the cell edges between neighbours whose predicted phases differ.
        segments = []
        for r in range(len(importance)):
            for c in range(len(probability)):
                if c + 1 < len(probability) and theory[r][c] != theory[r][c + 1]:
                    segments.append([(x_edges[c + 1], y_edges[r]), (x_edges[c + 1], y_edges[r + 1])])
                if r + 1 < len(importance) and theory[r][c] != theory[r + 1][c]:
                    segments.append([(x_edges[c], y_edges[r + 1]), (x_edges[c + 1], y_edges[r + 1])])
        ax.add_collection(LineCollection(segments, colors="black", linewidths=2.0))
        handles.append(plt.Line2D([], [], color="black", lw=2.0, label="theory's boundary"))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(x_edges.max(), x_edges.min())  # dense on the left, sparse on the right, as the paper draws it
    ax.set_ylim(y_edges.min(), y_edges.max())
    feature = grid["importance"]["feature"]
    which = "every feature's" if grid["probability"]["feature"] is None else f"feature {grid['probability']['feature']}'s"
    ax.set_xlabel(f"{which} probability p (log)")
    ax.set_ylabel(f"feature {feature}'s importance (log)")
    ax.set_title(title or f"phase of feature {feature} (best fit per point)", fontsize=10)
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig
