"""The calibration's figures on residuals resampled from real studies (benchmarks/residuals.csv): every verdict
with a test on the residual bootstrap and under the spread stress (calibration_robust.residual_draw,
cell_spread_draw), and the fashion preset's primary verdict on its own study's residuals. Called by
calibration.py, whose `add` records each figure."""

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

import calibration_robust as off  # noqa: E402

from lrnoise import names  # noqa: E402
from lrnoise.analysis import lr_claims  # noqa: E402

SPREAD_STRESS = ", each cell a real cell's sample sd"  # off.cell_spread_draw: the spreads far more unequal


def residual_figures(studies: int, rng, add) -> None:
    """False alarms of every verdict with a test on the digits studies' residuals (bootstrap and stress), the
    trend's power, the demo report's family-wise rate; then the fashion figures."""
    if not off.RESIDUALS.exists():
        print("benchmarks/residuals.csv missing: run benchmarks/residuals.py on finished studies", flush=True)
        return
    avr, pcm, base = (
        off.residual_pool(names.AVG_NORMALIZED_ACCURACY, off.PAPER),
        off.residual_pool(names.AVG_NORMALIZED_ACCURACY, off.PCM),
        off.residual_pool(names.BASELINE_ACCURACY),
    )
    for name, (cells, seeds, verdict) in off.residual_verdicts().items():
        design = f"{len(cells)} cells x {seeds} seeds, real residuals, 1 run in 5 cells dropped"
        for stress, draw, key in (
            ("", off.residual_draw(avr), "residual_resampled_"),
            (SPREAD_STRESS, off.cell_spread_draw(avr), "residual_spread_"),
        ):
            value = off.resampled(studies, verdict, cells, seeds, np.full(len(cells), 0.7), draw, rng)
            add(name, design + stress, "none", "false alarm", value, "<= 0.06", key=key + name)
    cells, seeds, verdict = off.residual_verdicts()["trend"]
    if pcm:  # PCM's A_avr near its ceiling: only where the residuals come from a study that evaluated PCM
        for stress, draw, key in (
            ("", off.residual_draw(pcm), "residual_resampled_trend_pcm"),
            (SPREAD_STRESS, off.cell_spread_draw(pcm), "residual_spread_trend_pcm"),
        ):
            pcm_alarm = off.resampled(studies, verdict, cells, seeds, np.full(6, 0.97), draw, rng)
            add(
                "trend",
                "6 lrs x 3 seeds, PCM residuals at 97 %" + stress,
                "none",
                "false alarm",
                pcm_alarm,
                "<= 0.06",
                key=key,
            )

    def base_verdict(runs):
        return lr_claims.trend(runs, names.BASELINE_ACCURACY)["verdict"] != lr_claims.NO_TREND

    for stress, draw, key in (
        ("", off.residual_draw(base), "residual_resampled_baseline_trend"),
        (SPREAD_STRESS, off.cell_spread_draw(base), "residual_spread_baseline_trend"),
    ):
        base_alarm = off.resampled(studies, base_verdict, cells, seeds, np.full(6, 0.7), draw, rng)
        design = "6 lrs x 3 seeds, real baseline residuals (ties)" + stress
        add("baseline trend", design, "none", "false alarm", base_alarm, "<= 0.06", key=key)
    planted = off.resampled(studies, verdict, cells, seeds, 0.7 + 0.01 * np.arange(6), off.residual_draw(avr), rng)
    add("trend", "6 lrs x 3 seeds, real residuals", "+1 pt per lr step", "power", planted, None)
    pcm_draw = off.residual_draw(pcm) if pcm else off.normal_draw([0.01], shared=0.0)
    any_primary, _ = off.family_wise(studies, off.demo_report, rng, (off.residual_draw(avr), pcm_draw))
    add(
        "primary family (Holm)",
        "demo: the whole report, real residuals",
        "none",
        ">= 1 false primary",
        any_primary,
        "<= 0.06",
        key="residual_resampled_family_demo",
    )
    fashion_figures(studies, rng, add)


def fashion_figures(studies: int, rng, add) -> None:
    """The fashion preset's primary verdict (the lr trend of A_avr, 6 lrs x 3 seeds) on its own study's residuals
    (the residual bootstrap, and the cells' own spreads as a stress): false alarm, power and coverage, and the
    whole report's family-wise rate."""
    avr, pcm = (off.residual_pool(names.AVG_NORMALIZED_ACCURACY, c, studies=("fashion",)) for c in (off.PAPER, off.PCM))
    if not avr:
        print("benchmarks/residuals.csv has no fashion study: run benchmarks/residuals.py on its store", flush=True)
        return
    avr_design = "fashion: 6 lrs x 3 seeds, its own residuals"
    for planted, step, coverage_key in (
        ("none", 0.0, "fashion_trend_coverage_null"),
        ("+1 pt per lr step", 0.01, "fashion_trend_coverage_1pt"),
        ("+2 pt per lr step", 0.02, None),
    ):
        named, covered = off.trend_resampled(studies, 3, step, off.residual_draw(avr), rng)
        if step == 0:
            add("trend", avr_design, planted, "false alarm", named, "<= 0.06", key="fashion_trend_false_alarm")
        else:
            add("trend", avr_design, planted, "power", named, None)
        add("trend", avr_design, planted, "coverage", covered, ">= 0.90", key=coverage_key)
    named, _ = off.trend_resampled(studies, 3, 0.0, off.cell_spread_draw(avr), rng)
    add("trend", avr_design + SPREAD_STRESS, "none", "false alarm", named, "<= 0.06")
    pcm_design = "fashion: 6 lrs x 3 seeds, its PCM residuals at 97 %"
    for stress, draw, key in (
        ("", off.residual_draw(pcm), "fashion_trend_false_alarm_pcm"),
        (SPREAD_STRESS, off.cell_spread_draw(pcm), None),
    ):
        pcm_alarm = off.resampled(studies, off.trend_named, off.DEMO_CELLS, 3, np.full(6, 0.97), draw, rng)
        add("trend", pcm_design + stress, "none", "false alarm", pcm_alarm, "<= 0.06", key=key)
    any_primary, _ = off.family_wise(studies, off.fashion_report, rng, (off.residual_draw(avr), off.residual_draw(pcm)))
    add(
        "primary family (Holm)",
        "fashion: the whole report, its own residuals",
        "none",
        ">= 1 false primary",
        any_primary,
        "<= 0.06",
        key="fashion_family_wise",
    )
