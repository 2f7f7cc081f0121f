"""One page per run: figures as PNG files beside a self-contained ``index.html``; no Lightning.

The page reads the run's files only (:class:`~lit_superposition.analysis.run_files.Run`), so it can
be made long after training, on another machine, and opened offline.
"""

from __future__ import annotations

import html
import math
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image
from torch.utils.tensorboard import SummaryWriter

from lit_superposition.analysis import plotting, theory
from lit_superposition.analysis.files import atomic_write_text
from lit_superposition.analysis.finite_data_page import finite_data_figures
from lit_superposition.analysis.llc_page import llc_figures
from lit_superposition.analysis.report_schema import PATCH_ROLES, Report, instance_roles
from lit_superposition.analysis.run_files import Run
from lit_superposition.analysis.sae_page import sae_figures

#: Per-feature quantities drawn for the chosen instances: panel title by tag prefix.
CURVES = {"grad_norm_W": "gradient norm ‖∂L/∂W_f‖", "feature_loss": "loss per feature", "feature_norm": "feature norm ‖W_f‖"}
MAX_POLYGONS = 64
MAX_FORMATION_STEPS = 6
MAX_FORMATION_TRIPLES = 16  # a figure each: hexagon_patch_auto's default is 8 triples


@dataclass
class PageFigure:
    """A figure of the page: its file name, heading and what it shows."""

    file: str
    heading: str
    caption: str


#: Rows of the best-repeat table: a phase diagram has a setting per grid point, and its map shows them all.
MAX_BEST_ROWS = 16


def chosen_instances(report: dict[str, Any], recorded: Collection[int] | None = None) -> list[tuple[int, str]]:
    """The instances worth a closer look, with why: each patch triple's members, else the best and the worst.

    Args:
        report: ``report.json``.
        recorded: Choose the best and the worst among these only (the instances with per-feature
            curves); None: among all.
    """
    rows = report["instances"]
    if report.get("triples"):
        chosen = []
        for k, triple in enumerate(report["triples"]):
            for role, index in zip(PATCH_ROLES, triple["instances"]):
                chosen.append((index, f"triple {k} {role}"))
        return chosen
    candidates = [row for row in rows if recorded is None or row["index"] in recorded]
    if not candidates:
        return []
    among = "" if len(candidates) == len(rows) else f" of the {len(candidates)} instances with curves"
    by_loss = sorted(candidates, key=lambda row: row["loss"])
    chosen = [(by_loss[0]["index"], f"lowest loss{among}")]
    if len(by_loss) > 1:
        chosen.append((by_loss[-1]["index"], f"highest loss{among}"))
    return chosen


def _span(indices: Collection[int]) -> str:
    """``0–7`` for a run of consecutive instances, else the list: ``0, 2, 5``."""
    ordered = sorted(indices)
    if len(ordered) > 2 and ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"{ordered[0]}–{ordered[-1]}"
    return ", ".join(map(str, ordered))


def _geometry(row: dict[str, Any]) -> str:
    """An instance's geometry as text: the polygon's name, else its features' dimensionality fractions."""
    return row["geometry"] if isinstance(row["geometry"], str) else " ".join(map(str, row["geometry"]))


def _label(row: dict[str, Any], roles: dict[int, str] | None = None, swept: bool = False) -> str:
    """``3 (patched, seed 19): hexagon``; with ``swept``, the instance's ``p`` too."""
    geometry = row["geometry"] if isinstance(row["geometry"], str) else f"{len(row['represented'])} represented"
    role = f"{roles[row['index']]}, " if roles and row["index"] in roles else ""
    p = row.get("feature_probability") or [None]
    probability = f"p = {p[0]:.3g}{'…' if len(set(p)) > 1 else ''}, " if swept and p[0] is not None else ""
    return f"{row['index']} ({role}{probability}seed {row['init_seed']}): {geometry}"


def _roles(report: Report) -> dict[int, str]:
    """``base``, ``patched`` or ``donor`` by instance, in a patch run."""
    return instance_roles(report)


def _swept(report: dict[str, Any]) -> tuple[list[float], str] | None:
    """The quantity the instances sweep (their first feature's probability), if they sweep one."""
    ps = [row.get("feature_probability") for row in report["instances"]]
    if any(p is None for p in ps):
        return None
    first = [p[0] for p in ps]
    if len(set(first)) > 1:
        return first, "feature 0's probability p"
    return None


