"""The effects of the other training axes on A_avr, lr held apart: batch size and train noise (axis_claims, one
pooled test per group of runs that differ only in lr, that axis and seed), and whether batch size moves A_avr
differently for two optimizers (batch_size_interactions). Numpy and pandas: no MLflow, no figures.

An axis effect is the least-squares slope of the cell means on the axis (per doubling of B, per +0.1 train-noise
eta: AXIS_UNITS) with each lr its own intercept, tested as one Welch contrast of the cell means (each cell its own
spread: lrnoise.analysis.cellfit), with its p and mde. Each table's row is a dataclass whose fields are its
columns (AxisClaimRow, InteractionRow).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lrnoise import grid, names
from lrnoise.analysis import cellfit, intervals, run_table
from lrnoise.analysis.run_table import NAN, TOO_FEW_SEEDS
from lrnoise.errors import LrnoiseError

NO_AXIS_EFFECT = "no clear effect"
AXIS_UNITS = {  # each axis's effect is stated per step of this size (x as the pooled test sees it, and its words)
    "batch_size": (lambda b: np.log2(b), "per doubling of B"),
    "train_noise": (lambda eta: eta / 0.1, "per +0.1 train-noise eta"),
}


@dataclass(kw_only=True)
class AxisClaimRow:
    """One row of axis_claims(): a group of runs that differ only in lr, the axis and seed, and the axis's pooled
    effect on A_avr (avr_*) and on the baseline accuracy (baseline_*), in accuracy per step of AXIS_UNITS. The
    fields are the table's columns, in order; the swept axis's own column and lr read NaN (pooled)."""

    axis: str
    dataset: str
    model: str
    optimizer: str
    lr: float
    batch_size: float
    train_noise: float
    budget: str
    n_runs: int
    n_lrs: int
    n_levels: int  # values of the axis
    seeds_per_cell: str
    unit: str  # the step of the effect, in words
    avr_effect: float = NAN
    avr_ci_low: float = NAN
    avr_ci_high: float = NAN
    avr_p: float = NAN
    avr_mde: float = NAN
    avr_verdict: str
    baseline_effect: float = NAN
    baseline_ci_low: float = NAN
    baseline_ci_high: float = NAN
    baseline_p: float = NAN
    baseline_mde: float = NAN
    baseline_verdict: str


AXIS_CLAIM_COLUMNS = run_table.columns(AxisClaimRow)


def axis_weights(cells: pd.DataFrame, axis: str) -> np.ndarray:
    """(cells,) the contrast of the cell means that is the least-squares slope on the axis (AXIS_UNITS) with each
    lr its own intercept."""
    lr_columns = (cells["lr"].to_numpy()[:, None] == np.unique(cells["lr"])[None, :]).astype(float)
    design = np.column_stack([lr_columns, AXIS_UNITS[axis][0](cells[axis].to_numpy(dtype=float))])
    return np.linalg.pinv(design)[-1]


def _axis_effect(group: pd.DataFrame, value: str, axis: str) -> dict:
    """The pooled effect of `axis` on `value` over every lr of `group` (axis_weights) with its Welch t interval,
    p and mde (cellfit: each cell its own spread), and its verdict; only the verdict TOO_FEW_SEEDS when a cell
    has a single run."""
    fitted = cellfit.fit(group, value, ["lr", axis])
    if fitted is None:
        return {"verdict": TOO_FEW_SEEDS}
    test = fitted.t(axis_weights(fitted.cells, axis))
    words = intervals.verdict_words(
        test["ci_low"], test["ci_high"], f"falls with {axis}", f"rises with {axis}", NO_AXIS_EFFECT
    )
    return {"effect": test["estimate"], **{k: test[k] for k in ("ci_low", "ci_high", "p", "mde")}, "verdict": words}


def axis_claims(runs: pd.DataFrame, axis: str, min_levels: int = 2) -> pd.DataFrame:
    """The effect of `axis` (batch_size or train_noise) on A_avr and on the baseline accuracy: one pooled test
    per group of runs that differ only in lr, that axis and their seed (>= min_levels values of the axis at some
    lr), each lr its own intercept (_axis_effect). The effect is in accuracy (a fraction; x100: points) per step
    of AXIS_UNITS, with its 95 % t interval. verdict: "falls with <axis>" when the interval is below 0, "rises
    with <axis>" above, else NO_AXIS_EFFECT; "too few seeds" when a cell has a single run. The budget is part of
    the group: under steps a larger batch also saw more examples, under epochs it took fewer updates, and the
    two are never pooled. The swept axis's own column and lr read NaN (columns: AXIS_CLAIM_COLUMNS, the fields
    of AxisClaimRow)."""
    if axis not in AXIS_UNITS:
        raise LrnoiseError(f"unknown axis {axis!r}: choose one of {', '.join(AXIS_UNITS)} (lr: claims())")
    base_name, avr_name = names.BASELINE_ACCURACY, names.AVG_NORMALIZED_ACCURACY
    run_table.require(runs, "dataset", "model", "optimizer", "lr", base_name, avr_name)
    kept = run_table.evaluated_runs(runs)
    fixed = ["dataset", "model", "optimizer", *[a for a in grid.AXES if a not in (axis, "lr")], "budget"]
    rows = []
    for key, group in kept.groupby(fixed, sort=True, dropna=False):
        varied = group.groupby("lr")[axis].nunique()
        group = group[group["lr"].isin(varied[varied >= min_levels].index)]  # lrs with the axis varied
        if group.empty:
            continue
        row = AxisClaimRow(
            axis=axis,
            **dict(zip(fixed, key)),
            lr=NAN,
            **{axis: NAN},
            n_runs=len(group),
            n_lrs=group["lr"].nunique(),
            n_levels=group[axis].nunique(),
            seeds_per_cell=run_table.count_range(group.groupby(["lr", axis]).size()),
            unit=AXIS_UNITS[axis][1],
            **run_table.prefixed("avr", _axis_effect(group, avr_name, axis), AxisClaimRow),
            **run_table.prefixed("baseline", _axis_effect(group, base_name, axis), AxisClaimRow),
        )
        rows.append(row)
    return run_table.frame(rows, AxisClaimRow)


# ---------------------------------------------------------------- optimizer x batch size
@dataclass(kw_only=True)
class InteractionRow:
    """One row of batch_size_interactions(): the batch-size effect on A_avr for `optimizer` less that for
    `versus`, per doubling of B. The fields are the table's columns, in order (NaN numbers: too few seeds)."""

    dataset: str
    model: str
    train_noise: float
    budget: str
    optimizer: str
    versus: str
    n_runs: int
    seeds_per_cell: str
    unit: str
    avr_effect: float = NAN
    avr_ci_low: float = NAN
    avr_ci_high: float = NAN
    avr_p: float = NAN
    avr_mde: float = NAN
    avr_verdict: str


