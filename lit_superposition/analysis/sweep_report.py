"""A sweep's results: headline numbers per point from each run's ``report.json``, a table and plots against the axes; no Lightning.

A *point* is one combination of the sweep's axis values. A run trains one point, or several packed
as consecutive ranges of its instances; every number here is per point, over that point's instances.

Example::

    sweep = load_sweep("sweeps/optimizer_study")
    rows = point_rows(sweep)                       # one per point: run, state, axes, results
    write_sweep_report(sweep, Path("sweeps/optimizer_study/report"))
"""

from __future__ import annotations

import html
import json
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

import matplotlib
import yaml

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from lit_superposition.analysis.files import atomic_write_text  # noqa: E402
from lit_superposition.analysis.report_schema import SWEEP_FILE  # noqa: E402
from lit_superposition.errors import ConfigError  # noqa: E402

#: Report fields that describe the run, not a result of it.
STRUCTURE = ("n_instances", "n_features", "d_hidden", "step", "threshold", "repeats")
#: Per-instance fields that are labels, not measurements.
LABELS = ("index", "init_seed", "setting", "repeat")
MAX_PANELS = 8


def geometry_label(row: dict[str, Any]) -> str:
    """An instance's geometry: the polygon in 2-D, else how many features it represents."""
    return row["geometry"] if isinstance(row.get("geometry"), str) else f"{len(row.get('represented', []))} represented"


def short_value(value: Any, limit: int = 40) -> str:
    """A value as a label shows it: class paths by their class name, long values cut."""
    if isinstance(value, dict) and "class_path" in value:
        args = value.get("init_args") or {}
        inner = ", ".join(f"{k}={short_value(v, 12)}" for k, v in args.items())
        text = str(value["class_path"]).rsplit(".", 1)[-1] + (f"({inner})" if inner else "")
    elif isinstance(value, str):
        text = value.rsplit(".", 1)[-1] if re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*\.[A-Z]\w*", value) else value
    elif isinstance(value, float):
        text = f"{value:g}"
    else:
        text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def short_key(key: str) -> str:
    """``optimizer.init_args.lr`` -> ``optimizer.lr``, as the command line spells it."""
    return key.replace(".init_args.", ".")


def point_label(point: dict[str, Any]) -> str:
    """``optimizer=SGD, optimizer.lr=0.01``."""
    return ", ".join(f"{short_key(k)}={short_value(v)}" for k, v in point.items())


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def headline(report: dict[str, Any], start: int | None = None, stop: int | None = None) -> dict[str, Any]:
    """The headline results of instances ``start:stop`` of a run (default: all).

    Returns:
        ``instances``; ``loss`` (mean) and ``loss_min``; ``geometries`` (counts) and ``fraction_<geometry>``;
        ``represented`` (mean count) and ``dimensions_per_feature`` (mean ``d_hidden / ‖W‖²_F``) where the
        report has feature norms; the mean of every other numeric per-instance field; and the report's
        own numeric results (e.g. ``flip_rate``).
    """
    rows = report["instances"][start:stop]
    if not rows:
        return {"instances": 0}
    results: dict[str, Any] = {"instances": len(rows)}
    losses = [row["loss"] for row in rows if _number(row.get("loss"))]
    if losses:
        results["loss"] = sum(losses) / len(losses)
        results["loss_min"] = min(losses)
    counts = Counter(geometry_label(row) for row in rows)
    results["geometries"] = dict(counts.most_common())
    for label, count in counts.items():
        results[f"fraction_{label.replace(' ', '_')}"] = count / len(rows)
    if all("represented" in row for row in rows):
        results["represented"] = sum(len(row["represented"]) for row in rows) / len(rows)
    if all("feature_norms" in row for row in rows) and "d_hidden" in report:
        frobenius = [sum(n * n for n in row["feature_norms"]) for row in rows]
        if all(f > 0 for f in frobenius):
            results["dimensions_per_feature"] = sum(report["d_hidden"] / f for f in frobenius) / len(rows)
    for key in rows[0]:
        if key in LABELS or key in results or not all(_number(row.get(key)) for row in rows):
            continue
        results[key] = sum(row[key] for row in rows) / len(rows)
    for key, value in report.items():
        if key not in STRUCTURE and key != "instances" and _number(value):
            results[key] = value
    return results


def load_sweep(directory: str | Path) -> dict[str, Any]:
    """Read ``DIRECTORY/sweep.json``, or raise a one-line :class:`ConfigError`."""
    path = Path(directory) / SWEEP_FILE
    if not path.is_file():
        raise ConfigError(f"{str(directory)!r} has no {SWEEP_FILE}: not a sweep directory (expected sweeps/<name>)")
    try:
        sweep = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path} is not valid JSON ({error.msg})") from None
    sweep["directory"] = str(Path(directory))
    return sweep


