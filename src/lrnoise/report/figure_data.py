"""The data behind the report's figures, as frames of report.rows' dataclasses: the noise curves (Figures 1-2),
the accuracy / robustness trade-off (Figure 4), A_avr across noise configurations (Figure 5), the mechanism
(Figure 6: A_avr against the gradient-noise power of training), eq. 2's collapse (Figure 7) and the lr-tuning vs
noise-injection frontier (Figure 8). Means with 95 % CIs over seeds; reads no store and draws nothing."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lrnoise import names
from lrnoise.analysis import frontier
from lrnoise.analysis.run_table import frame
from lrnoise.noise import statistics
from lrnoise.report.results import CONFIG, ConfigInfo, clean_runs, learned_runs, level_columns
from lrnoise.report.rows import CurvePoint, Eq2Point, FrontierPoint, MechanismPoint, NoiseModelPoint, TradeoffPoint
from lrnoise.report.tables import cells


def curve_points(runs: pd.DataFrame, info: ConfigInfo, dataset: str) -> pd.DataFrame:
    """Figure 1/2's data: per model, lr and level, the normalised accuracy (mean over runs), its 95 % CI (over
    the runs when several, over the draws of the one run otherwise) and the number of runs."""
    adam = clean_runs(learned_runs(runs))
    adam = adam[(adam["dataset"] == dataset) & (adam["optimizer"] == "adam")]
    rows = []
    for (model, lr), group in adam.groupby(["label", "lr"]):
        for level, column, ci_column in level_columns(info):
            have = group.dropna(subset=[column]) if column in group else group.iloc[0:0]
            if have.empty:
                continue
            values = have[column].to_numpy(dtype=float)
            mean, ci, n = statistics.mean_ci(values)
            if n == 1 and ci_column in have:
                ci = float(np.nan_to_num(have[ci_column].iloc[0]))
            rows.append(CurvePoint(model=model, lr=lr, level=level, normalized_accuracy=mean, ci95=ci, n=n))
    return frame(rows, CurvePoint)


def tradeoff_points(runs: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Figure 4's data: baseline accuracy and A_avr (mean, 95 % CI, n) per model and lr, Adam."""
    adam = clean_runs(learned_runs(runs))
    adam = adam[(adam["dataset"] == dataset) & (adam["optimizer"] == "adam")]
    base, robust = cells(adam, names.BASELINE_ACCURACY), cells(adam, names.AVG_NORMALIZED_ACCURACY)
    merged = base.merge(robust, on=CONFIG, suffixes=("_b", "_r"))
    rows = [
        TradeoffPoint(
            model=r.label,
            lr=r.lr,
            baseline=r.mean_b,
            baseline_ci95=r.ci95_b,
            robust=r.mean_r,
            robust_ci95=r.ci95_r,
            n=r.n_r,
        )
        for r in merged.itertuples()
    ]
    return frame(rows, TradeoffPoint)


def mechanism_points(runs: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Figure 6's data: A_avr against the mean gradient-noise power of training, one point per run."""
    use = clean_runs(learned_runs(runs))
    use = use[use["dataset"] == dataset]
    if names.GRAD_NOISE_POWER_MEAN not in use or names.AVG_NORMALIZED_ACCURACY not in use:
        return frame([], MechanismPoint)
    use = use.dropna(subset=[names.GRAD_NOISE_POWER_MEAN, names.AVG_NORMALIZED_ACCURACY])
    points = zip(use["label"], use["lr"], use[names.GRAD_NOISE_POWER_MEAN], use[names.AVG_NORMALIZED_ACCURACY])
    return frame([MechanismPoint(model=m, lr=lr, x=x, avr=avr) for m, lr, x, avr in points], MechanismPoint)


def eq2_points(runs: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Figure 7's data: one row per clean run of an (optimizer) grid the eq. 2 test covers (>= 2 lrs, >= 2 batch
    sizes)."""
    use = clean_runs(learned_runs(runs))
    use = (
        use[use["dataset"] == dataset].dropna(subset=[names.AVG_NORMALIZED_ACCURACY, "batch_size"])
        if names.AVG_NORMALIZED_ACCURACY in use
        else use.iloc[0:0]
    )
    tested = [o for o, g in use.groupby("optimizer") if g["lr"].nunique() > 1 and g["batch_size"].nunique() > 1]
    use = use[use["optimizer"].isin(tested)]
    points = zip(use["optimizer"], use["lr"], use["batch_size"], use[names.AVG_NORMALIZED_ACCURACY])
    return frame([Eq2Point(optimizer=o, lr=lr, batch_size=b, avr=avr) for o, lr, b, avr in points], Eq2Point)


def frontier_points(runs: pd.DataFrame, comparisons: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Figure 8's data: per frontier row of `dataset` (analysis.frontier), each configuration of its lr sweep and
    of its train-noise sweep as mean baseline and A_avr with 95 % CIs."""
    use = learned_runs(runs)
    rows = []
    for f in comparisons[comparisons["dataset"] == dataset].itertuples():
        mine = use[
            (use["dataset"] == dataset)
            & (use["model"] == f.model)
            & (use["optimizer"] == f.optimizer)
            & ((use["batch_size"] == f.batch_size) | pd.isna(f.batch_size))
        ].dropna(subset=[names.AVG_NORMALIZED_ACCURACY])
        panel = f"{f.model} {f.optimizer}" + (f" B={int(f.batch_size)}" if pd.notna(f.batch_size) else "")
        sweeps = (
            (frontier.LR_TUNING, mine[mine["train_noise"] == 0], "lr", lambda v: f"lr {v:g}"),
            (
                frontier.NOISE_TRAINING,
                mine[mine["lr"] == f.noise_lr],
                "train_noise",
                lambda v: f"eta {v:g}" if v else "",
            ),
        )  # eta 0 is the lr sweep's point at that lr: named once
        for method, sweep, axis, name in sweeps:
            for value, group in sweep.groupby(axis):
                base, base_ci, n = statistics.mean_ci(group[names.BASELINE_ACCURACY])
                avr, avr_ci, _ = statistics.mean_ci(group[names.AVG_NORMALIZED_ACCURACY])
                rows.append(
                    FrontierPoint(
                        model=panel,
                        method=method,
                        setting=name(value),
                        baseline=base,
                        baseline_ci95=base_ci,
                        avr=avr,
                        avr_ci95=avr_ci,
                        n=n,
                        target=f.target_accuracy,
                    )
                )
    return frame(rows, FrontierPoint)


def noise_model_lines(configs: list) -> dict[str, pd.DataFrame]:
    """Figure 5's data per dataset: A_avr (mean, CI, n) against lr, a line per configuration (each with .info and
    .runs: assembly.ConfigReport), Adam."""
    points = {}
    for report in configs:
        adam = clean_runs(learned_runs(report.runs))
        adam = adam[adam["optimizer"] == "adam"]
        for row in cells(adam, names.AVG_NORMALIZED_ACCURACY).itertuples():
            points.setdefault(row.dataset, []).append(
                NoiseModelPoint(
                    config=report.info.name, model=row.label, lr=row.lr, avr=row.mean, avr_ci95=row.ci95, n=row.n
                )
            )
    return {dataset: frame(rows, NoiseModelPoint) for dataset, rows in points.items()}
