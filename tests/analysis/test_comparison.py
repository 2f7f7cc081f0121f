"""compare's labels and figure, from run files alone."""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg

from lit_superposition.analysis.comparison import counts_figure, run_labels
from lit_superposition.analysis.run_files import Run

ADAMW = {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.05, "betas": [0.9, 0.999], "weight_decay": 0.01}}
SGD = {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.05, "momentum": 0.0}}


def _run(name: str, optimizer: dict | None) -> Run:
    return Run(Path("runs/pentagon") / name, {}, config={"model": {"optimizer": optimizer}, "trainer": {"max_steps": 100}})


def test_labels_name_the_default_optimizer_and_an_argument_only_where_runs_of_one_class_differ():
    default, adamw, sgd = _run("version_0", None), _run("version_1", ADAMW), _run("version_2", SGD)
    assert run_labels([default, sgd]) == ["model.optimizer=AdamW", "model.optimizer=SGD"]
    # Two AdamW runs at two learning rates: the rate tells them apart; the arguments a config leaves out are the defaults.
    assert run_labels([default, adamw]) == ["model.optimizer.lr=0.001", "model.optimizer.lr=0.05"]
    assert run_labels([default, sgd, adamw]) == [
        "model.optimizer=AdamW, model.optimizer.lr=0.001", "model.optimizer=SGD, model.optimizer.lr=0.05",
        "model.optimizer=AdamW, model.optimizer.lr=0.05"]


def test_the_legend_covers_no_bar_and_every_label_is_inside_the_figure():
    labels = ["model.optimizer=AdamW, model.optimizer.lr=0.001", "model.optimizer=SGD, model.optimizer.lr=0.05", "x"]
    counts = {labels[0]: {"pentagon": 8}, labels[1]: {"pentagon": 2, "square": 6}, labels[2]: {"triangle": 8}}
    fig = counts_figure({"labels": labels, "counts": counts})
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent(renderer)
    assert not any(legend.overlaps(bar.get_window_extent(renderer)) for bar in ax.patches)
    page = fig.bbox
    for tick in ax.get_xticklabels():
        box = tick.get_window_extent(renderer)
        assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0, tick.get_text()
