"""The report page's SAE section: an SAE run's figures, from its ``report.json`` alone (no Lightning).

A run's page draws these when its report has ``sae`` (:class:`~lit_superposition.callbacks.SAEReport`):

- ``sae_directions.png`` (2-D sources): each SAE's decoder directions over its source's true feature directions;
- ``sae_frontier.png``: L0 against explained variance, one point per SAE, over the sparsity settings;
- ``sae_recovery.png``: features recovered, MMCS, split features, mixing and dead latents against the sparsity;
- ``sae_resampling.png`` (when latents were resampled): how many, and when.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm, Normalize  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from lit_superposition.analysis.run_files import Run  # noqa: E402

if TYPE_CHECKING:
    from lit_superposition.analysis.report_page import PageFigure

#: SAEs drawn in the directions figure, at most: the rows are (source instance, seed) pairs, the columns settings.
MAX_ROWS, MAX_COLUMNS = 8, 8
MARKERS = "os^Dv<>p"


def _sparsity(report: dict[str, Any]) -> tuple[str, str]:
    """The sparsity key of the rows and its axis label."""
    name = report["sae"]["sparsity_name"]
    return name, ("k (latents kept per input)" if name == "k" else "sparsity coefficient λ")


def _by_size(rows: list[dict[str, Any]], name: str) -> dict[int, dict[float, list[dict[str, Any]]]]:
    """``{d_latent: {sparsity: [rows]}}``, both sorted."""
    out: dict[int, dict[float, list[dict[str, Any]]]] = {}
    for row in sorted(rows, key=lambda r: (r["d_latent"], r[name])):
        out.setdefault(row["d_latent"], {}).setdefault(row[name], []).append(row)
    return out


def _values(group: list[dict[str, Any]], key: str) -> np.ndarray:
    return np.array([np.nan if r.get(key) is None else r[key] for r in group], dtype=float)


def directions(report: dict[str, Any]) -> Figure:
    """Per SAE (rows: source instance and seed; columns: settings), its decoder rows over the true directions.

    True directions are black lines from the origin (their length their norm); each live latent is a
    coloured unit arrow, a dead one a dashed grey line; the unit circle is dotted.
    """
    rows, sae = report["instances"], report["sae"]
    name, _ = _sparsity(report)
    settings = list(dict.fromkeys(row["setting_label"] for row in sorted(rows, key=lambda r: (r["d_latent"], r[name]))))[:MAX_COLUMNS]
    pairs = list(dict.fromkeys((row["source_instance"], row["init_seed"]) for row in rows))[:MAX_ROWS]
    cell = {(row["source_instance"], row["init_seed"], row["setting_label"]): row for row in rows}
    fig = Figure(figsize=(1.7 * len(settings) + 0.4, 1.8 * len(pairs) + 0.6), dpi=90)
    axes = fig.subplots(len(pairs), len(settings), squeeze=False)
    features = {s: np.asarray(f) for s, f in zip(sae["source_instances"], sae["features"])}  # (2, n_truth) each
    circle = np.linspace(0, 2 * math.pi, 100)
    for r, (source, seed) in enumerate(pairs):
        for c, label in enumerate(settings):
            ax = axes[r, c]
            ax.set_aspect("equal")
            ax.set_xticks([]), ax.set_yticks([])
            ax.plot(np.cos(circle), np.sin(circle), ":", color="#bbb", lw=0.6)
            row = cell.get((source, seed, label))
            if row is None:
                ax.set_axis_off()
                continue
            W = features[source]
            for f in range(W.shape[1]):
                ax.plot([0, W[0, f]], [0, W[1, f]], color="black", lw=2.2, alpha=0.55)
            dead = set(row["dead"])
            for latent, (x, y) in enumerate(row["decoder"]):
                if latent in dead:
                    ax.plot([0, x], [0, y], "--", color="#999", lw=0.9)
                else:
                    ax.annotate("", (x, y), (0, 0), arrowprops={"arrowstyle": "->", "color": f"C{latent % 10}", "lw": 1.4})
            limit = max(1.15, float(np.abs(W).max()) * 1.1)
            ax.set_xlim(-limit, limit), ax.set_ylim(-limit, limit)
            ax.set_title(f"{label}\nsrc {source} seed {seed}: {row['n_recovered']}/{row['n_represented']}", fontsize=7)
    fig.suptitle("decoder directions (arrows; dashed: dead) over the true feature directions (black)", fontsize=9)
    fig.tight_layout()
    return fig


def frontier(report: dict[str, Any]) -> Figure:
    """L0 against explained variance: a point per SAE coloured by its sparsity, a line through each size's means."""
    rows = report["instances"]
    name, label = _sparsity(report)
    values = np.array([row[name] for row in rows], dtype=float)
    norm = LogNorm(values.min(), values.max()) if name != "k" and values.min() > 0 and values.max() > values.min() else Normalize(values.min(), values.max())
    fig = Figure(figsize=(6.4, 4.4), dpi=90)
    ax = fig.add_subplot()
    for k, (size, by_sparsity) in enumerate(_by_size(rows, name).items()):
        marker = MARKERS[k % len(MARKERS)]
        group = [r for g in by_sparsity.values() for r in g]
        points = ax.scatter(_values(group, "l0"), _values(group, "explained_variance"), c=[r[name] for r in group],
                            cmap="viridis", norm=norm, marker=marker, s=18, alpha=0.7, label=f"d_latent={size}")
        means = [(np.nanmean(_values(g, "l0")), np.nanmean(_values(g, "explained_variance"))) for g in by_sparsity.values()]
        ax.plot(*zip(*means), "-", color="#444", lw=1, marker=marker, markersize=4)
    true_l0 = float(np.mean(report["sae"]["represented_l0"]))
    ax.axvline(true_l0, ls="--", color="crimson", lw=1)
    ax.text(true_l0, 0.97, " true L0", color="crimson", fontsize=8, va="top", transform=ax.get_xaxis_transform())
    ax.set_xscale("symlog", linthresh=0.01, linscale=0.3)  # L0 can be 0: every latent dead
    ax.set_xlim(left=0)
    ax.set_xlabel("L0 (active latents per input)")
    ax.set_ylabel("explained variance")
    fig.colorbar(points, ax=ax, label=label)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("sparsity against reconstruction: every SAE, a line through each size's means", fontsize=9)
    fig.tight_layout()
    return fig