INTERACTION_COLUMNS = run_table.columns(InteractionRow)


def batch_size_interactions(runs: pd.DataFrame) -> pd.DataFrame:
    """Does batch size move A_avr differently for two optimizers? Per (dataset, model, train_noise, budget) and
    pair of optimizers whose runs vary B at the same lrs: the difference of their batch-size effects
    (axis_weights of each, one Welch contrast over both optimizers' cells), per doubling of B. verdict:
    "higher for <optimizer>" / "higher for <versus>" (the signed effect) or NO_AXIS_EFFECT (columns:
    INTERACTION_COLUMNS, the fields of InteractionRow)."""
    kept = run_table.evaluated_runs(runs)
    rows = []
    for key, group in kept.groupby(["dataset", "model", "train_noise", "budget"], sort=True, dropna=False):
        varied = group.groupby(["optimizer", "lr"])["batch_size"].nunique()
        lrs_of = {opt: set(v[v >= 2].index.get_level_values("lr")) for opt, v in varied.groupby(level=0)}
        optimizers = sorted(opt for opt, lrs in lrs_of.items() if lrs)
        for i, first in enumerate(optimizers):
            for second in optimizers[i + 1 :]:
                lrs = lrs_of[first] & lrs_of[second]
                pair = group[group["optimizer"].isin((first, second)) & group["lr"].isin(lrs)]
                if not lrs:
                    continue
                out = {
                    **dict(zip(["dataset", "model", "train_noise", "budget"], key)),
                    "optimizer": first,
                    "versus": second,
                    "n_runs": len(pair),
                    "seeds_per_cell": run_table.count_range(pair.groupby(["optimizer", "lr", "batch_size"]).size()),
                    "unit": AXIS_UNITS["batch_size"][1],
                }
                fitted = cellfit.fit(pair, names.AVG_NORMALIZED_ACCURACY, ["optimizer", "lr", "batch_size"])
                if fitted is None:
                    rows.append(InteractionRow(**out, avr_verdict=TOO_FEW_SEEDS))
                    continue
                weights = np.zeros(len(fitted.cells))
                for optimizer, sign in ((first, 1.0), (second, -1.0)):
                    mine = (fitted.cells["optimizer"] == optimizer).to_numpy()
                    weights[mine] = sign * axis_weights(fitted.cells[mine].reset_index(drop=True), "batch_size")
                test = fitted.t(weights)
                words = intervals.verdict_words(
                    test["ci_low"], test["ci_high"], f"higher for {second}", f"higher for {first}", NO_AXIS_EFFECT
                )
                found = {"effect": test["estimate"], **test, "verdict": words}
                rows.append(InteractionRow(**out, **run_table.prefixed("avr", found, InteractionRow)))
    return run_table.frame(rows, InteractionRow)
