"""The report's figures of noise curves, optimizers, the trade-off and the noise configurations (Figures 1-5, and
one evaluation's noise curve) as pure functions: a tidy frame (its rows those of report.rows) ->
`matplotlib.figure.Figure`; and `save`, which renders one.

Never pyplot and never `matplotlib.use`: importing this module leaves a notebook user's backend alone, and a
figure is only rendered by `save` (or by whoever displays it). Every figure uses the constrained layout, wraps
long titles and labels to the space they have (report.plot_style), keeps legends outside the panels, and draws
95 % CI error bars; fractions are plotted in %. Figures 6-8 are report.figures_mechanism's;
report.layout_check.layout_problems checks any figure from matplotlib's own layout.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import NullLocator

from lrnoise import names
from lrnoise.analysis.run_table import columns
from lrnoise.report.plot_style import (
    CLEAN_PERCENT,
    DPI,
    ERRORBAR_STYLE,
    LABEL_FONTSIZE,
    LEGEND_WIDTH,
    LR_CMAP,
    PANEL_SIZE,
    bounded_bars,
    config_colors,
    label_axes,
    lr_axis,
    lr_colors,
    model_order,
    n_text,
    new_figure,
    outside_legend,
    panels,
    percent,
    plain,
    require,
    sorted_legend,
    wrap,
)
from lrnoise.report.rows import CurvePoint, LevelPoint, NoiseModelPoint, OptimizerRow, TradeoffPoint

LEVEL_AXIS_LABELS = {"eta": "noise form factor eta (%)", "t": "time since programming t (s)"}


def level_axis_label(level_name: str) -> str:
    """The x-axis label of a noise configuration's level axis (eta in %, pcm time in seconds)."""
    return LEVEL_AXIS_LABELS[level_name]


# ---------------------------------------------------------------- level axes
def _curve_xy(group: pd.DataFrame, log_x: bool, level_scale: float) -> tuple[np.ndarray, ...]:
    """(x, y %, ci %) of one curve sorted by level. On a linear axis the clean point (level 0, 100 %, no bar) is
    added when absent; a log axis cannot show level 0, so those rows are dropped (the caller draws 100 % as a line).
    """
    group = group.sort_values("level")
    level = group["level"].to_numpy(dtype=float)
    y, ci = percent(group["normalized_accuracy"]), percent(group["ci95"])
    if log_x:
        keep = level > 0
        return level[keep] * level_scale, y[keep], ci[keep]
    if not np.any(level == 0):
        level, y, ci = np.r_[0.0, level], np.r_[CLEAN_PERCENT, y], np.r_[np.nan, ci]
    return level * level_scale, y, ci


def _level_axis(ax, log_x: bool) -> Line2D | None:
    """On a log axis: log scale and the clean value (100 %) as a dotted line, returned for the legend."""
    if not log_x:
        return None
    ax.set_xscale("log")
    return ax.axhline(CLEAN_PERCENT, linestyle=":", color="0.35", linewidth=1.2)


LEVEL_TICK_RATIO = 4.0  # a log level axis is ticked at its levels only when each is >= 4x the one before


def _level_ticks(ax, drawn, tick_text, scale: float) -> None:
    """A log level axis ticked at the x values drawn, each named by tick_text(x / scale) (pcm: 1s, 1h, 1d, 1y),
    without minor ticks: the reader sees the times evaluated rather than powers of ten, and a figure draws in
    ~0.13 s rather than ~0.28 s (seven decades of log ticks; a study draws one per noise evaluation). Levels
    closer together than LEVEL_TICK_RATIO keep the log ticks (their names would collide)."""
    ticks = np.unique(np.asarray(drawn, dtype=float))
    if tick_text is None or len(ticks) == 0 or np.any(ticks[1:] < LEVEL_TICK_RATIO * ticks[:-1]):
        return
    ax.set_xticks(ticks, [tick_text(x / scale) for x in ticks])
    ax.xaxis.set_minor_locator(NullLocator())


def _default_scale(log_x: bool, level_scale: float | None) -> float:
    """Additive eta is a fraction shown in % (x100); pcm drift time is already in seconds (x1)."""
    if level_scale is not None:
        return float(level_scale)
    return 1.0 if log_x else 100.0