def recovery(report: dict[str, Any]) -> Figure:
    """Against the sparsity, per dictionary size (mean, min-max band over the SAEs of a setting): recovery, coverage, dead latents."""
    rows = report["instances"]
    name, label = _sparsity(report)
    threshold = report["sae"]["recovered_above"]
    panels = [
        (f"features recovered (matched cos ≥ {threshold:g}), fraction", lambda r: r["n_recovered"] / max(r["n_represented"], 1)),
        ("MMCS (live latents)", lambda r: r["mmcs"]),
        ("L0 / true L0 (represented features)", lambda r: r["l0"] / r["represented_l0"] if r["represented_l0"] else None),
        (f"features split (≥ 2 latents at cos ≥ {threshold:g})", lambda r: r["n_split"]),
        ("latents mixing features (at no feature)", lambda r: r["n_mixed"]),
        ("dead latents, fraction", lambda r: r["dead_latents"] / r["d_latent"]),
    ]
    fig = Figure(figsize=(11.5, 6.6), dpi=90)
    axes = fig.subplots(2, 3).flatten()
    for ax, (title, value) in zip(axes, panels):
        for k, (size, by_sparsity) in enumerate(_by_size(rows, name).items()):
            x = np.array(list(by_sparsity), dtype=float)
            ys = [np.array([np.nan if value(r) is None else value(r) for r in g], dtype=float) for g in by_sparsity.values()]
            mean = np.array([np.nanmean(y) for y in ys])
            ax.plot(x, mean, marker=MARKERS[k % len(MARKERS)], color=f"C{k}", label=f"d_latent={size}")
            ax.fill_between(x, [np.nanmin(y) for y in ys], [np.nanmax(y) for y in ys], color=f"C{k}", alpha=0.15)
        if name != "k":
            ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_title(title, fontsize=9)
    axes[0].legend(fontsize=8)
    fig.suptitle("against the sparsity: mean over each setting's SAEs (source instances × seeds), band min-max", fontsize=9)
    fig.tight_layout()
    return fig


def resampling(report: dict[str, Any]) -> Figure:
    """Latents resampled at each resampling step, all SAEs together, and how many SAEs had any."""
    events = report["sae"]["resampling"]["events"]
    steps = [event["step"] for event in events]
    total = [sum(event["n_resampled"]) for event in events]
    saes = [sum(n > 0 for n in event["n_resampled"]) for event in events]
    fig = Figure(figsize=(6.0, 3.2), dpi=90)
    ax = fig.add_subplot()
    width = 0.35 * (min(np.diff(steps)) if len(steps) > 1 else max(steps[0], 1))
    ax.bar(np.array(steps) - width / 2, total, width, label="latents resampled")
    ax.bar(np.array(steps) + width / 2, saes, width, label="SAEs with any")
    ax.set_xlabel("step")
    ax.legend(fontsize=8)
    ax.set_title(f"dead-latent resampling (dead: no firing for {report['sae']['resampling']['window']} steps)", fontsize=9)
    fig.tight_layout()
    return fig


def sae_figures(run: Run, out: Path) -> list[PageFigure]:
    """The SAE section of the page (nothing for a run without ``sae`` in its report)."""
    from lit_superposition.analysis.report_page import figure_saver  # the page imports this section

    report = run.report
    if "sae" not in report:
        return []
    figures: list[PageFigure] = []
    save = figure_saver(out, figures)
    _, label = _sparsity(report)
    threshold = report["sae"]["recovered_above"]
    if report["d_hidden"] == 2 and "features" in report["sae"] and all("decoder" in row for row in report["instances"]):
        save("sae_directions.png", directions(report), "SAE decoder directions over the true features",
             f"Rows: source instance and SAE seed (the first {MAX_ROWS}); columns: settings (the first {MAX_COLUMNS}). "
             f"Black: the source's feature directions W_f; arrows: the live latents' decoder rows; dashed: dead latents. "
             f"Titled with the features recovered at a matched cosine of {threshold:g} or more.")
    save("sae_frontier.png", frontier(report), "L0 against explained variance",
         f"Every SAE, coloured by its {label}; the lines join each dictionary size's means per setting. "
         "Dashed red: the source's true L0 (Σ p over its represented features), the L0 of a perfect dictionary.")
    save("sae_recovery.png", recovery(report), f"Recovery against the {label}",
         "Per dictionary size, the mean over each setting's SAEs and its min-max band: features recovered, MMCS, "
         "features split over several latents, live latents at no single feature, dead latents.")
    if report["sae"].get("resampling", {}).get("events"):
        save("sae_resampling.png", resampling(report), "Dead-latent resampling",
             "Latents resampled at each resampling step (all SAEs together), and how many SAEs had any.")
    return figures
