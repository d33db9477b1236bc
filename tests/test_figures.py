"""lrnoise.report's figures (figures, figures_mechanism, plot_style, layout_check, evaluation_figure): every figure
lays out cleanly (long titles, 1-4 panels), draws its error bars, keeps lr colours stable, writes PNG + PDF, and
never touches the user's matplotlib backend. The frames are built from report.rows' dataclasses."""

import os
import struct
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.colors import to_hex
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure

from lrnoise import names, paper
from lrnoise.analysis.run_table import columns, frame
from lrnoise.errors import LrnoiseError
from lrnoise.noise.noise_config import NoiseConfig
from lrnoise.report import evaluation_figure, figures, figures_mechanism, layout_check, plot_style
from lrnoise.report.rows import (
    CurvePoint,
    Eq2Point,
    LevelPoint,
    MechanismPoint,
    NoiseModelPoint,
    OptimizerRow,
    TradeoffPoint,
)

LONG_TITLE = "Table III: average normalised accuracy A_avr against learning rate per model (additive-paper)"
ETAS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.4)
PCM_TIMES = (1, 3600, 86400, 2592000, 31536000)
CONFIGS = ("additive-paper", "multiplicative-0.1", "pcm-drift-1y")
LR_LABELS = ["0.0005", "0.000625", "0.00075", "0.001", "0.00125", "0.0015"]


def model_names(count: int) -> list[str]:
    return [f"resnet{20 + 12 * i}" for i in range(count)]


def curves_frame(models: int, n: int, levels=ETAS) -> pd.DataFrame:
    """Tidy curves: a point per (model, lr, level); accuracy falls with the level, faster for larger lrs."""
    rank = np.log(np.asarray(levels, dtype=float) + 1) / np.log(max(levels) + 1)  # 0..1 per level
    return frame(
        [
            CurvePoint(model, lr, level, normalized_accuracy=1 - (0.3 + 0.1 * i) * r, ci95=0.005 + 0.02 * r, n=n)
            for model in model_names(models)
            for i, lr in enumerate(paper.LRS)
            for level, r in zip(levels, rank)
        ],
        CurvePoint,
    )


def level_frame(levels) -> pd.DataFrame:
    """One evaluation's curve (noise_curve's input): the first model and lr of curves_frame."""
    return curves_frame(1, 1, levels)[columns(LevelPoint)].iloc[: len(levels)]


def tradeoff_frame(models: int, n: int) -> pd.DataFrame:
    return frame(
        [
            TradeoffPoint(model, lr, 0.92 - 0.01 * i, baseline_ci95=0.004, robust=0.6 + 0.03 * i, robust_ci95=0.02, n=n)
            for model in model_names(models)
            for i, lr in enumerate(paper.LRS)
        ],
        TradeoffPoint,
    )


def noise_models_frame(models: int, n: int) -> pd.DataFrame:
    return frame(
        [
            NoiseModelPoint(config, model, lr, avr=0.75 - 0.1 * j + 0.01 * i, avr_ci95=0.015, n=n)
            for j, config in enumerate(CONFIGS)
            for model in model_names(models)
            for i, lr in enumerate(paper.LRS)
        ],
        NoiseModelPoint,
    )