def figure_saver(out: Path, figures: list[PageFigure]) -> Callable[[str, Figure, str, str], None]:
    """``save(file, figure, heading, caption)``: write the figure into ``out`` and list it on the page."""

    def save(name: str, figure: Figure, heading: str, caption: str) -> None:
        figure.savefig(out / name)
        plt.close(figure)
        figures.append(PageFigure(name, heading, caption))

    return save


def toy_model_figures(run: Run, out: Path) -> list[PageFigure]:
    """The toy model's figures: geometry, per-feature curves, bars, formation, sweeps, theory, phases."""
    report, figures = run.report, []
    rows = report["instances"]
    roles = _roles(report)
    W_last = run.snapshots["W"][-1] if run.snapshots is not None else None  # (n_instances, d_hidden, n_features)

    save = figure_saver(out, figures)
    swept = _swept(report)
    if W_last is not None and report["d_hidden"] == 2:
        shown = list(range(min(len(rows), MAX_POLYGONS)))
        titles = [f"{_label(rows[i], roles, swept is not None)}\nloss {rows[i]['loss']:.4f}" for i in shown]
        # Two patch triples, or up to 8 instances, a row: the figure fills the page's width.
        ncols = min(len(shown), 6 if roles else max(8, math.ceil(math.sqrt(len(shown)))))
        save("polygons.png", plotting.polygon_grid(W_last, shown, titles, threshold=report["threshold"], ncols=ncols, scale=1.25),
             "Geometry of every instance", "The learned 2-D solutions, canonicalized (first represented feature on +x), "
             "each feature in its colour, titled with instance, " + ("p, " if swept else "") + "init seed, geometry and loss.")
    if W_last is not None and report["d_hidden"] > 2:
        shown = [index for index, _ in chosen_instances(report)][:8]
        save("wtw.png", plotting.wtw_grid(W_last, shown, [_label(rows[i]) for i in shown]), "WᵀW",
             "WᵀW of the chosen instances: blue negative, red positive interference; bars: feature norms.")
    recorded = run.curve_instances(tuple(CURVES))
    missing = sorted({index for index, _ in chosen_instances(report)} - recorded) if recorded else []
    without = "" if not missing else (
        f" No curves of instance{'s' * (len(missing) > 1)} {_span(missing)}: the instruments recorded instances "
        f"{_span(recorded)} (by default the first 8, or every member of a patch triple; choose others with their "
        "instances setting, e.g. --instruments.feature_losses.init_args.instances '[8, 9]')."
    )
    for index, why in chosen_instances(report, recorded):
        panels = {title: run.curves(tag, index) for tag, title in CURVES.items()}
        panels = {title: curves for title, curves in panels.items() if curves}
        if panels:
            save(f"curves_{index:03d}.png", plotting.feature_curves(panels, f"instance {_label(rows[index], roles)} ({why})"),
                 f"Per-feature curves: instance {index} ({why})",
                 f"Gradient norm, loss and norm of each feature over training, one colour per feature.{without}")
    if W_last is not None:
        shown = list(range(min(len(rows), 32)))
        save("feature_bars.png", plotting.feature_bars(W_last, shown, [_label(rows[i], roles, swept is not None) for i in shown],
                                                       threshold=report["threshold"]),
             "Feature norms and superposition", "‖W_f‖ of every feature (bars top to bottom: features 0, 1, …), coloured by "
             "its interference with the others, Σ_{j≠f} (Ŵ_f·W_j)²: dark, a dimension of its own; bright, a dimension shared "
             f"with others (superposition); grey, not represented (‖W_f‖ ≤ {report['threshold']:g}).")
    if run.snapshots is not None and report["d_hidden"] == 2:
        steps = run.snapshots["step"].tolist()
        picks = sorted({steps[round(k * (len(steps) - 1) / (MAX_FORMATION_STEPS - 1))] for k in range(MAX_FORMATION_STEPS)})
        at = torch.tensor([steps.index(s) for s in picks])
        if report.get("triples"):
            # One figure per triple, its base, patched base and donor a row each: where the patch changes the path.
            for k, triple in enumerate(report["triples"][:MAX_FORMATION_TRIPLES]):
                members = torch.tensor(triple["instances"])
                W = run.snapshots["W"][at][:, members].transpose(0, 1).flatten(0, 1)  # (3 * n_steps, 2, n_features)
                titles = [f"{role} (seed {rows[i]['init_seed']}), step {s}"
                          for role, i in zip(PATCH_ROLES, triple["instances"]) for s in picks]
                save(f"formation_triple_{k}.png",
                     plotting.polygon_grid(W, titles=titles, ncols=len(picks), threshold=report["threshold"]),
                     f"How the geometry formed: triple {k} (base seed {triple['base_seed']}, "
                     f"features {', '.join(map(str, triple['features']))} patched)", "Base, patched base and donor (rows) at snapshot steps from the initialization to the end."
                     + (f" The first {MAX_FORMATION_TRIPLES} of {len(report['triples'])} triples have one." if len(report["triples"]) > MAX_FORMATION_TRIPLES else ""))
        else:
            for index, why in chosen_instances(report):
                W = run.snapshots["W"][at, index]  # (n_steps, 2, n_features)
                save(f"formation_{index:03d}.png",
                     plotting.polygon_grid(W, titles=[f"step {s}" for s in picks], ncols=len(picks), threshold=report["threshold"]),
                     f"How the geometry formed: instance {index} ({why})", "The solution at snapshot steps from the initialization to the end.")
    if swept is not None:
        x, name = swept
        labels = [row["geometry"] if isinstance(row["geometry"], str) else f"{row['n_directions']} directions" for row in rows]
        save("loss_by_swept.png", plotting.loss_by_swept(x, [row["loss"] for row in rows], labels, name),
             f"Loss against {name}", "Each instance's loss, coloured by the geometry it learned.")
        p = torch.tensor([row["feature_probability"] for row in rows])
        one_importance = len({tuple(row.get("importance", ())) for row in rows}) == 1
        # Against 1/p alone: a phase diagram (importance varies too) has its own map.
        if W_last is not None and one_importance and report.get("grid") is None and plotting.is_probability_sweep(p):
            save("dimensionality_sweep.png", plotting.dimensionality_sweep(W_last, p, report["threshold"]),
                 "Dimensions per feature", "ARENA's feature-geometry plot against 1/p: dimensions per feature (dots: instances; "
                 "line: their mean at each p) and each feature's dimensionality.")
    with_theory = [row for row in rows if "kgon_loss" in row]
    if with_theory:
        # The k-gon family of the first uniform setting, with the instances trained at that setting.
        p, importance = with_theory[0]["feature_probability"][0], with_theory[0].get("importance", [1.0])[0]
        solutions = theory.kgon_solutions(report["n_features"], p, importance)
        learned = [{"k": row["n_directions"], "loss": row["expected_loss"]} for row in with_theory
                   if row["feature_probability"][0] == p and row.get("importance", [1.0])[0] == importance]
        save("kgon_losses.png", plotting.kgon_losses(solutions, learned, f"p = {p:g}, importance {importance:g}"), "Theory beside practice",
             "The expected loss of the optimal k-gon for each k (line) and of every learned instance (dots, at its number of directions).")
    grid = report.get("grid")
    if grid is not None:
        save("phase_map.png", plotting.phase_map(grid), "Phase diagram",
             f"Feature {grid['feature']}'s phase at every point of the grid (the best of each point's repeats): grey not represented, "
             "blue dedicated, red superposition; black lines: theory's boundary, where the cheapest candidate solution changes phase.")
    crossover = report.get("crossover")
    if crossover is not None:
        save("crossover.png", plotting.crossover(crossover), "The loss-curve crossover",
             "Each template family's loss against the swept feature's relative density, theory dashed, best Xavier fits as crosses.")
    return figures


