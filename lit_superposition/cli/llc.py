"""``lit-superposition llc RUN_DIR``: the local learning coefficient λ̂ of every instance of a finished run.

Rebuilds the run's model and data from ``config.yaml`` and ``checkpoints/last.ckpt``, estimates λ̂ of
every instance at once (batched SGLD, :mod:`lit_superposition.analysis.llc`) on the run's sample
(:func:`~lit_superposition.analysis.llc_results.draw_samples`: its training sets, or ``n`` points of
its stream from ``--sample_seed``), and writes ``instances[i].llc`` into ``report.json`` (everything
else kept), ``llc.pt`` (the traces), TensorBoard scalars and figures into the run's events, and the
report page. Only the command's own files are imported up front: bad input is answered without torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentParser
from rich.console import Console

from lit_superposition.analysis.report_schema import CHECKPOINT_DIR, CONFIG_FILE, LAST_CHECKPOINT, PAGE_DIR, REPORT_FILE
from lit_superposition.cli.messages import command_parser
from lit_superposition.errors import ConfigError

#: Instances whose traces go to TensorBoard when none are chosen (one curve per chain each).
DEFAULT_TRACED = 8
#: The estimator's settings besides n (LLCSettings), as options of the same names.
SETTINGS = ("nbeta", "epsilon", "gamma", "n_chains", "n_draws", "n_burnin", "batch_size", "seed")


def llc_parser() -> ArgumentParser:
    parser = command_parser(
        "llc",
        "Estimate the local learning coefficient λ̂ of every instance of a finished run (batched SGLD, each "
        "instance localized at its own trained weights) and write it into report.json, the report page and TensorBoard.",
    )
    parser.add_argument("run_dir", type=str, help="A finished run directory, e.g. runs/hexagon_scan/version_0.")
    parser.add_argument("--n", type=int | None, default=None,
                        help="Points of the stream sample (default 10000); unset for a run with finite training sets (their size).")
    parser.add_argument("--nbeta", type=float | None, default=None, help="Inverse temperature times n (default n / log n).")
    parser.add_argument("--epsilon", type=float | None, default=None, help="SGLD step size (default 0.3 / nβ).")
    parser.add_argument("--gamma", type=float | None, default=None, help="Localization strength (default nβ / 400).")
    parser.add_argument("--n_chains", type=int, default=8, help="Chains per instance.")
    parser.add_argument("--n_draws", type=int, default=2000, help="Draws per chain (the steps whose losses enter λ̂).")
    parser.add_argument("--n_burnin", type=int, default=1000, help="Steps per chain before the first draw.")
    parser.add_argument("--batch_size", type=int, default=256, help="Points per SGLD minibatch (capped at a training set's size).")
    parser.add_argument("--seed", type=int, default=0, help="Seeds the chains' minibatches and noise.")
    parser.add_argument("--sample_seed", type=int, default=0, help="Seeds the stream sample's points.")
    parser.add_argument("--instances", type=list[int] | None, default=None, help="Which instances (default: all).")
    parser.add_argument("--traces", type=list[int] | None, default=None,
                        help="Instances whose per-chain traces go to TensorBoard (default: the first 8 estimated).")
    parser.add_argument("--device", type=str, default="cpu", help="Where to sample: cpu, cuda, ...")
    parser.add_argument("--page", type=bool, default=True, help="Redraw the report page (RUN_DIR/report).")
    return parser


def _run_files(directory: str) -> tuple[Path, Path]:
    """The run directory and its checkpoint, or a one-line :class:`ConfigError` saying what is missing."""
    run = Path(directory)
    if not run.is_dir():
        raise ConfigError(f"run directory {directory!r} does not exist")
    for name, what in ((REPORT_FILE, "not a finished run directory"), (CONFIG_FILE, "its model and data cannot be rebuilt")):
        if not (run / name).is_file():
            raise ConfigError(f"{directory!r} has no {name}: {what} (expected runs/<config>/version_N)")
    checkpoint = run / CHECKPOINT_DIR / LAST_CHECKPOINT
    if not checkpoint.is_file():
        raise ConfigError(
            f"{directory!r} has no {CHECKPOINT_DIR}/{LAST_CHECKPOINT}: λ̂ needs the trained weights (was the run made"
            " with trainer.enable_checkpointing: false?)"
        )
    return run, checkpoint


def rebuild(run: Path, checkpoint_path: Path, device: str) -> tuple[Any, Any, int]:
    """The run's LightningModule (at its last checkpoint's weights, on ``device``), its datamodule and the step."""
    import yaml
    from jsonargparse import ArgumentParser as Parser

    from lit_superposition.cli.resume import check_checkpoint_fits, load_checkpoint
    from lit_superposition.data import SparseFeatureDataModule
    from lit_superposition.module import LitToyModel

    config = yaml.safe_load((run / CONFIG_FILE).read_text()) or {}
    parser = Parser(exit_on_error=False)
    parser.add_class_arguments(LitToyModel, "model")
    parser.add_class_arguments(SparseFeatureDataModule, "data")
    for source, target in (("n_instances", "n_instances"), ("n_features", "n_features"), ("repeats", "repeats"),
                           ("target", "target"), ("grid", "grid")):  # as the training CLI links them
        parser.link_arguments(f"data.{source}", f"model.{target}")
    try:
        parsed = parser.parse_object({"model": config.get("model") or {}, "data": config.get("data") or {}})
        objects = getattr(parser, "instantiate", parser.instantiate_classes)(parsed)  # renamed in jsonargparse 4.49
    except Exception as error:  # noqa: BLE001 - a config of another release or a hand-edited one: one line
        raise ConfigError(f"{run / CONFIG_FILE} does not describe a model and data of this release: {error}") from None
    module, data = objects.model, objects.data
    checkpoint = load_checkpoint(str(checkpoint_path))
    check_checkpoint_fits(checkpoint, module, data, str(checkpoint_path))
    module.on_load_checkpoint(checkpoint)
    try:
        module.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        raise ConfigError(f"{checkpoint_path} does not fit the run's config: {str(error).splitlines()[0]}") from None
    try:
        module.to(device)
    except (RuntimeError, AssertionError) as error:
        raise ConfigError(f"--device {device!r} is not available here: {str(error).splitlines()[0]}") from None
    return module, data, int(checkpoint["global_step"])


def _log_tensorboard(run: Path, result: Any, traced: list[int], figure: Any) -> None:
    """λ̂ scalars at the run's step, the chosen instances' traces (step = draw) and the trace figure."""
    from tensorboard.compat.proto.summary_pb2 import Summary
    from torch.utils.tensorboard import SummaryWriter

    traces, draws = result.traces()  # (k, n_chains, kept), (kept,)
    means = result.column("mean").tolist()
    with SummaryWriter(log_dir=str(run)) as writer:
        values = [Summary.Value(tag=f"llc/instance_{i:03d}", simple_value=m) for i, m in zip(result.instances, means) if m == m]
        writer.file_writer.add_summary(Summary(value=values), result.step)  # one event, not one per tag
        for instance in traced:
            row = result.instances.index(instance)
            for draw, losses in zip(draws.tolist(), traces[row].T.tolist()):  # (n_chains,) per kept draw
                writer.file_writer.add_summary(Summary(value=[
                    Summary.Value(tag=f"llc_trace/instance_{instance:03d}/chain_{c:02d}", simple_value=v)
                    for c, v in enumerate(losses) if v == v]), draw)
        writer.add_figure("llc/traces", figure, result.step)


def run_llc(args: Sequence[str], console: Console | None = None) -> dict[str, Any]:
    """Parse ``args``, estimate, write the files; returns the updated report."""
    options = llc_parser().parse_args(list(args))
    run, checkpoint = _run_files(options.run_dir)
    import yaml

    sizes = ((yaml.safe_load((run / CONFIG_FILE).read_text()) or {}).get("data") or {}).get("dataset_size")
    if sizes is not None and options.n is not None:
        raise ConfigError(f"--n: this run trains on finite sets (data.dataset_size = {sizes}), and n is each set's size: leave it unset")
    from lit_superposition.analysis.llc import LLCSettings
    from lit_superposition.analysis.llc_results import DEFAULT_N

    # One line for any bad value; a finite set's size replaces n (and caps batch_size) when the sample is drawn.
    settings = LLCSettings(n=DEFAULT_N if options.n is None else options.n, **{name: options[name] for name in SETTINGS})

    import json

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.table import Table

    from lit_superposition.analysis.files import atomic_torch_save, atomic_write_text
    from lit_superposition.analysis.llc_page import geometry_label, llc_value, trace_figure, trace_instances
    from lit_superposition.analysis.llc_results import draw_samples, estimate_run
    from lit_superposition.analysis.report_schema import LLC_FILE

    console = console or Console()
    report = json.loads((run / REPORT_FILE).read_text())
    with console.status(f"rebuilding the model and data of {run}"):
        module, data, step = rebuild(run, checkpoint, options.device)
    n_instances = module.model.n_instances
    for name in ("instances", "traces"):
        bad = [i for i in options[name] or [] if not 0 <= i < n_instances]
        if bad or options[name] == []:
            raise ConfigError(f"--{name} must list instances in 0..{n_instances - 1}, got {options[name]}")
    samples = draw_samples(data, options.n, options.sample_seed, module.device)
    columns = (TextColumn("[bold]λ̂[/] SGLD"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"), TimeElapsedColumn(),
               TextColumn("left"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("sgld", total=None)
        result = estimate_run(module.model, samples, settings, step, module.importance, module.target, options.instances,
                              progress=lambda done, total: progress.update(task, completed=done, total=total))
    rows = {entry["index"]: entry for entry in report["instances"]}
    for position, instance in enumerate(result.instances):
        rows[instance]["llc"] = result.record(position)
    atomic_write_text(json.dumps(report, indent=1), run / REPORT_FILE)  # the llc records are strict JSON themselves
    atomic_torch_save(result.trace_file(), run / LLC_FILE)

    traced = options.traces or trace_instances(report["instances"], result.instances, DEFAULT_TRACED)
    traced = [i for i in traced if i in result.instances]
    traces, draws = result.traces()
    positions = [result.instances.index(i) for i in traced]
    figure = trace_figure(traces[positions], draws, result.nbeta[positions], result.column("init_loss")[positions],
                          [f"{i} ({geometry_label(rows[i])}): {llc_value(rows[i]['llc'])}" for i in traced])
    _log_tensorboard(run, result, traced, figure)

    shown = result.record(0)["settings"]
    several_sizes = len({estimate.settings.n for estimate, _ in result.estimates}) > 1  # finite sets of several sizes
    if several_sizes:
        shown = {k: v for k, v in shown.items() if k not in ("n", "nbeta", "epsilon", "gamma", "batch_size")}
    table = Table(title=f"λ̂ at step {step}: {run}", caption=f"sample: {result.descriptions[0]}; "
                  + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in shown.items())
                  + ("; n, nβ, ε, γ, batch_size per set size in report.json" if several_sizes else ""))
    for column in ("instance", "seed", "geometry", "λ̂", "± std", "warnings"):
        table.add_column(column, justify="left" if column == "geometry" else "right")
    for instance in result.instances[:32]:
        record = rows[instance]["llc"]
        table.add_row(str(instance), str(rows[instance]["init_seed"]), geometry_label(rows[instance]),
                      "—" if record["mean"] is None else f"{record['mean']:.3f}", "—" if record["std"] is None else f"{record['std']:.3f}",
                      str(len(record["warnings"])) if record["warnings"] else "")
    console.print(table)
    if len(result.instances) > 32:
        console.print(f"(the first 32 of {len(result.instances)} instances; all in {run / REPORT_FILE})")
    warnings = result.warnings
    if warnings:
        console.print(f"[yellow]{len(warnings)} chain warning(s)[/], e.g. {warnings[0]} (all in report.json and on the page)")
    if options.page:
        from lit_superposition.analysis.report_page import write_report
        from lit_superposition.analysis.run_files import load_run

        with console.status("drawing the report page"):
            index = write_report(load_run(run), run / PAGE_DIR)
        console.print(f"report page: {index}")
    console.print(f"report.json: {run / REPORT_FILE}   traces: {run / LLC_FILE}   (tensorboard --logdir {run})")
    return report