def mechanism_frame(models: int, runs: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return frame(
        [
            MechanismPoint(model, lr, x=10 ** rng.uniform(-6, -3), avr=rng.uniform(0.4, 0.8))
            for model in model_names(models)
            for lr in paper.LRS
            for _ in range(runs)
        ],
        MechanismPoint,
    )


def optimizer_frame(count: int, n: int) -> pd.DataFrame:
    """The report's optimizer table at the paper's optimizer study, with the paper's values."""
    study = paper.OPTIMIZER_STUDY
    return frame(
        [
            OptimizerRow(
                study["dataset"],
                study["model"],
                batch_size=128,
                lr=study["lr"],
                optimizer=o,
                baseline=paper.OPTIMIZER_BASELINE_ACCURACY[o],
                baseline_ci95=0.01,
                avr=paper.OPTIMIZER_AVG_NORMALIZED_ACCURACY[o],
                avr_ci95=0.02,
                runs=n,
            )
            for o in paper.OPTIMIZERS[:count]
        ],
        OptimizerRow,
    )


def errorbars(fig: Figure) -> list[ErrorbarContainer]:
    return [c for ax in fig.axes for c in ax.containers if isinstance(c, ErrorbarContainer)]


def drawn_bars(container: ErrorbarContainer) -> int:
    """Vertical error bars with finite ends in one errorbar container."""
    segments = [seg for collection in container.lines[2] for seg in collection.get_segments()]
    return sum(int(len(seg) > 0 and np.isfinite(seg).all()) for seg in segments)  # a NaN CI leaves an empty one


def legend_labels(fig: Figure) -> list[str]:
    """The figure legends' entries, long ones unwrapped."""
    return [" ".join(t.get_text().split()) for legend in fig.legends for t in legend.get_texts()]


# ---------------------------------------------------------------- layout of every figure
@pytest.mark.parametrize("n", [1, 5])
@pytest.mark.parametrize("models", [1, 2, 4])
def test_noise_curves_lay_out_cleanly(models, n):
    fig = figures.noise_curves(curves_frame(models, n), LONG_TITLE, "weight-noise form factor eta (%)")
    assert layout_check.layout_problems(fig) == []
    assert len(fig.axes) == models
    assert len(fig.legends) == 1 and all(ax.get_legend() is None for ax in fig.axes)  # once, outside the panels
    assert legend_labels(fig) == [f"lr {lr} (n={n})" for lr in LR_LABELS]


@pytest.mark.parametrize("models", [1, 2, 4])
def test_noise_curves_pcm_log_axis(models):
    fig = figures.noise_curves(
        curves_frame(models, 3, (0,) + PCM_TIMES), LONG_TITLE, "time since programming t (s)", log_x=True
    )
    assert layout_check.layout_problems(fig) == []
    for ax in fig.axes:
        assert ax.get_xscale() == "log"
        clean = [line for line in ax.lines if line.get_linestyle() == ":"]
        assert len(clean) == 1 and set(clean[0].get_ydata()) == {100.0}  # the clean value as a dotted line
    for container in errorbars(fig):  # the level-0 rows cannot sit on a log axis: dropped, times kept in seconds
        assert list(container.lines[0].get_xdata()) == list(PCM_TIMES)
    assert "clean model (100 %)" in legend_labels(fig)


PCM_NAMES = dict(zip(PCM_TIMES, ("1s", "1h", "1d", "30d", "1y")))  # as noise.level_label writes them


def level_name(seconds: float) -> str:
    return PCM_NAMES.get(seconds, f"{seconds:g}s")


@pytest.mark.parametrize("models", [1, 4])
def test_a_log_level_axis_is_ticked_at_its_levels_by_name(models):
    """pcm's times as the ticks (1s ... 1y), not seven decades of powers of ten, in the report and a single curve."""
    many = figures.noise_curves(
        curves_frame(models, 3, (0,) + PCM_TIMES),
        LONG_TITLE,
        "time since programming t (s)",
        log_x=True,
        tick_text=level_name,
    )
    summary = level_frame(PCM_TIMES)
    one = figures.noise_curve(summary, LONG_TITLE, "time since programming t (s)", log_x=True, tick_text=level_name)
    for fig in (many, one):
        assert layout_check.layout_problems(fig) == []
        for ax in fig.axes:
            assert list(ax.get_xticks()) == list(PCM_TIMES)
            assert [t.get_text() for t in ax.get_xticklabels()] == list(PCM_NAMES.values())
            assert list(ax.xaxis.get_minorticklocs()) == []


def test_levels_just_far_enough_apart_are_named_without_collisions():
    """The closest spacing that gets named ticks (4x), in the report's narrowest panels (four models)."""
    times = tuple(4.0**i for i in range(8))  # 1 s ... 16384 s
    fig = figures.noise_curves(
        curves_frame(4, 3, times), LONG_TITLE, "time since programming t (s)", log_x=True, tick_text=lambda t: f"{t:g}s"
    )
    assert layout_check.layout_problems(fig) == []
    assert len(fig.axes) == 4 and all(list(ax.get_xticks()) == list(times) for ax in fig.axes)


def test_levels_too_close_to_name_keep_the_log_ticks():
    times = (1.0, 2.0, 3600.0)  # 1s and 2s would collide
    summary = level_frame(times)
    fig = figures.noise_curve(summary, LONG_TITLE, "t (s)", log_x=True, tick_text=level_name)
    assert layout_check.layout_problems(fig) == []
    assert list(fig.axes[0].get_xticks()) != list(times)
    assert len(fig.axes[0].xaxis.get_minorticklocs()) > 0


@pytest.mark.parametrize("n", [1, 5])
@pytest.mark.parametrize("models", [1, 2, 4])
def test_tradeoff_lays_out_cleanly(models, n):
    fig = figures.tradeoff(tradeoff_frame(models, n), LONG_TITLE, "normalised accuracy at eta = 10 % (%)")
    assert layout_check.layout_problems(fig) == []
    panels = [ax for ax in fig.axes if ax.get_xlabel()]
    assert len(panels) == models and len(fig.axes) == 2 * models  # each panel has its twin (right) axis
    for ax in panels:
        assert ax.get_xscale() == "log"
        assert [t.get_text() for t in ax.get_xticklabels()] == LR_LABELS


@pytest.mark.parametrize("n", [1, 5])
@pytest.mark.parametrize("models", [1, 2, 4])
def test_noise_models_lays_out_cleanly(models, n):
    fig = figures.noise_models(noise_models_frame(models, n), LONG_TITLE)
    assert layout_check.layout_problems(fig) == []
    assert legend_labels(fig) == [f"{config} (n={n})" for config in CONFIGS]
    assert all([t.get_text() for t in ax.get_xticklabels()] == LR_LABELS for ax in fig.axes)


@pytest.mark.parametrize("runs", [1, 5])
@pytest.mark.parametrize("models", [1, 2, 4])
def test_mechanism_lays_out_cleanly(models, runs):
    fig = figures_mechanism.mechanism(mechanism_frame(models, runs), LONG_TITLE, "gradient-noise power lr * Var(g) / B")
    assert layout_check.layout_problems(fig) == []
    scatters = [c for ax in fig.axes for c in ax.collections if isinstance(c, PathCollection)]
    assert len(scatters) == models * len(paper.LRS)  # one point set per panel and lr
    assert sum(len(s.get_offsets()) for s in scatters) == models * len(paper.LRS) * runs  # one point per run
    colors = plot_style.lr_colors(paper.LRS)
    assert {to_hex(s.get_facecolor()[0]) for s in scatters} == set(colors.values())
    assert all(ax.get_xscale() == "log" for ax in fig.axes)


@pytest.mark.parametrize("n", [1, 5])
@pytest.mark.parametrize("count", [1, 2, 6])
def test_optimizers_lays_out_cleanly(count, n):
    table = optimizer_frame(count, n)
    fig = figures.optimizers(table, LONG_TITLE)
    assert layout_check.layout_problems(fig) == []
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == [f"{o}\n(n={n})" for o in table["optimizer"]]
    assert ax.get_legend() is None and len(fig.legends) == 1


@pytest.mark.parametrize("log_x, levels", [(False, ETAS), (True, PCM_TIMES)])
def test_single_noise_curve_lays_out_cleanly(log_x, levels):
    summary = level_frame(levels)
    fig = figures.noise_curve(summary, LONG_TITLE + " A_avr = 0.781", "noise level", log_x=log_x)
    assert layout_check.layout_problems(fig) == []
    (container,) = errorbars(fig)
    assert drawn_bars(container) == len(levels)
    assert fig.axes[0].get_xscale() == ("log" if log_x else "linear")


# ---------------------------------------------------------------- error bars: as many as the data asks for
@pytest.mark.parametrize("models", [1, 4])
def test_noise_curves_draw_one_errorbar_per_point(models):
    curves = curves_frame(models, 5)
    curves.loc[curves.index[0], "ci95"] = np.nan  # a point without a CI gets no bar
    fig = figures.noise_curves(curves, LONG_TITLE, "eta (%)")
    containers = errorbars(fig)
    assert len(containers) == models * len(paper.LRS)  # one line per (model, lr)
    assert sum(drawn_bars(c) for c in containers) == len(curves) - 1
    first = containers[0].lines[0]  # the clean point (eta 0, 100 %) leads every additive curve
    assert first.get_xdata()[0] == 0 and first.get_ydata()[0] == 100
    assert list(first.get_xdata()[1:]) == pytest.approx([eta * 100 for eta in ETAS])  # eta in %


def test_legend_lists_lrs_in_order_even_when_the_first_panel_lacks_one():
    curves = curves_frame(2, 5)
    curves = curves[~((curves["model"] == "resnet20") & (curves["lr"] == 0.0005))]
    fig = figures.noise_curves(curves, LONG_TITLE, "eta (%)")
    assert legend_labels(fig) == [f"lr {lr} (n=5)" for lr in LR_LABELS]
    assert len(errorbars(fig)) == 2 * len(paper.LRS) - 1


@pytest.mark.parametrize("models", [1, 2, 4])
def test_tradeoff_and_noise_models_draw_their_errorbars(models):
    tradeoff = figures.tradeoff(tradeoff_frame(models, 5), LONG_TITLE, "A at eta 10 % (%)")
    assert len(errorbars(tradeoff)) == 2 * models  # baseline (left) and robustness (twin) per panel
    assert sum(drawn_bars(c) for c in errorbars(tradeoff)) == 2 * models * len(paper.LRS)
    lines = figures.noise_models(noise_models_frame(models, 5), LONG_TITLE)
    assert len(errorbars(lines)) == models * len(CONFIGS)
    assert sum(drawn_bars(c) for c in errorbars(lines)) == models * len(CONFIGS) * len(paper.LRS)


def test_optimizer_bars_carry_errorbars_in_percent():
    table = optimizer_frame(6, 3)
    fig = figures.optimizers(table, LONG_TITLE)
    containers = errorbars(fig)
    assert len(containers) == 2 and [drawn_bars(c) for c in containers] == [6, 6]
    heights = [bar.get_height() for bar in fig.axes[0].patches[:6]]
    assert heights == pytest.approx(list(table[names.BASELINE_ACCURACY] * 100))


# ---------------------------------------------------------------- layout_problems can fail
def test_layout_problems_reports_a_broken_figure():
    fig = Figure(figsize=(5, 3.5), layout="constrained")
    ax = fig.subplots()
    ax.plot([0, 1, 2], [0, 1, 2], label="a line through the centre")
    ax.legend(loc="center")
    fig.suptitle("a title pushed off the left edge", x=-0.2)
    problems = layout_check.layout_problems(fig)
    assert any("legend" in p and "Line2D" in p for p in problems), problems
    assert any("a title pushed off" in p and "outside the figure" in p for p in problems), problems


def test_layout_problems_reports_crowded_tick_labels():
    fig = Figure(figsize=(3, 2.5), layout="constrained")
    ax = fig.subplots()
    ticks = np.arange(12)
    ax.set_xticks(ticks, labels=[f"label number {t}" for t in ticks])
    ax.plot(ticks, ticks)
    assert any("overlaps" in p and "label number" in p for p in layout_check.layout_problems(fig))


def test_layout_problems_reports_a_legend_over_the_title():
    fig = Figure(figsize=(5, 3.5), layout="constrained")
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], label="a rather long legend entry")
    fig.legend(loc="outside right upper")
    fig.suptitle("a long suptitle that runs into the legend column at the top right")
    assert any("covers text 'a long suptitle" in p for p in layout_check.layout_problems(fig))