#: The page's sections, in order: each draws the figures that fit the run (none where it does not
#: apply) and says what each shows. An experiment adds its own section here.
SECTIONS: tuple[Callable[[Run, Path], list[PageFigure]], ...] = (toy_model_figures, finite_data_figures, llc_figures, sae_figures)


def build_figures(run: Run, out: Path) -> list[PageFigure]:
    """Draw every figure that fits the run into ``out`` and say what each shows."""
    return [figure for section in SECTIONS for figure in section(run, out)]


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def summary(run: Run) -> str:
    """The page's opening: config, steps, geometry counts, flip rate, best repeat per setting."""
    report = run.report
    rows = report["instances"]
    parts = [f"<p><b>config</b> {html.escape(run.name)} · <b>steps</b> {report['step']} · <b>instances</b> "
             f"{report['n_instances']} · <b>model</b> {html.escape(str(report.get('variant', 'ReLUOutputModel')))} · "
             f"{report['n_features']} features in {report['d_hidden']} hidden dimensions</p>"]
    counts = Counter(row["geometry"] if isinstance(row["geometry"], str) else f"{len(row['represented'])} represented" for row in rows)
    parts.append("<h3>Geometries</h3>" + _table(["geometry", "instances"], [[g, n] for g, n in counts.most_common()]))
    if "flip_rate" in report:
        parts.append(f"<h3>Weight patching</h3><p>flip rate <b>{report['flip_rate']:.2f}</b> over {len(report['triples'])} triples</p>")
        parts.append(_table(["base seed", "donor", "features", "base", "patched", "donor geometry", "flipped"], [
            [t["base_seed"], t["donor_seed"] if t["donor_seed"] is not None else t["donor_file"], ", ".join(map(str, t["features"])),
             t["base_geometry"], t["patched_geometry"], t["donor_geometry"], "yes" if t["flipped"] else "no"]
            for t in report["triples"]]))
    if report.get("repeats", 1) > 1:
        # A phase diagram's own choice where there is one: it ranks repeats by the exact loss of every variant.
        grid = report.get("grid")
        chosen = {i for line in grid["best_instance"] for i in line} if grid else {row["index"] for row in rows if row.get("best_repeat")}
        best = [row for row in rows if row["index"] in chosen]
        more = f" (the first {MAX_BEST_ROWS} of {len(best)}; all in report.json)" if len(best) > MAX_BEST_ROWS else ""
        parts.append(f"<h3>Best repeat per setting{more}</h3>" + _table(
            ["setting", "instance", "init seed", "loss", "geometry"],
            [[row["setting"], row["index"], row["init_seed"], f"{row['loss']:.5f}", _geometry(row)] for row in best[:MAX_BEST_ROWS]]))
    parts.append(f"<p class='note'>loss: {html.escape(report.get('loss_definition', ''))}; the progress bar's "
                 "train/loss is the sum over instances.</p>")
    return "\n".join(parts)


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0; }} td, th {{ border: 1px solid #ccc; padding: 2px 8px; text-align: right; }}
img {{ max-width: 100%; border: 1px solid #eee; }} .stopped {{ color: #a40; }} .note {{ color: #666; font-size: 90%; }} figure {{ margin: 1.5em 0; }}
</style></head><body>
<h1>{title}</h1>
{summary}
<h2>Figures</h2>
{figures}
<p class="note">Made by lit-superposition report from {directory}.</p>
</body></html>
"""


def write_report(run: Run, out: Path, stopped_at: int | None = None) -> Path:
    """Draw the figures into ``out`` and write ``out/index.html``; returns its path.

    Args:
        run: The run's files.
        out: The page's folder; figures of an earlier page that this one does not draw are removed.
        stopped_at: The step a run stopped at before its end (Ctrl-C, SIGTERM): the page says so.
    """
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.png"):
        stale.unlink()
    figures = build_figures(run, out)
    body = "\n".join(
        f"<figure><h3>{html.escape(f.heading)}</h3><img src='{html.escape(f.file)}' alt='{html.escape(f.heading)}'>"
        f"<figcaption class='note'>{html.escape(f.caption)}</figcaption></figure>"
        for f in figures
    )
    stopped = (f"<p class='stopped'><b>Stopped at step {stopped_at}</b> before its end (Ctrl-C or SIGTERM): resume it with "
               f"--ckpt_path {html.escape(str(run.directory / 'checkpoints' / 'last.ckpt'))}</p>" if stopped_at is not None else "")
    page = PAGE.format(title=html.escape(f"{run.name}: {run.directory.name}"), summary=stopped + summary(run), figures=body,
                       directory=html.escape(str(run.directory)))
    index = out / "index.html"
    atomic_write_text(page, index)  # a browser open on the page never reads half of it
    return index


def log_curve_images(run: Run, out: Path) -> list[str]:
    """Add the page's per-feature curve figures to the run's TensorBoard events as images.

    TensorBoard draws every line of a run in one colour; these images show the same curves one
    colour per feature, under ``curves/instance_NNN`` in the Images tab, at the run's last step.

    Returns:
        The tags written.
    """
    tags = []
    paths = sorted(out.glob("curves_*.png"))
    if not paths:
        return tags  # no events file for nothing
    with SummaryWriter(log_dir=str(run.directory)) as writer:
        for path in paths:
            tag = f"curves/instance_{path.stem.removeprefix('curves_')}"
            image = np.asarray(Image.open(path).convert("RGB"))  # (height, width, 3)
            writer.add_image(tag, image, global_step=run.report["step"], dataformats="HWC")
            tags.append(tag)
    return tags
