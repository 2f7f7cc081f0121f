"""The sweep report's figures: what goes on x."""

from __future__ import annotations

import matplotlib.pyplot as plt

from lit_superposition.analysis.sweep_report import axis_figure


def rows(points: list[dict]) -> list[dict]:
    return [{"axes": axes, "results": {"fraction_hexagon": 0.1 * k}} for k, axes in enumerate(points)]


def test_a_zip_whose_numbers_repeat_is_drawn_as_categories_named_by_every_key():
    points = [{"model.optimizer": "SGD", "model.optimizer.init_args.lr": 0.01},
              {"model.optimizer": "Adam", "model.optimizer.init_args.lr": 0.001},
              {"model.optimizer": "AdamW", "model.optimizer.init_args.lr": 0.001}]
    figure = axis_figure(rows(points), ["model.optimizer", "model.optimizer.init_args.lr"], ["fraction_hexagon"])
    (ax,) = figure.axes
    assert [tick.get_text() for tick in ax.get_xticklabels()] == ["SGD 0.01", "Adam 0.001", "AdamW 0.001"]
    (line,) = ax.get_lines()
    assert line.get_linestyle() == "None"  # categories are not joined by a line
    plt.close(figure)


def test_a_numeric_axis_is_drawn_on_a_number_line():
    points = [{"data.feature_probability": p} for p in (0.01, 0.1, 0.5)]
    figure = axis_figure(rows(points), ["data.feature_probability"], ["fraction_hexagon"])
    (ax,) = figure.axes
    (line,) = ax.get_lines()
    assert list(line.get_xdata()) == [0.01, 0.1, 0.5]
    assert ax.get_xscale() == "log"
    plt.close(figure)


def test_panels_are_the_polygons_fractions_but_one_mean_count_above_two_dimensions():
    from lit_superposition.analysis.sweep_report import metrics

    polygons = [{"results": {"loss": 0.1, "fraction_pentagon": 0.7, "fraction_hexagon": 0.3}}]
    assert metrics(polygons) == ["loss", "fraction_pentagon", "fraction_hexagon"]
    counts = [{"results": {"loss": 0.1, "dimensions_per_feature": 0.5, "represented": 28.6,
                           "fraction_18_represented": 0.2, "fraction_2_represented": 0.05}}]
    assert metrics(counts) == ["loss", "dimensions_per_feature", "represented"]


def test_the_table_names_polygons_but_gives_a_range_of_counts_above_two_dimensions():
    from lit_superposition.analysis.sweep_report import geometry_summary

    assert geometry_summary({"pentagon": 61, "hexagon": 3}) == "pentagon 61, hexagon 3"
    assert geometry_summary({"18 represented": 4, "2 represented": 1, "63 represented": 1}) == "2-63 represented"
    assert geometry_summary({"5 represented": 8}) == "5 represented 8"
    assert geometry_summary({}) == ""