# ---------------------------------------------------------------- colours, files, errors, backend
@pytest.mark.parametrize("lr", [0.0005, 0.00075, 0.0015, 0.0003, 0.01])
def test_lr_colors_depend_on_the_lr_alone(lr):
    alone = plot_style.lr_colors([lr])[lr]
    with_paper = plot_style.lr_colors(list(paper.LRS) + [lr])[lr]
    with_others = plot_style.lr_colors([lr, 0.0002, 0.004, 0.1])[lr]
    read_back = plot_style.lr_color(float(repr(lr * (1 + 1e-13))))  # a param string parsed back to float
    assert alone == with_paper == with_others == read_back


def test_paper_lrs_get_distinct_colours_in_sorted_order():
    colors = plot_style.lr_colors(reversed(paper.LRS))
    assert list(colors) == sorted(paper.LRS)
    assert list(colors.values()) == [to_hex(plot_style.LR_CMAP(i)) for i in range(len(paper.LRS))]
    assert len(set(colors.values())) == len(paper.LRS)


def png_size(path) -> tuple[int, int]:
    with open(path, "rb") as handle:
        head = handle.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


@pytest.mark.parametrize("config", [NoiseConfig(levels=ETAS), NoiseConfig("pcm", levels=PCM_TIMES)])
def test_an_evaluations_noise_curve_is_drawn_from_its_result(config, tmp_path):
    """noise_curve.png, what noise_eval's `draw` writes into an evaluation run's artifacts, from its result."""
    summary = level_frame(config.levels).rename(columns={"ci95": "normalized_accuracy_ci95"}).assign(accuracy=0.5)
    result = SimpleNamespace(summary=summary, avg_normalized_accuracy=0.781)
    fig = evaluation_figure.noise_curve_figure(result, config, "digits")
    assert layout_check.layout_problems(fig) == [] and "A_avr = 0.781" in fig.get_suptitle()
    assert fig.axes[0].get_xscale() == ("log" if config.level_name == "t" else "linear")
    (path,) = evaluation_figure.write_noise_curve(result, config, "digits", tmp_path)
    assert path == tmp_path / "noise_curve.png" and png_size(path)[0] > 500


