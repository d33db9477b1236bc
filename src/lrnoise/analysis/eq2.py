"""Eq. 2's test: which gradient-noise scale moves A_avr, lr^2 / B, lr / B or lr alone? And how a measured noise
scales with lr and B (numpy and pandas: no MLflow, no figures).

value = c + a log lr + b log B over the cell means (each cell its own spread: lrnoise.analysis.cellfit). A
response that depends on lr and B only through lr^k / B has b / a = -1 / k: eq. 2's bound on the gradient-noise
power (lr^2 C / B) predicts -1/2, the SDE noise scale of Smith & Le (2018) and Jastrzebski et al. (2017) (lr / B)
predicts -1, and a response to lr alone b = 0. eq2_test() makes one Eq2Row per group of runs that span >= 2 lrs
and >= 2 batch sizes; eq2_verdict() is the closed test of the three predictions that lrnoise.analysis.verdicts
reruns at family-adjusted p values.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from lrnoise import names
from lrnoise.analysis import cellfit, run_table
from lrnoise.analysis.run_table import NAN, TOO_FEW_SEEDS

PREDICTIONS = {"lr^2/B": -0.5, "lr/B": -1.0, "lr alone": 0.0}  # name -> the b / a it predicts
NO_EFFECT = "no effect to test"
CURVED = "not linear in log lr and log B: no prediction tested"
GATES = (TOO_FEW_SEEDS, NO_EFFECT, CURVED)  # verdicts that name no prediction
PREDICTS = "predictions"  # an eq. 2 row on A_avr: which of PREDICTIONS its plane excludes
SCALES = "scaling"  # an eq. 2 row on a measured noise (log): how it scales with lr and B, no prediction


def _p_of(prediction: str):
    """The field of a prediction's p: its column is p_<prediction> (no identifier: p_lr^2/B)."""
    return run_table.named(f"p_{prediction}", default=NAN)


@dataclass(kw_only=True)
class Eq2Row:
    """One row of eq2_test(). The fields are the table's columns, in order (their metadata "column" where a
    column's name is no identifier); a number the row's gates left untested reads NaN."""

    dataset: str
    model: str
    optimizer: str
    train_noise: float
    budget: str
    value: str  # the column tested: avg_normalized_accuracy, or "log <measured noise>"
    kind: str  # PREDICTS or SCALES
    n_runs: int
    n_lrs: int
    n_batch_sizes: int
    seeds_per_cell: str
    df: float  # the degrees of freedom of the cells' spreads (0: too few seeds)
    lr_slope: float = NAN  # a
    lr_slope_ci_low: float = NAN
    lr_slope_ci_high: float = NAN
    lr_slope_p: float = NAN
    lr_slope_mde: float = NAN
    b_slope: float = NAN  # b
    b_slope_ci_low: float = NAN
    b_slope_ci_high: float = NAN
    b_slope_p: float = NAN
    b_slope_mde: float = NAN
    effect_p: float = NAN  # the joint test of a = b = 0
    effect_mde: float = NAN  # its "cannot exclude", stated along log lr
    lack_of_fit_p: float = NAN  # the test that the cell means lie on a plane
    ratio: float = NAN  # b / a
    ratio_set: str = NAN  # Fieller's 95 % set of b / a, in words
    p_lr2_over_b: float = _p_of("lr^2/B")
    p_lr_over_b: float = _p_of("lr/B")
    p_lr_alone: float = _p_of("lr alone")
    excluded: str = NAN  # the predictions the data exclude, comma-separated
    verdict: str


EQ2_COLUMNS = run_table.columns(Eq2Row)
_P_FIELDS = {
    f.metadata[run_table.COLUMN].removeprefix("p_"): f.name for f in fields(Eq2Row) if run_table.COLUMN in f.metadata
}


def _interval_text(intervals: list[tuple[float, float]]) -> str:
    def end(x):
        return "inf" if x == np.inf else "-inf" if x == -np.inf else f"{x:+.2f}"

    return " or ".join(
        f"{'(' if lo == -np.inf else '['}{end(lo)}, {end(hi)}{')' if hi == np.inf else ']'}" for lo, hi in intervals
    )


def prediction_verdict(excluded: list[str]) -> str:
    """The verdict's words from the predictions the data exclude, e.g. 'excludes lr alone; cannot tell lr^2/B
    from lr/B'. A prediction not excluded is not shown to hold: the words never say it does."""
    kept = [name for name in PREDICTIONS if name not in excluded]
    if not excluded:
        return "cannot tell " + ", ".join(kept[:-1]) + f" or {kept[-1]} apart"
    said = "excludes " + (
        " and ".join(excluded) if len(excluded) < 3 else f"{excluded[0]}, {excluded[1]} and {excluded[2]}"
    )
    if not kept:
        return said + " (none of the three predictions holds)"
    if len(kept) == 1:
        return f"{said}; does not exclude {kept[0]}"
    return f"{said}; cannot tell {kept[0]} from {kept[1]}"


def eq2_verdict(effect_p: float, lack_of_fit_p: float, p_of: dict, level: float = cellfit.ALPHA) -> tuple:
    """(excluded predictions, verdict) of an eq. 2 row on A_avr. A closed test of the three predictions: any two
    of them hold together only where a = b = 0, so a prediction is excluded when the F test of a = b = 0 and its
    own t test both reject at `level` (the family-wise level of the three). The lack-of-fit gate withholds the
    predictions where the cell means are not on a plane (at 5 %, whatever `level`: withholding is the cautious
    side)."""
    if not effect_p < level:
        return [], NO_EFFECT
    if lack_of_fit_p < cellfit.ALPHA:
        return [], CURVED
    excluded = [name for name, p in p_of.items() if p < level]
    return excluded, prediction_verdict(excluded)


