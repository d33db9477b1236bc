"""Which figures a report holds, drawn from report.figure_data's frames with their titles, keyed by file stem:
one noise configuration's Figures 1, 3, 4, 6, 7 and 8, as its runs span them (`config_figures`), and Figure 5
across configurations (`across_figures`). Nothing is written: assembly.write saves them."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from lrnoise.noise import noise_config
from lrnoise.report import figures, figures_mechanism
from lrnoise.report.figure_data import (
    curve_points,
    eq2_points,
    frontier_points,
    mechanism_points,
    noise_model_lines,
    tradeoff_points,
)
from lrnoise.report.results import ConfigInfo


def config_figures(
    joined: pd.DataFrame, info: ConfigInfo, optimizers: pd.DataFrame, frontier: pd.DataFrame
) -> dict[str, Figure]:
    """{file stem: Figure} of one configuration: `joined` its runs (results.join), `optimizers` its optimizer
    table (tables.optimizer_table), `frontier` its frontier verdicts (analysis.frontier)."""
    figs = {}
    if len(optimizers):
        first = optimizers.iloc[0]
        figs["fig3_optimizers"] = figures.optimizers(
            optimizers,
            f"Figure 3: optimizers, {first['model']} on {first['dataset']}, lr {first['lr']:g} ({info.name}; "
            "bars: 95 % CI over seeds)",
        )
    level_label = figures.level_axis_label(info.level_name)
    for dataset in sorted(joined[joined["optimizer"] == "adam"]["dataset"].unique()):
        curves = curve_points(joined, info, dataset)
        if len(curves):
            figs[f"fig1_noise_curves_{dataset}"] = figures.noise_curves(
                curves,
                f"Normalised accuracy vs {level_label} ({dataset}, Adam, {info.name}; bars: 95 % CI)",
                level_label,
                log_x=info.level_name == "t",
                tick_text=lambda level: noise_config.level_label(info.level_name, level),
            )
        points = tradeoff_points(joined, dataset)
        if len(points):
            figs[f"fig4_tradeoff_{dataset}"] = figures.tradeoff(
                points,
                f"Accuracy / noise-resistance trade-off vs lr ({dataset}, Adam, {info.name}; bars: 95 % CI)",
                "A_avr",
            )
        mech = mechanism_points(joined, dataset)
        if len(mech):
            figs[f"fig6_mechanism_{dataset}"] = figures_mechanism.mechanism(
                mech,
                f"A_avr vs gradient-noise power lr^2 C / B, mean over training ({dataset}, {info.name})",
                "gradient-noise power (eq. 2 bound)",
            )
    for dataset in sorted(joined["dataset"].unique()):
        points = eq2_points(joined, dataset)
        if len(points):
            figs[f"fig7_eq2_{dataset}"] = figures_mechanism.eq2_collapse(
                points,
                f"A_avr vs lr^2 / B (eq. 2) and vs lr / B (SDE noise scale), coloured by batch size: one curve on "
                f"the panel of the quantity that sets A_avr ({dataset}, {info.name}; bars: 95 % CI over seeds)",
            )
        points = frontier_points(joined, frontier, dataset)
        if len(points):
            figs[f"fig8_frontier_{dataset}"] = figures_mechanism.frontier(
                points,
                f"Accuracy-robustness frontier: lr tuning vs noise-injection training ({dataset}, "
                f"{info.name}; bars: 95 % CI over seeds)",
            )
    return figs


def across_figures(configs: list) -> dict[str, Figure]:
    """{file stem: Figure} across configurations (assembly.ConfigReport each): Figure 5 per dataset, when there
    are several configurations."""
    if len(configs) < 2:
        return {}
    return {
        f"fig5_noise_models_{name}": figures.noise_models(
            lines,
            f"Does the lr effect survive hardware noise? A_avr vs lr per noise configuration ({name}, "
            "Adam; bars: 95 % CI)",
        )
        for name, lines in noise_model_lines(configs).items()
    }
