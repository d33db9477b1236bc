"""The report's figures of the mechanism behind the lr effect, as pure functions (tidy frame -> Figure, the
rows those of report.rows): A_avr against the gradient-noise power measured in training (Figure 6), eq. 2's
collapse onto lr^2 / B against its rival lr / B (Figure 7), and the accuracy-robustness frontier of lr tuning
against noise-injection training (Figure 8). Drawn in report.plot_style's look; never pyplot."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from lrnoise import paper
from lrnoise.analysis.run_table import columns
from lrnoise.noise import statistics
from lrnoise.report.plot_style import (
    ERRORBAR_STYLE,
    batch_colors,
    bounded_bars,
    label_axes,
    lr_colors,
    model_order,
    n_text,
    panels,
    percent,
    plain,
    require,
    sorted_legend,
)
from lrnoise.report.rows import Eq2Point, FrontierPoint, MechanismPoint


# ---------------------------------------------------------------- Figure 6
def mechanism(points: pd.DataFrame, title: str, x_label: str) -> Figure:
    """A_avr (%) against gradient-noise power (log x), one point per run coloured by lr, a panel per model.

    points: rows.MechanismPoint's columns (model, lr, x, avr).
    """
    require(points, columns(MechanismPoint), "mechanism")
    models = model_order(points)
    colors = lr_colors(points["lr"])
    runs = points.groupby(["model", "lr"]).size().rename("n").reset_index()  # points (runs) per panel and lr
    fig, axes = panels(len(models), title, legend="right")
    legend = {}
    for ax, model in zip(axes, models):
        for lr, group in points[points["model"] == model].groupby("lr"):
            label = f"lr {plain(lr)} ({n_text(runs.loc[runs['lr'] == lr, 'n'])})"
            handle = ax.scatter(
                group["x"].to_numpy(dtype=float), percent(group["avr"]), color=colors[float(lr)], s=22, label=label
            )
            legend.setdefault(float(lr), (handle, label))
        ax.set_xscale("log")
        label_axes(ax, x_label, r"average normalised accuracy $A_\mathrm{avr}$ (%)", str(model))
    sorted_legend(fig, legend, "right")
    return fig


# ---------------------------------------------------------------- Figure 7: eq. 2's collapse
EQ2_AXES = (  # Figure 7's two readings: eq. 2's noise power and its rival, the SDE noise scale
    ("lr^2/B", lambda lr, b: lr**2 / b, r"$\mathrm{lr}^2 / B$ (eq. 2's noise power, up to C)"),
    ("lr/B", lambda lr, b: lr / b, r"$\mathrm{lr} / B$ (the SDE noise scale)"),
)


def eq2_collapse(points: pd.DataFrame, title: str) -> Figure:
    """A_avr (%) against lr^2 / B and against lr / B (log x), a pair of panels per optimizer; each (lr, B)
    configuration is its mean over seeds with a 95 % t interval clipped to [0, 100 %], coloured by batch size,
    its seeds as small dots. Whichever quantity sets A_avr, on its panel the colours fall onto one curve.

    points: rows.Eq2Point's columns (optimizer, lr, batch_size, avr), one row per run.
    """
    require(points, columns(Eq2Point), "eq2_collapse")
    optimizers = [o for o in paper.OPTIMIZERS if o in set(points["optimizer"])] + sorted(
        set(points["optimizer"]) - set(paper.OPTIMIZERS)
    )
    colors = batch_colors(points["batch_size"])
    fig, axes = panels(len(EQ2_AXES) * len(optimizers), title, legend="right")
    legend = {}
    slots = [(optimizer, axis) for optimizer in optimizers for axis in EQ2_AXES]
    for ax, (optimizer, (name, scale, xlabel)) in zip(axes, slots):
        mine = points[points["optimizer"] == optimizer].assign(
            u=lambda f, scale=scale: scale(f["lr"].astype(float), f["batch_size"].astype(float))
        )
        for batch_size, group in mine.groupby("batch_size"):
            color = colors[int(batch_size)]
            ax.scatter(group["u"], percent(group["avr"]), color=color, s=8, alpha=0.45)
            means = group.groupby("u")["avr"].agg(["mean", statistics.ci95]).reset_index()  # 95 % t over seeds
            label = f"B = {int(batch_size)} ({n_text(group.groupby('u').size())})"
            handle = ax.errorbar(
                means["u"],
                percent(means["mean"]),
                yerr=100 * bounded_bars(means["mean"], means["ci95"]),
                color=color,
                marker="o",
                label=label,
                **ERRORBAR_STYLE,
            )
            legend.setdefault(int(batch_size), (handle, label))
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # decade labels only: minor labels overlapped
        label_axes(ax, xlabel, r"average normalised accuracy $A_\mathrm{avr}$ (%)", f"{optimizer}: {name}")
    sorted_legend(fig, legend, "right")
    return fig


# ---------------------------------------------------------------- Figure 8: lr tuning vs noise-injection training
def frontier(points: pd.DataFrame, title: str) -> Figure:
    """The accuracy-robustness frontier: A_avr (%) against baseline accuracy a_0 (%), both with 95 % t bars (a_0's
    clipped to [0, 100 %]), one line through the lr sweep (clean training, points named by lr) and one through the
    train-noise sweep (at one lr, points named by eta; its eta 0 is the lr sweep's point there, setting ""); a
    panel per model, with the comparison's accuracy target as a dotted vertical line where `target` is given.

    points: rows.FrontierPoint's columns (model, method: "lr tuning" | "noise-injection training", setting: the
    point's name, baseline, baseline_ci95, avr, avr_ci95, n, target: NaN for none).
    """
    require(points, columns(FrontierPoint), "frontier")
    models = model_order(points)
    fig, axes = panels(len(models), title, legend="below")
    styles = {"lr tuning": ("tab:blue", "o", "-"), "noise-injection training": ("tab:red", "s", "--")}
    legend = {}
    for ax, model in zip(axes, models):
        mine = points[points["model"] == model]
        if mine["target"].notna().any():
            handle = ax.axvline(mine["target"].dropna().iloc[0] * 100, color="0.4", linestyle=":", linewidth=1)
            legend.setdefault("target", (handle, "accuracy target"))
        for method, group in mine.groupby("method", sort=True):
            color, marker, line = styles.get(method, ("tab:gray", "^", ":"))  # in sweep order, as given
            label = f"{method} ({n_text(group['n'])})"
            handle = ax.errorbar(
                percent(group["baseline"]),
                percent(group["avr"]),
                xerr=100 * bounded_bars(group["baseline"], group["baseline_ci95"]),  # a_0 cannot pass 100 %
                yerr=percent(group["avr_ci95"]),
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
        label_axes(ax, "baseline accuracy $a_0$ (%)", r"average normalised accuracy $A_\mathrm{avr}$ (%)", str(model))
    sorted_legend(fig, legend, "below")
    return fig
