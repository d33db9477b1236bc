"""The paper's figures as pure functions: tidy pandas frame(s) -> `matplotlib.figure.Figure`.

Never pyplot and never `matplotlib.use`: importing this module leaves a notebook user's backend alone, and a
figure is only rendered by `save` (or by whoever displays it). Every figure uses the constrained layout, wraps
long titles and labels to the space they have, keeps legends outside the panels, and draws 95 % CI error
bars; fractions are plotted in %. `layout_problems` checks a figure from matplotlib's own layout.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.colors import ListedColormap, to_hex
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.legend import Legend
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.text import Text
from matplotlib.textpath import text_to_path
from matplotlib.ticker import NullFormatter, NullLocator

from lrnoise import paper
from lrnoise.analysis import stats
from lrnoise.errors import LrnoiseError

# One colour per paper learning rate, in sorted lr order (0.0005 ... 0.0015): tab10's first six hues.
LR_CMAP = ListedColormap([colormaps["tab10"](i) for i in range(len(paper.LRS))], name="lrnoise_lr")
PAPER_LRS = tuple(sorted(paper.LRS))
# Any other lr: a colour from its own log10 value on viridis (clipped to 1e-6 .. 1), so it never depends on
# which other lrs are present; viridis is cut at 0.85 to avoid its pale yellow end.
OTHER_LR_CMAP = colormaps["viridis"]
OTHER_LR_LOG_RANGE = (-6.0, 0.0)
CONFIG_CMAP = colormaps["tab10"]  # noise configurations in Figure 5, in sorted name order

PANEL_SIZE = (4.6, 3.4)  # inches per panel
LEGEND_WIDTH = 1.9  # inches added on the right for an outside legend
BOTTOM_LEGEND_HEIGHT = 0.6  # inches added below for an outside lower legend
TITLE_FONTSIZE = 13.0
LABEL_FONTSIZE = 10.0
LEGEND_FONTSIZE = 9.0
LR_TICK_FONTSIZE = 8.0
CLEAN_PERCENT = 100.0  # the normalised accuracy of the clean model, by definition
DPI = 120
ERRORBAR_STYLE = {"capsize": 3, "elinewidth": 1.0, "markersize": 4}


# ---------------------------------------------------------------- colours
def _lr_key(lr) -> float:
    """lrs read back from tracking params may differ in the last bits: compare them at 10 significant digits."""
    return float(f"{float(lr):.10g}")


def lr_color(lr) -> str:
    """The colour of one lr: its place among the paper's lrs, else its log10 value on OTHER_LR_CMAP."""
    key = _lr_key(lr)
    if not key > 0:
        raise LrnoiseError(f"learning rate {lr!r} cannot be coloured: learning rates must be > 0")
    if key in PAPER_LRS:
        return to_hex(LR_CMAP(PAPER_LRS.index(key)))
    lo, hi = OTHER_LR_LOG_RANGE
    position = float(np.clip((np.log10(key) - lo) / (hi - lo), 0.0, 1.0))
    return to_hex(OTHER_LR_CMAP(0.85 * position))


def lr_colors(lrs) -> dict[float, str]:
    """{lr: hex colour} for every lr given; an lr's colour depends on that lr alone (see `lr_color`)."""
    return {float(lr): lr_color(lr) for lr in sorted(set(map(float, lrs)))}


def _config_colors(configs) -> dict[str, str]:
    names = sorted(set(configs))
    return {name: to_hex(CONFIG_CMAP(i % CONFIG_CMAP.N)) for i, name in enumerate(names)}


# ---------------------------------------------------------------- text fitting
def _text_width_pt(text: str, fontsize: float) -> float:
    """Width in points of one line of `text` in the default font (FreeType metrics, no renderer needed)."""
    ismath = text.count("$") >= 2 and text.count("$") % 2 == 0  # as matplotlib renders it: mathtext
    width, _, _ = text_to_path.get_text_width_height_descent(text, FontProperties(size=fontsize), ismath=ismath)
    return width


def _wrap(text: str, width_pt: float, fontsize: float) -> str:
    """Greedy word wrap so that no line is wider than `width_pt` (a single over-long word keeps its own line);
    mathtext ($...$) must not contain spaces, or it could be split."""
    lines = []
    for paragraph in str(text).split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if line and _text_width_pt(candidate, fontsize) > width_pt:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    return "\n".join(lines)