def is_sweep_directory(directory: str | Path) -> bool:
    return (Path(directory) / SWEEP_FILE).is_file()


def point_rows(sweep: dict[str, Any]) -> list[dict[str, Any]]:
    """Every point of the sweep: ``{"run", "state", "axes", "instances", "results"}`` (results None unless done)."""
    return [
        {"run": run["id"], "state": run["state"], "axes": point["axes"], "instances": point["instances"],
         "results": point.get("results"), "directory": run["directory"], "last_line": run.get("last_line")}
        for run in sweep["runs"] for point in run["points"]
    ]


def done_run_directories(sweep: dict[str, Any]) -> list[Path]:
    """The directories of the sweep's finished runs, in plan order."""
    root = Path(sweep.get("directory", "."))
    return [root / run["directory"] for run in sweep["runs"] if run["state"] == "done"]


def metrics(rows: list[dict[str, Any]]) -> list[str]:
    """The numbers worth a panel: mean loss, dims per feature, the flip rate, each polygon's fraction (most common first).

    Above two dimensions an instance's geometry is only a count of represented features: one panel of
    the mean count, not one per count.
    """
    done = [row["results"] for row in rows if row["results"]]
    present = {key for results in done for key, value in results.items() if _number(value)}
    counts_only = any(key.startswith("fraction_") and key.endswith("_represented") for key in present)
    chosen = [key for key in ("loss", "dimensions_per_feature", "flip_rate") if key in present]
    chosen += ["represented"] if counts_only and "represented" in present else []
    totals = Counter({key: sum(r.get(key, 0) for r in done) for key in present
                      if key.startswith("fraction_") and not key.endswith("_represented")})
    chosen += [key for key, _ in totals.most_common()]
    return chosen[:MAX_PANELS]


def _short(value: Any) -> str:
    return short_value(value, limit=24)


def axis_figure(rows: list[dict[str, Any]], axis_keys: list[str], panels: list[str]) -> Figure:
    """Each metric against one axis, one line per combination of the other axes' values.

    Args:
        rows: :func:`point_rows` (points without results are left out).
        axis_keys: The keys of the axis on x (a zip axis's keys move together; the first numeric one is used).
        panels: The metrics, one panel each.
    """
    rows = [row for row in rows if row["results"]]
    x_key = next((k for k in axis_keys if all(_number(row["axes"].get(k)) for row in rows)), axis_keys[0])

    def axis_point(row: dict[str, Any]) -> str:
        return " ".join(_short(row["axes"].get(k)) for k in axis_keys)

    # A number on x only where it tells the axis's points apart: a zip of optimizers and learning rates
    # (two at 0.001) is categories, labelled by every key of the point.
    x_of_point = {axis_point(row): row["axes"].get(x_key) for row in rows}
    numeric = all(_number(x) for x in x_of_point.values()) and len(set(x_of_point.values())) == len(x_of_point)
    categories: list[str] = []
    if not numeric:
        for row in rows:
            if axis_point(row) not in categories:
                categories.append(axis_point(row))
    varying = {k for k in {k for row in rows for k in row["axes"]} if len({repr(row["axes"].get(k)) for row in rows}) > 1}
    lines: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        others = {k: v for k, v in row["axes"].items() if k not in axis_keys and k in varying}
        lines.setdefault(", ".join(f"{k.replace('.init_args.', '.')}={_short(v)}" for k, v in others.items()), []).append(row)
    ncols = min(len(panels), 3)
    nrows = -(-len(panels) // ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.2 * nrows + 0.4), dpi=90)
    for k, metric in enumerate(panels):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        for n, (label, members) in enumerate(lines.items()):
            points = [(row["axes"].get(x_key) if numeric else categories.index(axis_point(row)),
                       row["results"].get(metric, 0.0 if metric.startswith("fraction_") else math.nan)) for row in members]
            points.sort(key=lambda p: p[0])
            # categories have no order to draw a line along
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", linestyle="-" if numeric else "none",
                    color=f"C{n % 10}", label=label or None)
        if numeric:
            xs = [row["axes"][x_key] for row in rows]
            if min(xs) > 0 and max(xs) / min(xs) >= 20:
                ax.set_xscale("log")
        else:
            ax.set_xticks(range(len(categories)), categories, rotation=20, ha="right", fontsize=8)
        ax.set_title(metric.replace("_", " "), fontsize=10)
        ax.set_xlabel((x_key if numeric else " + ".join(axis_keys)).replace(".init_args.", "."), fontsize=9)
        ax.grid(alpha=0.3)
        if k == 0 and len(lines) > 1:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def geometry_summary(geometries: dict[str, int]) -> str:
    """``"pentagon 61, hexagon 3"``; above two dimensions, where a geometry is only a count, the counts' range."""
    counts = [int(label.split()[0]) for label in geometries if label.endswith(" represented")]
    if len(counts) > 1 and len(counts) == len(geometries):
        return f"{min(counts)}-{max(counts)} represented"
    return ", ".join(f"{label} {n}" for label, n in geometries.items())