def scaling_verdict(row) -> str:
    """An eq. 2 row on a measured noise in words: 'scales as lr^+0.10 [-0.2, +0.4] x B^-0.95 [-1.1, -0.8]'."""

    def power(name, slope):
        low, high = row[f"{slope}_ci_low"], row[f"{slope}_ci_high"]
        return f"{name}^{row[slope]:+.2f} [{low:+.2f}, {high:+.2f}]"

    return f"scales as {power('lr', 'lr_slope')} x {power('B', 'b_slope')}"


def eq2_test(runs: pd.DataFrame, value: str = names.AVG_NORMALIZED_ACCURACY, log_value: bool = False) -> pd.DataFrame:
    """Which gradient-noise scale moves `value`? Per (dataset, model, optimizer, train_noise, budget) with >= 2 lrs
    and >= 2 batch sizes: the least-squares plane value = c + a log(lr) + b log(B) through the cell means
    (cellfit: each cell its own spread).

    On A_avr (kind PREDICTS): each prediction of PREDICTIONS is tested by its linear contrast b - r a (b + a/2 for
    lr^2/B, b + a for lr/B, b for lr alone) with a Welch t test; ratio_set is Fieller's 95 % set of b / a;
    eq2_verdict gives the gates ("too few seeds", "no effect to test" when the F test of a = b = 0 does not
    reject, CURVED when the lack-of-fit test rejects) and the excluded predictions.
    On log(value) (`log_value`, kind SCALES: a measured noise C or the update's own spread): a and b are the
    exponents of lr and B in value ~ lr^a B^b, stated with their intervals; no prediction of A_avr is tested.
    Calibration: benchmarks/calibration.py (columns: EQ2_COLUMNS, from the fields of Eq2Row)."""
    run_table.require(runs, "dataset", "model", "optimizer", "lr", "batch_size", value)
    kept = run_table.with_axes(runs[run_table.learned_mask(runs)]).dropna(subset=[value, "batch_size"])
    if log_value:
        kept = kept[kept[value] > 0]
        kept = kept.assign(**{value: np.log(kept[value].to_numpy(dtype=float))})
    rows = []
    keys = ["dataset", "model", "optimizer", "train_noise", "budget"]
    for key, group in kept.groupby(keys, sort=True):
        if group["lr"].nunique() < 2 or group["batch_size"].nunique() < 2:
            continue
        fitted = cellfit.fit(group, value, ["lr", "batch_size"])
        out = {
            **dict(zip(keys, key)),
            "value": f"log {value}" if log_value else value,
            "kind": SCALES if log_value else PREDICTS,
            "n_runs": len(group),
            "n_lrs": group["lr"].nunique(),
            "n_batch_sizes": group["batch_size"].nunique(),
            "seeds_per_cell": run_table.count_range(group.groupby(["lr", "batch_size"]).size()),
            "df": fitted.df if fitted is not None else 0.0,
        }
        if fitted is None:
            rows.append(Eq2Row(**out, verdict=TOO_FEW_SEEDS))
            continue
        cells = fitted.cells
        design = np.column_stack(
            [np.ones(len(cells)), np.log(cells["lr"].to_numpy(float)), np.log(cells["batch_size"].to_numpy(float))]
        )
        slopes = np.linalg.pinv(design)  # (3, cells): intercept, a, b as contrasts of the cell means
        a_w, b_w = slopes[1], slopes[2]
        for name, weights in (("lr_slope", a_w), ("b_slope", b_w)):
            test = fitted.t(weights)
            out[name] = test["estimate"]
            out.update({f"{name}_{k}": test[k] for k in ("ci_low", "ci_high", "p", "mde")})
        out["effect_p"] = fitted.f(np.vstack([a_w, b_w]))
        out["effect_mde"] = out["lr_slope_mde"]  # the joint effect's "cannot exclude", stated along log lr
        out["lack_of_fit_p"] = fitted.lack_of_fit(design)
        if log_value:
            rows.append(Eq2Row(**out, verdict=scaling_verdict(out)))
            continue
        (v_aa, v_ab), (_, v_bb) = fitted.covariance(np.vstack([a_w, b_w]))
        df = min(fitted.t(a_w)["df"], fitted.t(b_w)["df"])  # Fieller's quantile at the smaller of the two dfs
        a, b = out["lr_slope"], out["b_slope"]
        ratio_set = cellfit.fieller(a, b, v_aa, v_ab, v_bb, cellfit.t_quantile(df))
        p_of = {name: fitted.t(b_w - r * a_w)["p"] for name, r in PREDICTIONS.items()}
        excluded, verdict = eq2_verdict(out["effect_p"], out["lack_of_fit_p"], p_of)
        rows.append(
            Eq2Row(
                **out,
                ratio=b / a if a else NAN,
                ratio_set=_interval_text(ratio_set),
                **{_P_FIELDS[name]: p for name, p in p_of.items()},
                excluded=", ".join(excluded),
                verdict=verdict,
            )
        )
    return run_table.frame(rows, Eq2Row)