def _plain(value: float) -> str:
    """0.0005 -> '0.0005' (never 5e-04)."""
    return np.format_float_positional(float(value), trim="-")


def _n_text(ns) -> str:
    """'n=5', or 'n=3-5' where points rest on different numbers of runs."""
    ns = pd.Series(ns).dropna().astype(int)
    if ns.empty:
        return "n=?"
    lo, hi = int(ns.min()), int(ns.max())
    return f"n={lo}" if lo == hi else f"n={lo}\u2013{hi}"


# ---------------------------------------------------------------- frame checks and ordering
def _require(frame: pd.DataFrame, columns: list[str], what: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise LrnoiseError(f"{what} needs a pandas DataFrame with columns {columns}; got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise LrnoiseError(f"{what} needs columns {columns}; missing {missing}")
    if frame.empty:
        raise LrnoiseError(f"{what} got an empty frame; it needs at least one row with columns {columns}")


def _natural_key(name) -> list:
    """'resnet20' < 'resnet110': digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(name))]


def _models(frame: pd.DataFrame) -> list:
    return sorted(frame["model"].unique(), key=_natural_key)


# ---------------------------------------------------------------- figure skeletons
def _grid_shape(n: int) -> tuple[int, int]:
    """1 -> 1x1, 2 -> 1x2, 3-4 -> 2x2, more -> 2 columns."""
    if n <= 1:
        return 1, 1
    if n == 2:
        return 1, 2
    return -(-n // 2), 2


def _figure(width: float, height: float, title: str, legend: str | None) -> Figure:
    """A constrained-layout figure whose suptitle is wrapped to, and centred over, the panel area: with a legend
    on the right the title keeps out of the legend's column (constrained layout puts both at the top)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    panel_width = width - (LEGEND_WIDTH if legend == "right" else 0.0)
    fig.suptitle(
        _wrap(title, 0.94 * panel_width * 72, TITLE_FONTSIZE), fontsize=TITLE_FONTSIZE, x=0.5 * panel_width / width
    )
    return fig


def _panels(n: int, title: str, legend: str | None) -> tuple[Figure, list]:
    """A figure with `n` panels in the paper's grid and a wrapped suptitle.

    legend: "right" or "below" reserves room for an outside figure legend, None for none.
    """
    rows, cols = _grid_shape(n)
    width = cols * PANEL_SIZE[0] + (LEGEND_WIDTH if legend == "right" else 0.0)
    height = rows * PANEL_SIZE[1] + (BOTTOM_LEGEND_HEIGHT if legend == "below" else 0.0) + 0.5
    fig = _figure(width, height, title, legend)
    axes = list(fig.subplots(rows, cols, squeeze=False).flat)
    for ax in axes[n:]:  # an odd panel count leaves the last slot of the grid empty
        fig.delaxes(ax)
    return fig, axes[:n]


def _label_axes(ax, xlabel: str, ylabel: str, title: str | None = None) -> None:
    """Wrapped x/y labels (and panel title) sized to one panel (80 % of PANEL_SIZE, in points)."""
    width, height = 0.8 * PANEL_SIZE[0] * 72, 0.8 * PANEL_SIZE[1] * 72
    ax.set_xlabel(_wrap(xlabel, width, LABEL_FONTSIZE), fontsize=LABEL_FONTSIZE)
    ax.set_ylabel(_wrap(ylabel, height, LABEL_FONTSIZE), fontsize=LABEL_FONTSIZE)
    if title is not None:
        ax.set_title(_wrap(title, width, LABEL_FONTSIZE + 1), fontsize=LABEL_FONTSIZE + 1)
    ax.grid(alpha=0.3)


def _lr_axis(ax, lrs) -> None:
    """Log x axis with one tick per lr, labelled as plain numbers and turned 45 degrees so they never touch."""
    lrs = sorted(set(map(float, lrs)))
    ax.set_xscale("log")
    ax.set_xticks(
        lrs,
        labels=[_plain(lr) for lr in lrs],
        rotation=45,
        ha="right",
        rotation_mode="anchor",
        fontsize=LR_TICK_FONTSIZE,
    )
    ax.xaxis.set_minor_locator(NullLocator())  # a log axis spanning < 1 decade would label minor ticks 6x10^-4


def _outside_legend(fig: Figure, handles, labels, where: str) -> Legend:
    """A figure legend outside the panels: right (labels wrapped to LEGEND_WIDTH less the handle, ~40 pt) or
    below (up to 2 columns across a panel's width, each label wrapped to half of it)."""
    if where == "right":
        labels = [_wrap(label, LEGEND_WIDTH * 72 - 40, LEGEND_FONTSIZE) for label in labels]
        return fig.legend(handles, labels, loc="outside right upper", fontsize=LEGEND_FONTSIZE)
    labels = [_wrap(label, PANEL_SIZE[0] * 72 / 2 - 40, LEGEND_FONTSIZE) for label in labels]
    return fig.legend(handles, labels, loc="outside lower center", fontsize=LEGEND_FONTSIZE, ncols=min(len(labels), 2))


def _sorted_legend(fig: Figure, entries: dict, where: str) -> Legend:
    """entries: {sort key (lr, config name): (handle, label)}; one figure legend in key order."""
    ordered = [entries[key] for key in sorted(entries)]
    return _outside_legend(fig, [handle for handle, _ in ordered], [label for _, label in ordered], where)


def _percent(values) -> np.ndarray:
    return pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float) * 100


def _curve_xy(group: pd.DataFrame, log_x: bool, level_scale: float) -> tuple[np.ndarray, ...]:
    """(x, y %, ci %) of one curve sorted by level. On a linear axis the clean point (level 0, 100 %, no bar) is
    added when absent; a log axis cannot show level 0, so those rows are dropped (the caller draws 100 % as a line).
    """
    group = group.sort_values("level")
    level = group["level"].to_numpy(dtype=float)
    y, ci = _percent(group["normalized_accuracy"]), _percent(group["ci95"])
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

    curves: model, lr, level, normalized_accuracy, ci95, n (runs behind the point). Level 0 is the clean model
    (A = 100 %): drawn as a point on a linear axis, as a dotted line on a log axis (pcm drift time).
    level_scale multiplies the levels for the x axis (default: 100 on a linear axis, eta fraction -> %; 1 on log).
    tick_text(level) names a level (e.g. noise.level_label): a log axis is then ticked at the levels drawn.
    """
    _require(curves, ["model", "lr", "level", "normalized_accuracy", "ci95", "n"], "noise_curves")
    scale = _default_scale(log_x, level_scale)
    models = _models(curves)
    colors = lr_colors(curves["lr"])
    fig, axes = _panels(len(models), title, legend="right")
    legend = {}  # lr -> (handle, label), first seen; one legend for the whole figure, in lr order
    for ax, model in zip(axes, models):
        clean = _level_axis(ax, log_x)
        drawn = []  # x of every point of the panel
        for lr, group in curves[curves["model"] == model].groupby("lr"):
            x, y, ci = _curve_xy(group, log_x, scale)
            label = f"lr {_plain(lr)} ({_n_text(curves.loc[curves['lr'] == lr, 'n'])})"
            handle = ax.errorbar(x, y, yerr=ci, color=colors[float(lr)], marker="o", label=label, **ERRORBAR_STYLE)
            legend.setdefault(float(lr), (handle, label))
            drawn.extend(x)
        if log_x:
            _level_ticks(ax, drawn, tick_text, scale)
        if clean is not None:
            legend.setdefault(np.inf, (clean, "clean model (100 %)"))  # last entry
        _label_axes(ax, level_label, "normalised accuracy (%)", str(model))
    _sorted_legend(fig, legend, "right")
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

    summary: level, normalized_accuracy, ci95. Put A_avr in `title` if wanted. tick_text: as for noise_curves.
    """
    _require(summary, ["level", "normalized_accuracy", "ci95"], "noise_curve")
    fig, (ax,) = _panels(1, title, legend="below")
    clean = _level_axis(ax, log_x)
    scale = _default_scale(log_x, level_scale)
    x, y, ci = _curve_xy(summary, log_x, scale)
    handle = ax.errorbar(x, y, yerr=ci, color=LR_CMAP(0), marker="o", **ERRORBAR_STYLE)
    if log_x:
        _level_ticks(ax, x, tick_text, scale)
    _label_axes(ax, level_label, "normalised accuracy (%)")
    handles, labels = [handle], ["mean over noise draws (bars: 95 % CI)"]
    if clean is not None:
        handles, labels = handles + [clean], labels + ["clean model (100 %)"]
    _outside_legend(fig, handles, labels, "below")
    return fig


# ---------------------------------------------------------------- Figure 3
def optimizers(table: pd.DataFrame, title: str) -> Figure:
    """Grouped bars per optimizer: baseline accuracy a_0 and A_avr (%), 95 % CI bars, n in the tick label.

    table: optimizer, baseline, baseline_ci95, avr, avr_ci95, n (one row per optimizer, in drawing order).
    """
    _require(table, ["optimizer", "baseline", "baseline_ci95", "avr", "avr_ci95", "n"], "optimizers")
    width = max(PANEL_SIZE[0], 0.9 * len(table) + 1.5) + LEGEND_WIDTH
    fig = _figure(width, PANEL_SIZE[1] + 0.6, title, legend="right")
    ax = fig.subplots()
    x = np.arange(len(table))
    series = (
        (-0.2, "baseline", LR_CMAP(0), "baseline accuracy $a_0$"),
        (0.2, "avr", LR_CMAP(1), r"average normalised accuracy $A_\mathrm{avr}$"),
    )
    bars = [
        ax.bar(
            x + offset,
            _percent(table[value]),
            0.38,
            yerr=_percent(table[f"{value}_ci95"]),
            capsize=4,
            color=color,
            label=label,
        )
        for offset, value, color, label in series
    ]
    ax.set_xticks(x, labels=[f"{name}\n(n={int(n)})" for name, n in zip(table["optimizer"], table["n"])])
    tops = np.r_[
        _percent(table["baseline"]) + np.nan_to_num(_percent(table["baseline_ci95"])),
        _percent(table["avr"]) + np.nan_to_num(_percent(table["avr_ci95"])),
    ]
    ax.set_ylim(0, max(105.0, float(np.nanmax(tops, initial=0.0)) + 3))
    _label_axes(ax, "optimizer", "accuracy (%)")
    ax.grid(axis="x", visible=False)
    _outside_legend(fig, bars, [b.get_label() for b in bars], "right")
    return fig


# ---------------------------------------------------------------- Figure 4
def tradeoff(points: pd.DataFrame, title: str, robust_label: str) -> Figure:
    """Per model, against lr (log): baseline accuracy a_0 (%) on the left axis and the robustness measure (%)
    on a twin right axis, both with 95 % t bars (a_0's clipped to [0, 100 %]: an accuracy cannot pass them).

    points: model, lr, baseline, baseline_ci95, robust, robust_ci95, n.
    """
    _require(points, ["model", "lr", "baseline", "baseline_ci95", "robust", "robust_ci95", "n"], "tradeoff")
    models = _models(points)
    fig, axes = _panels(len(models), title, legend="below")
    n = _n_text(points["n"])
    base_color, robust_color = "tab:blue", "tab:red"
    handles = []
    for ax, model in zip(axes, models):
        group = points[points["model"] == model].sort_values("lr")
        lr = group["lr"].to_numpy(dtype=float)
        base = ax.errorbar(
            lr,
            _percent(group["baseline"]),
            yerr=100 * bounded_bars(group["baseline"], group["baseline_ci95"]),
            color=base_color,
            marker="o",
            **ERRORBAR_STYLE,
        )
        twin = ax.twinx()
        robust = twin.errorbar(
            lr,
            _percent(group["robust"]),
            yerr=_percent(group["robust_ci95"]),
            color=robust_color,
            marker="s",
            linestyle="--",
            **ERRORBAR_STYLE,
        )
        handles = handles or [base, robust]
        _label_axes(ax, "learning rate", "baseline accuracy $a_0$ (%)", str(model))
        ax.yaxis.label.set_color(base_color)
        twin.set_ylabel(
            _wrap(robust_label, 0.8 * PANEL_SIZE[1] * 72, LABEL_FONTSIZE), fontsize=LABEL_FONTSIZE, color=robust_color
        )
        _lr_axis(ax, points["lr"])
    _outside_legend(fig, handles, [f"baseline accuracy $a_0$ ({n})", f"{robust_label} ({n})"], "below")
    return fig


# ---------------------------------------------------------------- Figure 5
def noise_models(lines: pd.DataFrame, title: str) -> Figure:
    """A_avr (%) against lr (log), one line per noise configuration with 95 % CI bars, a panel per model.

    lines: config, model, lr, avr, avr_ci95, n.
    """
    _require(lines, ["config", "model", "lr", "avr", "avr_ci95", "n"], "noise_models")
    models = _models(lines)
    colors = _config_colors(lines["config"])
    fig, axes = _panels(len(models), title, legend="right")
    legend = {}
    for ax, model in zip(axes, models):
        for config, group in lines[lines["model"] == model].groupby("config"):
            group = group.sort_values("lr")
            label = f"{config} ({_n_text(lines.loc[lines['config'] == config, 'n'])})"
            handle = ax.errorbar(
                group["lr"].to_numpy(dtype=float),
                _percent(group["avr"]),
                yerr=_percent(group["avr_ci95"]),
                color=colors[config],
                marker="o",
                label=label,
                **ERRORBAR_STYLE,
            )
            legend.setdefault(config, (handle, label))
        _label_axes(ax, "learning rate", r"average normalised accuracy $A_\mathrm{avr}$ (%)", str(model))
        _lr_axis(ax, lines["lr"])
    _sorted_legend(fig, legend, "right")
    return fig


# ---------------------------------------------------------------- Figure 6
def mechanism(points: pd.DataFrame, title: str, x_label: str) -> Figure:
    """A_avr (%) against gradient-noise power (log x), one point per run coloured by lr, a panel per model.

    points: model, lr, x, avr.
    """
    _require(points, ["model", "lr", "x", "avr"], "mechanism")
    models = _models(points)
    colors = lr_colors(points["lr"])
    runs = points.groupby(["model", "lr"]).size().rename("n").reset_index()  # points (runs) per panel and lr
    fig, axes = _panels(len(models), title, legend="right")
    legend = {}
    for ax, model in zip(axes, models):
        for lr, group in points[points["model"] == model].groupby("lr"):
            label = f"lr {_plain(lr)} ({_n_text(runs.loc[runs['lr'] == lr, 'n'])})"
            handle = ax.scatter(
                group["x"].to_numpy(dtype=float), _percent(group["avr"]), color=colors[float(lr)], s=22, label=label
            )
            legend.setdefault(float(lr), (handle, label))
        ax.set_xscale("log")
        _label_axes(ax, x_label, r"average normalised accuracy $A_\mathrm{avr}$ (%)", str(model))
    _sorted_legend(fig, legend, "right")
    return fig


# ---------------------------------------------------------------- Figure 7: eq. 2's collapse


def batch_colors(batch_sizes) -> dict[int, str]:
    """One colour per batch size from its log2 value alone, from a qualitative palette (8 blue, 16 orange,
    32 green, 64 red, ..., 4096 cyan): neighbouring batch sizes never share a hue, and a batch size keeps its
    colour in every figure."""
    palette = colormaps["tab10"]
    return {
        int(b): to_hex(palette(int(np.clip(round(np.log2(b)) - 3, 0, 9)))) for b in sorted(set(map(int, batch_sizes)))
    }


def bounded_bars(mean: pd.Series, half: pd.Series) -> np.ndarray:
    """Asymmetric error bars (2, n) of mean +- half clipped to [0, 1]: a t interval cut at the ends an accuracy
    cannot pass."""
    mean, half = np.asarray(mean, dtype=float), np.nan_to_num(np.asarray(half, dtype=float))
    return np.vstack([np.minimum(half, np.maximum(mean, 0.0)), np.minimum(half, np.maximum(1.0 - mean, 0.0))])


EQ2_AXES = (  # Figure 7's two readings: eq. 2's noise power and its rival, the SDE noise scale
    ("lr^2/B", lambda lr, b: lr**2 / b, r"$\mathrm{lr}^2 / B$ (eq. 2's noise power, up to C)"),
    ("lr/B", lambda lr, b: lr / b, r"$\mathrm{lr} / B$ (the SDE noise scale)"),
)


def eq2_collapse(points: pd.DataFrame, title: str) -> Figure:
    """A_avr (%) against lr^2 / B and against lr / B (log x), a pair of panels per optimizer; each (lr, B)
    configuration is its mean over seeds with a 95 % t interval clipped to [0, 100 %], coloured by batch size,
    its seeds as small dots. Whichever quantity sets A_avr, on its panel the colours fall onto one curve.

    points: optimizer, lr, batch_size, avr (one row per run).
    """
    _require(points, ["optimizer", "lr", "batch_size", "avr"], "eq2_collapse")
    optimizers = [o for o in paper.OPTIMIZERS if o in set(points["optimizer"])] + sorted(
        set(points["optimizer"]) - set(paper.OPTIMIZERS)
    )
    colors = batch_colors(points["batch_size"])
    fig, axes = _panels(len(EQ2_AXES) * len(optimizers), title, legend="right")
    legend = {}
    panels = [(optimizer, axis) for optimizer in optimizers for axis in EQ2_AXES]
    for ax, (optimizer, (name, scale, xlabel)) in zip(axes, panels):
        mine = points[points["optimizer"] == optimizer].assign(
            u=lambda f, scale=scale: scale(f["lr"].astype(float), f["batch_size"].astype(float))
        )
        for batch_size, group in mine.groupby("batch_size"):
            color = colors[int(batch_size)]
            ax.scatter(group["u"], _percent(group["avr"]), color=color, s=8, alpha=0.45)
            means = group.groupby("u")["avr"].agg(["mean", stats.ci95]).reset_index()  # 95 % t over seeds
            label = f"B = {int(batch_size)} ({_n_text(group.groupby('u').size())})"
            handle = ax.errorbar(
                means["u"],
                _percent(means["mean"]),
                yerr=100 * bounded_bars(means["mean"], means["ci95"]),
                color=color,
                marker="o",
                label=label,
                **ERRORBAR_STYLE,
            )
            legend.setdefault(int(batch_size), (handle, label))
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # decade labels only: minor labels overlapped
        _label_axes(ax, xlabel, r"average normalised accuracy $A_\mathrm{avr}$ (%)", f"{optimizer}: {name}")
    _sorted_legend(fig, legend, "right")
    return fig


# ---------------------------------------------------------------- Figure 8: lr tuning vs noise-injection training
def frontier(points: pd.DataFrame, title: str) -> Figure:
    """The accuracy-robustness frontier: A_avr (%) against baseline accuracy a_0 (%), both with 95 % t bars (a_0's
    clipped to [0, 100 %]),
    one line through the lr sweep (clean training, points named by lr) and one through the train-noise sweep
    (at one lr, points named by eta; its eta 0 is the lr sweep's point there, setting ""); a panel per model,
    with the comparison's accuracy target as a dotted vertical line when `points` has a `target` column.

    points: model, method ("lr tuning" | "noise-injection training"), setting (the point's name), baseline,
    baseline_ci95, avr, avr_ci95, n[, target].
    """
    _require(points, ["model", "method", "setting", "baseline", "baseline_ci95", "avr", "avr_ci95", "n"], "frontier")
    models = _models(points)
    fig, axes = _panels(len(models), title, legend="below")
    styles = {"lr tuning": ("tab:blue", "o", "-"), "noise-injection training": ("tab:red", "s", "--")}
    legend = {}
    for ax, model in zip(axes, models):
        mine = points[points["model"] == model]
        if "target" in mine and mine["target"].notna().any():
            handle = ax.axvline(mine["target"].dropna().iloc[0] * 100, color="0.4", linestyle=":", linewidth=1)
            legend.setdefault("target", (handle, "accuracy target"))
        for method, group in mine.groupby("method", sort=True):
            color, marker, line = styles.get(method, ("tab:gray", "^", ":"))  # in sweep order, as given
            label = f"{method} ({_n_text(group['n'])})"
            handle = ax.errorbar(
                _percent(group["baseline"]),
                _percent(group["avr"]),
                xerr=100 * bounded_bars(group["baseline"], group["baseline_ci95"]),  # a_0 cannot pass 100 %
                yerr=_percent(group["avr_ci95"]),
                color=color,
                marker=marker,
                linestyle=line,
                label=label,
                **ERRORBAR_STYLE,
            )
            for _, row in group[group["setting"] != ""].iterrows():
                ax.annotate(
                    str(row["setting"]),
                    (row["baseline"] * 100, row["avr"] * 100),
                    fontsize=7,
                    color=color,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
            legend.setdefault(method, (handle, label))
        _label_axes(ax, "baseline accuracy $a_0$ (%)", r"average normalised accuracy $A_\mathrm{avr}$ (%)", str(model))
    _sorted_legend(fig, legend, "below")
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


# ---------------------------------------------------------------- layout check
def _renderer(fig: Figure):
    """Draws the figure (running the constrained layout) and returns its renderer; Agg when it has no canvas."""
    if not hasattr(fig.canvas, "get_renderer"):
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig)
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def _drawn_ticks(axis) -> list:
    """The ticks an axis draws: those inside its view interval (matplotlib keeps spare Tick objects)."""
    lo, hi = sorted(axis.get_view_interval())
    tol = 1e-9 * max(abs(lo), abs(hi), 1e-300)
    ticks = axis.get_major_ticks(len(axis.get_majorticklocs())) + axis.get_minor_ticks(len(axis.get_minorticklocs()))
    return [t for t in ticks if lo - tol <= t.get_loc() <= hi + tol]


def _panel_name(ax) -> str:
    """An axes' title, or its host's for a twin axes (which shares x with it and has no title)."""
    titles = [a.get_title() for a in [ax, *ax.get_shared_x_axes().get_siblings(ax)] if a.get_title()]
    return titles[0] if titles else f"axes {ax.figure.axes.index(ax)}"


def _drawn_texts(artist, panel: str | None = None) -> list[tuple[Text, str | None]]:
    """(text, panel name) for every visible, non-empty Text under `artist`, skipping hidden parents and
    undrawn ticks; panel is None for figure-level texts (suptitle, figure legends)."""
    if not artist.get_visible():
        return []
    if isinstance(artist, Text):
        return [(artist, panel)] if artist.get_text().strip() else []
    if hasattr(artist, "get_major_ticks") and hasattr(artist, "get_view_interval"):  # an Axis
        children = [artist.label, artist.offsetText] + _drawn_ticks(artist)
    else:
        children = artist.get_children()
    if hasattr(artist, "get_shared_x_axes"):  # an Axes
        panel = _panel_name(artist)
    return [found for child in children for found in _drawn_texts(child, panel)]


def _describe(text: Text, panel: str | None) -> str:
    shown = text.get_text().replace("\n", " ")
    where = f" in panel {panel!r}" if panel else ""
    return f"text {shown[:50] + ('...' if len(shown) > 50 else '')!r}{where}"


def _inside(inner, outer, tol: float = 0.5) -> bool:
    return (
        inner.x0 >= outer.x0 - tol
        and inner.y0 >= outer.y0 - tol
        and inner.x1 <= outer.x1 + tol
        and inner.y1 <= outer.y1 + tol
    )


def _overlap(a, b, tol: float = 0.5) -> bool:
    return a.x0 < b.x1 - tol and b.x0 < a.x1 - tol and a.y0 < b.y1 - tol and b.y0 < a.y1 - tol


def _points_in(points: np.ndarray, box) -> bool:
    points = points[np.all(np.isfinite(points), axis=1)] if len(points) else points
    return bool(len(points)) and bool(
        np.any(
            (points[:, 0] >= box.x0) & (points[:, 0] <= box.x1) & (points[:, 1] >= box.y0) & (points[:, 1] <= box.y1)
        )
    )


def _hits(artist, box, renderer) -> bool:
    """Whether a plotted artist (line, errorbar bars, scatter, bar) has anything drawn inside `box` (display px)."""
    if isinstance(artist, Line2D):
        path = artist.get_transform().transform_path(artist.get_path())
        if artist.get_linestyle() in ("None", "", " ", "none"):
            return _points_in(path.vertices, box)  # markers only (errorbar caps)
        return _points_in(path.vertices, box) or path.intersects_bbox(box, filled=False)
    if isinstance(artist, LineCollection):
        transform = artist.get_transform()
        return any(
            _points_in(transform.transform(seg), box)
            or transform.transform_path(path).intersects_bbox(box, filled=False)
            for seg, path in zip(artist.get_segments(), artist.get_paths())
            if len(seg)
        )
    if isinstance(artist, PathCollection):
        return _points_in(artist.get_offset_transform().transform(artist.get_offsets()), box)
    if isinstance(artist, Rectangle):
        return _overlap(artist.get_window_extent(renderer), box, tol=0.0)
    return False


def _plotted(ax) -> list:
    return [a for a in list(ax.lines) + list(ax.collections) + list(ax.patches) if a.get_visible()]


def _legends(fig: Figure) -> list[Legend]:
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    return [legend for legend in legends if legend.get_visible()]


def _outside_figure(texts, boxes, figure_box) -> list[str]:
    return [
        f"{_describe(*found)} extends outside the figure: text box x {box.x0:.0f}..{box.x1:.0f}, "
        f"y {box.y0:.0f}..{box.y1:.0f} px; figure {figure_box.width:.0f}x{figure_box.height:.0f} px"
        for found, box in zip(texts, boxes)
        if not _inside(box, figure_box)
    ]


def _legend_collisions(fig: Figure, texts, boxes, renderer) -> list[str]:
    """A legend over a plotted artist of any axes, or over a text that is not its own."""
    problems = []
    axes = [ax for ax in fig.axes if ax.get_visible()]
    for legend in _legends(fig):
        legend_box = legend.get_window_extent(renderer)
        names = ", ".join(t.get_text().replace("\n", " ") for t in legend.get_texts())
        names = names[:60] + ("..." if len(names) > 60 else "")
        for ax in axes:
            hit = next((artist for artist in _plotted(ax) if _hits(artist, legend_box, renderer)), None)
            if hit is not None:
                problems.append(f"legend ({names}) covers a {type(hit).__name__} in panel {_panel_name(ax)!r}")
        own = {id(text) for text, _ in _drawn_texts(legend)}
        problems += [
            f"legend ({names}) covers {_describe(*found)}"
            for found, box in zip(texts, boxes)
            if id(found[0]) not in own and _overlap(box, legend_box)
        ]
    return problems


def _text_collisions(fig: Figure, texts, boxes) -> list[str]:
    """Two drawn texts (tick labels of one axis, a label and a neighbour's title, ...) on top of each other;
    legend texts are left to `_legend_collisions`."""
    in_legend = {id(text) for legend in _legends(fig) for text, _ in _drawn_texts(legend)}
    kept = [i for i, (text, _) in enumerate(texts) if id(text) not in in_legend]
    return [
        f"{_describe(*texts[a])} overlaps {_describe(*texts[b])}"
        for i, a in enumerate(kept)
        for b in kept[i + 1 :]
        if _overlap(boxes[a], boxes[b])
    ]


def layout_problems(fig: Figure) -> list[str]:
    """What a reader would see wrong, from matplotlib's own layout after a draw; [] if nothing.

    Checks, on the window extents (display px) after `fig.canvas.draw()`: every drawn text (titles, suptitle,
    axis and tick labels, legend) lies inside the figure; no legend covers a plotted artist (line vertices and
    segments, error bars and caps, scatter points, bars) of any axes or a text other than its own; no two texts
    overlap (e.g. crowded tick labels).
    """
    renderer = _renderer(fig)
    texts = _drawn_texts(fig)
    boxes = [text.get_window_extent(renderer) for text, _ in texts]
    return (
        _outside_figure(texts, boxes, fig.bbox)
        + _legend_collisions(fig, texts, boxes, renderer)
        + _text_collisions(fig, texts, boxes)
    )


__all__ = [
    "LR_CMAP",
    "lr_color",
    "lr_colors",
    "noise_curves",
    "noise_curve",
    "optimizers",
    "tradeoff",
    "noise_models",
    "mechanism",
    "save",
    "layout_problems",
]


LEVEL_AXIS_LABELS = {"eta": "noise form factor eta (%)", "t": "time since programming t (s)"}


def level_axis_label(level_name: str) -> str:
    """The x-axis label of a noise configuration's level axis (eta in %, pcm time in seconds)."""
    return LEVEL_AXIS_LABELS[level_name]