# ---------------------------------------------------------------- Figures 1 and 2
def noise_curves(
    curves: pd.DataFrame,
    title: str,
    level_label: str,
    log_x: bool = False,
    level_scale: float | None = None,
    tick_text=None,
) -> Figure:
    """Normalised accuracy A^eta (%) against the noise level, a panel per model, a line per lr with 95 % CI bars.

    curves: rows.CurvePoint's columns (model, lr, level, normalized_accuracy, ci95, n). Level 0 is the clean model
    (A = 100 %): drawn as a point on a linear axis, as a dotted line on a log axis (pcm drift time).
    level_scale multiplies the levels for the x axis (default: 100 on a linear axis, eta fraction -> %; 1 on log).
    tick_text(level) names a level (e.g. noise.level_label): a log axis is then ticked at the levels drawn.
    """
    require(curves, columns(CurvePoint), "noise_curves")
    scale = _default_scale(log_x, level_scale)
    models = model_order(curves)
    colors = lr_colors(curves["lr"])
    fig, axes = panels(len(models), title, legend="right")
    legend = {}  # lr -> (handle, label), first seen; one legend for the whole figure, in lr order
    for ax, model in zip(axes, models):
        clean = _level_axis(ax, log_x)
        drawn = []  # x of every point of the panel
        for lr, group in curves[curves["model"] == model].groupby("lr"):
            x, y, ci = _curve_xy(group, log_x, scale)
            label = f"lr {plain(lr)} ({n_text(curves.loc[curves['lr'] == lr, 'n'])})"
            handle = ax.errorbar(x, y, yerr=ci, color=colors[float(lr)], marker="o", label=label, **ERRORBAR_STYLE)
            legend.setdefault(float(lr), (handle, label))
            drawn.extend(x)
        if log_x:
            _level_ticks(ax, drawn, tick_text, scale)
        if clean is not None:
            legend.setdefault(np.inf, (clean, "clean model (100 %)"))  # last entry
        label_axes(ax, level_label, "normalised accuracy (%)", str(model))
    sorted_legend(fig, legend, "right")
    return fig


def noise_curve(
    summary: pd.DataFrame,
    title: str,
    level_label: str,
    log_x: bool = False,
    level_scale: float | None = None,
    tick_text=None,
) -> Figure:
    """One evaluation's curve (what noise-eval logs): A^eta (%) against the level, 95 % CI over the draws.

    summary: rows.LevelPoint's columns (level, normalized_accuracy, ci95). Put A_avr in `title` if wanted.
    tick_text: as for noise_curves.
    """
    require(summary, columns(LevelPoint), "noise_curve")
    fig, (ax,) = panels(1, title, legend="below")
    clean = _level_axis(ax, log_x)
    scale = _default_scale(log_x, level_scale)
    x, y, ci = _curve_xy(summary, log_x, scale)
    handle = ax.errorbar(x, y, yerr=ci, color=LR_CMAP(0), marker="o", **ERRORBAR_STYLE)
    if log_x:
        _level_ticks(ax, x, tick_text, scale)
    label_axes(ax, level_label, "normalised accuracy (%)")
    handles, labels = [handle], ["mean over noise draws (bars: 95 % CI)"]
    if clean is not None:
        handles, labels = handles + [clean], labels + ["clean model (100 %)"]
    outside_legend(fig, handles, labels, "below")
    return fig


# ---------------------------------------------------------------- Figure 3
def optimizers(table: pd.DataFrame, title: str) -> Figure:
    """Grouped bars per optimizer: baseline accuracy a_0 and A_avr (%), 95 % CI bars, n in the tick label.

    table: rows.OptimizerRow's columns, one row per optimizer in drawing order (the report's optimizer table).
    """
    require(table, columns(OptimizerRow), "optimizers")
    width = max(PANEL_SIZE[0], 0.9 * len(table) + 1.5) + LEGEND_WIDTH
    fig = new_figure(width, PANEL_SIZE[1] + 0.6, title, legend="right")
    ax = fig.subplots()
    x = np.arange(len(table))
    series = (  # (offset, mean column, CI column, colour, label)
        (-0.2, names.BASELINE_ACCURACY, "baseline_ci95", LR_CMAP(0), "baseline accuracy $a_0$"),
        (0.2, names.AVG_NORMALIZED_ACCURACY, "avr_ci95", LR_CMAP(1), r"average normalised accuracy $A_\mathrm{avr}$"),
    )
    bars = [
        ax.bar(x + offset, percent(table[value]), 0.38, yerr=percent(table[ci]), capsize=4, color=color, label=label)
        for offset, value, ci, color, label in series
    ]
    ax.set_xticks(x, labels=[f"{name}\n(n={int(n)})" for name, n in zip(table["optimizer"], table["runs"])])
    tops = np.concatenate([percent(table[value]) + np.nan_to_num(percent(table[ci])) for _, value, ci, _, _ in series])
    ax.set_ylim(0, max(105.0, float(np.nanmax(tops, initial=0.0)) + 3))
    label_axes(ax, "optimizer", "accuracy (%)")
    ax.grid(axis="x", visible=False)
    outside_legend(fig, bars, [b.get_label() for b in bars], "right")
    return fig


