"""The figures' shared look: the colours (an lr, a batch size, a noise configuration each keep theirs in every
figure), text wrapped to the room it has (FreeType metrics, no renderer), the panel grid with its wrapped
suptitle, axis labels, lr axes, legends outside the panels, and percent and clipped error bars. Used by
report.figures and report.figures_mechanism; never pyplot, never `matplotlib.use`."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import ListedColormap, to_hex
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.legend import Legend
from matplotlib.textpath import text_to_path
from matplotlib.ticker import NullLocator

from lrnoise import paper
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


def config_colors(configs) -> dict[str, str]:
    """{noise configuration name: hex colour}, in sorted name order on CONFIG_CMAP."""
    names = sorted(set(configs))
    return {name: to_hex(CONFIG_CMAP(i % CONFIG_CMAP.N)) for i, name in enumerate(names)}


def batch_colors(batch_sizes) -> dict[int, str]:
    """One colour per batch size from its log2 value alone, from a qualitative palette (8 blue, 16 orange,
    32 green, 64 red, ..., 4096 cyan): neighbouring batch sizes never share a hue, and a batch size keeps its
    colour in every figure."""
    palette = colormaps["tab10"]
    return {
        int(b): to_hex(palette(int(np.clip(round(np.log2(b)) - 3, 0, 9)))) for b in sorted(set(map(int, batch_sizes)))
    }


# ---------------------------------------------------------------- text fitting
def _text_width_pt(text: str, fontsize: float) -> float:
    """Width in points of one line of `text` in the default font (FreeType metrics, no renderer needed)."""
    ismath = text.count("$") >= 2 and text.count("$") % 2 == 0  # as matplotlib renders it: mathtext
    width, _, _ = text_to_path.get_text_width_height_descent(text, FontProperties(size=fontsize), ismath=ismath)
    return width


def wrap(text: str, width_pt: float, fontsize: float) -> str:
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


def plain(value: float) -> str:
    """0.0005 -> '0.0005' (never 5e-04)."""
    return np.format_float_positional(float(value), trim="-")


def n_text(ns) -> str:
    """'n=5', or 'n=3-5' where points rest on different numbers of runs."""
    ns = pd.Series(ns).dropna().astype(int)
    if ns.empty:
        return "n=?"
    lo, hi = int(ns.min()), int(ns.max())
    return f"n={lo}" if lo == hi else f"n={lo}\u2013{hi}"


# ---------------------------------------------------------------- frame checks and ordering
def require(frame: pd.DataFrame, columns: list[str], what: str) -> None:
    """A one-line LrnoiseError unless `frame` is a non-empty DataFrame with `columns` (what the figure `what` draws)."""
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


def model_order(frame: pd.DataFrame) -> list:
    """The frame's models (a panel each) in natural order."""
    return sorted(frame["model"].unique(), key=_natural_key)


# ---------------------------------------------------------------- figure skeletons
def _grid_shape(n: int) -> tuple[int, int]:
    """1 -> 1x1, 2 -> 1x2, 3-4 -> 2x2, more -> 2 columns."""
    if n <= 1:
        return 1, 1
    if n == 2:
        return 1, 2
    return -(-n // 2), 2


def new_figure(width: float, height: float, title: str, legend: str | None) -> Figure:
    """A constrained-layout figure whose suptitle is wrapped to, and centred over, the panel area: with a legend
    on the right the title keeps out of the legend's column (constrained layout puts both at the top)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    panel_width = width - (LEGEND_WIDTH if legend == "right" else 0.0)
    fig.suptitle(
        wrap(title, 0.94 * panel_width * 72, TITLE_FONTSIZE), fontsize=TITLE_FONTSIZE, x=0.5 * panel_width / width
    )
    return fig


def panels(n: int, title: str, legend: str | None) -> tuple[Figure, list]:
    """A figure with `n` panels in the paper's grid and a wrapped suptitle.

    legend: "right" or "below" reserves room for an outside figure legend, None for none.
    """
    rows, cols = _grid_shape(n)
    width = cols * PANEL_SIZE[0] + (LEGEND_WIDTH if legend == "right" else 0.0)
    height = rows * PANEL_SIZE[1] + (BOTTOM_LEGEND_HEIGHT if legend == "below" else 0.0) + 0.5
    fig = new_figure(width, height, title, legend)
    axes = list(fig.subplots(rows, cols, squeeze=False).flat)
    for ax in axes[n:]:  # an odd panel count leaves the last slot of the grid empty
        fig.delaxes(ax)
    return fig, axes[:n]


def label_axes(ax, xlabel: str, ylabel: str, title: str | None = None) -> None:
    """Wrapped x/y labels (and panel title) sized to one panel (80 % of PANEL_SIZE, in points)."""
    width, height = 0.8 * PANEL_SIZE[0] * 72, 0.8 * PANEL_SIZE[1] * 72
    ax.set_xlabel(wrap(xlabel, width, LABEL_FONTSIZE), fontsize=LABEL_FONTSIZE)
    ax.set_ylabel(wrap(ylabel, height, LABEL_FONTSIZE), fontsize=LABEL_FONTSIZE)
    if title is not None:
        ax.set_title(wrap(title, width, LABEL_FONTSIZE + 1), fontsize=LABEL_FONTSIZE + 1)
    ax.grid(alpha=0.3)


def lr_axis(ax, lrs) -> None:
    """Log x axis with one tick per lr, labelled as plain numbers and turned 45 degrees so they never touch."""
    lrs = sorted(set(map(float, lrs)))
    ax.set_xscale("log")
    ax.set_xticks(
        lrs,
        labels=[plain(lr) for lr in lrs],
        rotation=45,
        ha="right",
        rotation_mode="anchor",
        fontsize=LR_TICK_FONTSIZE,
    )
    ax.xaxis.set_minor_locator(NullLocator())  # a log axis spanning < 1 decade would label minor ticks 6x10^-4


def outside_legend(fig: Figure, handles, labels, where: str) -> Legend:
    """A figure legend outside the panels: right (labels wrapped to LEGEND_WIDTH less the handle, ~40 pt) or
    below (up to 2 columns across a panel's width, each label wrapped to half of it)."""
    if where == "right":
        labels = [wrap(label, LEGEND_WIDTH * 72 - 40, LEGEND_FONTSIZE) for label in labels]
        return fig.legend(handles, labels, loc="outside right upper", fontsize=LEGEND_FONTSIZE)
    labels = [wrap(label, PANEL_SIZE[0] * 72 / 2 - 40, LEGEND_FONTSIZE) for label in labels]
    return fig.legend(handles, labels, loc="outside lower center", fontsize=LEGEND_FONTSIZE, ncols=min(len(labels), 2))


def sorted_legend(fig: Figure, entries: dict, where: str) -> Legend:
    """entries: {sort key (lr, config name): (handle, label)}; one figure legend in key order."""
    ordered = [entries[key] for key in sorted(entries)]
    return outside_legend(fig, [handle for handle, _ in ordered], [label for _, label in ordered], where)


def percent(values) -> np.ndarray:
    """Fractions as an array in % (NaN where not a number)."""
    return pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float) * 100


def bounded_bars(mean: pd.Series, half: pd.Series) -> np.ndarray:
    """Asymmetric error bars (2, n) of mean +- half clipped to [0, 1]: a t interval cut at the ends an accuracy
    cannot pass."""
    mean, half = np.asarray(mean, dtype=float), np.nan_to_num(np.asarray(half, dtype=float))
    return np.vstack([np.minimum(half, np.maximum(mean, 0.0)), np.minimum(half, np.maximum(1.0 - mean, 0.0))])