def table_rows(sweep: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The points table as text: run, state, each axis value, instances, loss, geometries, flip rate, dims per feature."""
    rows = point_rows(sweep)
    keys = list(dict.fromkeys(k for row in rows for k in row["axes"]))
    header = ["run", "state", *(k.replace(".init_args.", ".") for k in keys), "instances", "mean loss", "geometries"]
    extra = [k for k in ("flip_rate", "dimensions_per_feature") if any((row["results"] or {}).get(k) is not None for row in rows)]
    header += [k.replace("_", " ") for k in extra]
    lines = []
    for row in rows:
        results = row["results"] or {}
        geometries = geometry_summary(results.get("geometries") or {})
        lines.append([
            row["run"], row["state"], *(_short(row["axes"].get(k)) for k in keys), f"{row['instances'][0]}-{row['instances'][1] - 1}",
            f"{results['loss']:.5f}" if "loss" in results else "", geometries,
            *(f"{results[k]:.3f}" if k in results else "" for k in extra),
        ])
    return header, lines


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; max-width: 1200px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0; font-size: 90%; }} td, th {{ border: 1px solid #ccc; padding: 2px 8px; text-align: right; }}
img {{ max-width: 100%; border: 1px solid #eee; }} .note {{ color: #666; font-size: 90%; }} figure {{ margin: 1.5em 0; }}
</style></head><body>
<h1>{title}</h1>
{summary}
<h2>Every point</h2>
{table}
<h2>Results against the axes</h2>
{figures}
<p class="note">Made by lit-superposition sweep from {directory}. Per-instance numbers are means over each point's instances.</p>
</body></html>
"""


def write_sweep_report(sweep: dict[str, Any], out: Path) -> Path:
    """Draw one figure per axis into ``out`` and write ``out/index.html`` (the points table and the figures); returns its path."""
    out.mkdir(parents=True, exist_ok=True)
    rows = point_rows(sweep)
    states = Counter(run["state"] for run in sweep["runs"])
    summary = (f"<p><b>base</b> {html.escape(', '.join(Path(b).name for b in sweep.get('base', [])))} · <b>options</b> "
               f"{html.escape(' '.join(sweep.get('options', [])) or '(none)')} · <b>runs</b> {len(sweep['runs'])} ("
               + ", ".join(f"{n} {html.escape(s)}" for s, n in states.most_common()) + f") · <b>points</b> {len(rows)}</p>")
    packed = [axis for axis in sweep.get("axes", []) if axis.get("packed")]
    if packed:
        summary += "<p class='note'>packed into instances of one run: " + html.escape(", ".join(" + ".join(a["keys"]) for a in packed)) + "</p>"
    failed = [run for run in sweep["runs"] if run["state"] in ("failed", "interrupted")]
    if failed:
        summary += "<ul>" + "".join(f"<li>{html.escape(run['state'])}: {html.escape(run['id'])} ({html.escape(run['label'])}): "
                                    f"{html.escape(str(run.get('last_line')))}</li>" for run in failed) + "</ul>"
    header, lines = table_rows(sweep)
    root = Path(sweep.get("directory", out.parent))
    for line, run_row in zip(lines, rows):
        page = root / run_row["directory"] / "report" / "index.html"
        cell = html.escape(line[0])
        line[0] = f"<a href='../{html.escape(run_row['directory'])}/report/index.html'>{cell}</a>" if page.is_file() else cell
        line[1:] = [html.escape(c) for c in line[1:]]
    panels = metrics(rows)
    figures = []
    if panels and any(row["results"] for row in rows):
        for k, axis in enumerate(sweep.get("axes", [])):
            if len({repr([row["axes"].get(key) for key in axis["keys"]]) for row in rows}) < 2:
                continue  # one value: nothing to plot against
            name = f"axis_{k}.png"
            figure = axis_figure(rows, axis["keys"], panels)
            figure.savefig(out / name)
            plt.close(figure)
            heading = " + ".join(key.replace(".init_args.", ".") for key in axis["keys"])
            figures.append(f"<figure><h3>Against {html.escape(heading)}</h3><img src='{name}' alt='{html.escape(heading)}'>"
                           "<figcaption class='note'>One line per combination of the other axes; means over each point's instances.</figcaption></figure>")
    page = PAGE.format(title=html.escape(f"sweep {sweep.get('name', '')}"), summary=summary, table=_table(header, lines),
                       figures="\n".join(figures) or "<p class='note'>no finished runs yet</p>",
                       directory=html.escape(str(root)))
    index = out / "index.html"
    atomic_write_text(page, index)  # a browser open on the page never reads half of it
    return index