# ---------------------------------------------------------------- Figure 4
def tradeoff(points: pd.DataFrame, title: str, robust_label: str) -> Figure:
    """Per model, against lr (log): baseline accuracy a_0 (%) on the left axis and the robustness measure (%)
    on a twin right axis, both with 95 % t bars (a_0's clipped to [0, 100 %]: an accuracy cannot pass them).

    points: rows.TradeoffPoint's columns (model, lr, baseline, baseline_ci95, robust, robust_ci95, n).
    """
    require(points, columns(TradeoffPoint), "tradeoff")
    models = model_order(points)
    fig, axes = panels(len(models), title, legend="below")
    n = n_text(points["n"])
    base_color, robust_color = "tab:blue", "tab:red"
    handles = []
    for ax, model in zip(axes, models):
        group = points[points["model"] == model].sort_values("lr")
        lr = group["lr"].to_numpy(dtype=float)
        base = ax.errorbar(
            lr,
            percent(group["baseline"]),
            yerr=100 * bounded_bars(group["baseline"], group["baseline_ci95"]),
            color=base_color,
            marker="o",
            **ERRORBAR_STYLE,
        )
        twin = ax.twinx()
        robust = twin.errorbar(
            lr,
            percent(group["robust"]),
            yerr=percent(group["robust_ci95"]),
            color=robust_color,
            marker="s",
            linestyle="--",
            **ERRORBAR_STYLE,
        )
        handles = handles or [base, robust]
        label_axes(ax, "learning rate", "baseline accuracy $a_0$ (%)", str(model))
        ax.yaxis.label.set_color(base_color)
        twin.set_ylabel(
            wrap(robust_label, 0.8 * PANEL_SIZE[1] * 72, LABEL_FONTSIZE), fontsize=LABEL_FONTSIZE, color=robust_color
        )
        lr_axis(ax, points["lr"])
    outside_legend(fig, handles, [f"baseline accuracy $a_0$ ({n})", f"{robust_label} ({n})"], "below")
    return fig


# ---------------------------------------------------------------- Figure 5
def noise_models(lines: pd.DataFrame, title: str) -> Figure:
    """A_avr (%) against lr (log), one line per noise configuration with 95 % CI bars, a panel per model.

    lines: rows.NoiseModelPoint's columns (config, model, lr, avr, avr_ci95, n).
    """
    require(lines, columns(NoiseModelPoint), "noise_models")
    models = model_order(lines)
    colors = config_colors(lines["config"])
    fig, axes = panels(len(models), title, legend="right")
    legend = {}
    for ax, model in zip(axes, models):
        for config, group in lines[lines["model"] == model].groupby("config"):
            group = group.sort_values("lr")
            label = f"{config} ({n_text(lines.loc[lines['config'] == config, 'n'])})"
            handle = ax.errorbar(
                group["lr"].to_numpy(dtype=float),
                percent(group["avr"]),
                yerr=percent(group["avr_ci95"]),
                color=colors[config],
                marker="o",
                label=label,
                **ERRORBAR_STYLE,
            )
            legend.setdefault(config, (handle, label))
        label_axes(ax, "learning rate", r"average normalised accuracy $A_\mathrm{avr}$ (%)", str(model))
        lr_axis(ax, lines["lr"])
    sorted_legend(fig, legend, "right")
    return fig


# ---------------------------------------------------------------- files
def save(fig: Figure, stem: Path, vector: bool = True) -> list[Path]:
    """Writes stem.png (dpi 120) and, with `vector`, stem.pdf (for papers); returns the paths. stem has no
    suffix."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.parent / f"{stem.name}.png"] + ([stem.parent / f"{stem.name}.pdf"] if vector else [])
    fig.savefig(paths[0], dpi=DPI)
    if vector:
        fig.savefig(paths[1])
    return paths