def test_save_writes_png_and_pdf(tmp_path):
    fig = figures.noise_curves(curves_frame(1, 5), LONG_TITLE, "eta (%)")
    paths = figures.save(fig, tmp_path / "figs" / "fig1_lr0.0005")
    assert [p.name for p in paths] == ["fig1_lr0.0005.png", "fig1_lr0.0005.pdf"]
    width, height = fig.get_size_inches()
    assert png_size(paths[0]) == (round(width * 120), round(height * 120))  # dpi 120
    with open(paths[1], "rb") as handle:
        assert handle.read(4) == b"%PDF"


@pytest.mark.parametrize(
    "call",
    [
        lambda: figures.noise_curves(curves_frame(1, 1).drop(columns="ci95"), "t", "eta"),
        lambda: figures.tradeoff(tradeoff_frame(1, 1).iloc[0:0], "t", "r"),
        lambda: figures_mechanism.mechanism([1, 2], "t", "x"),
        lambda: plot_style.lr_colors([0.001, 0.0]),
    ],
)
def test_bad_inputs_raise_one_line_errors(call):
    with pytest.raises(LrnoiseError) as error:
        call()
    assert "\n" not in str(error.value)


@pytest.mark.slow
def test_import_leaves_the_backend_alone():
    code = (
        "import sys, matplotlib; before = matplotlib.get_backend(); import lrnoise.report.figures, "
        "lrnoise.report.figures_mechanism, lrnoise.report.layout_check, lrnoise.report.evaluation_figure; "
        "print(before, matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)"
    )
    env = {**os.environ, "MPLBACKEND": "svg"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.split() == ["svg", "svg", "False"]


def test_interval_bars_stop_at_0_and_100_percent_and_batch_sizes_get_distinct_colours():
    bars = plot_style.bounded_bars(pd.Series([0.98, 0.5, 0.01]), pd.Series([0.05, 0.05, 0.05]))
    np.testing.assert_allclose(bars, [[0.05, 0.05, 0.01], [0.02, 0.05, 0.05]])
    colours = plot_style.batch_colors([8, 16, 32, 64, 128])
    assert len(set(colours.values())) == 5 and plot_style.batch_colors([32])[32] == colours[32]  # stable per B


def test_figure_7_has_eq2s_axis_and_its_rivals_per_optimizer():
    points = frame(
        [
            Eq2Point(o, lr, batch_size=b, avr=0.7 + 0.01 * i)
            for o in ("adam", "momentum")
            for i, lr in enumerate((0.0005, 0.001, 0.002))
            for b in (8, 32)
        ],
        Eq2Point,
    )
    fig = figures_mechanism.eq2_collapse(points, LONG_TITLE)
    titles = ["momentum: lr^2/B", "momentum: lr/B", "adam: lr^2/B", "adam: lr/B"]  # the paper's optimizer order
    assert [ax.get_title() for ax in fig.axes] == titles
    assert layout_check.layout_problems(fig) == []


def test_figure_4s_baseline_bars_stop_at_100_percent():
    points = tradeoff_frame(1, 3).assign(baseline=0.99, baseline_ci95=0.05)  # a t interval would reach 104 %
    fig = figures.tradeoff(points, LONG_TITLE, "A_avr")
    baseline_bars = errorbars(fig)[0]  # the left axis: a_0
    tops = [segment[:, 1].max() for segment in baseline_bars.lines[2][0].get_segments()]
    assert max(tops) == pytest.approx(100.0) and len(tops) == len(paper.LRS)
