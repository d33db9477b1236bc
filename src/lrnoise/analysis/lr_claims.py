"""The lr claims of one cell (a configuration but for lr and seed): how A_avr and the baseline accuracy move along
the lr grid, the sweet spot, the noise-power association within an lr, and the paper's Table III trend beside
them (numpy, pandas, scipy and statsmodels: no MLflow, no figures).

The paper reads "A_avr falls as the learning rate rises" off ONE run per cell. Here each seed is a point: the lr
trend is the least-squares slope of the cell means per step of the lr grid, each lr its own seed-to-seed spread
(lrnoise.analysis.cellfit: a Welch t test), with its p and its mde (the effect it detects with 80 % power), so
lrnoise.analysis.verdicts can place it in the report's family and a "no clear trend" can say what it could have
detected. Spearman's rho describes the ranking beside the slope. The sweet spot is descriptive: the share of
within-lr bootstrap resamples (lrnoise.analysis.intervals) that pick each lr. claims() makes one ClaimRow per cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from lrnoise import grid, names, paper
from lrnoise.analysis import cellfit, intervals, run_table
from lrnoise.analysis.run_table import NAN, TIE, TOO_FEW_SEEDS
from lrnoise.errors import LrnoiseError

NOT_MEASURED = "not measured"
TOO_FEW_RUNS = "too few runs"
NO_PAPER_ROW = "—"
NO_TREND = "no clear trend"
NO_ASSOCIATION = "no clear association"
CLAIM_CELL = [*grid.CELL, "budget"]  # an lr claim's cell: the runs of one configuration but for lr and seed


# ---------------------------------------------------------------- trend against x
def trend(frame: pd.DataFrame, value: str, x: str = "lr") -> dict:
    """How `value` moves along the grid of `x`: the least-squares slope of the cell means (one cell per x value)
    on the x values' ranks, i.e. per step of the grid, with its Welch t interval, p and mde (cellfit: each x
    value its own spread). Spearman's rho over runs is given beside it to describe the ranking.

    verdict: f"falls with {x}" if ci_high < 0, f"rises with {x}" if ci_low > 0, else "no clear trend";
    f"too few {x} values" with fewer than 2 distinct x, "too few seeds" when an x value has a single run."""
    run_table.require(frame, x, value)
    have = frame.dropna(subset=[x, value])
    levels = np.unique(have[x].to_numpy(dtype=float))
    out = {
        "rho": NAN,
        **dict.fromkeys(("slope", "ci_low", "ci_high", "p", "mde"), NAN),
        "verdict": f"too few {x} values",
        "n_runs": len(have),
        "n_levels": len(levels),
    }
    if len(levels) < 2:
        return out
    out["rho"] = intervals.spearman(have[x].to_numpy(dtype=float), have[value].to_numpy(dtype=float))
    fitted = cellfit.fit(have, value, [x])
    if fitted is None:
        out["verdict"] = TOO_FEW_SEEDS
        return out
    steps = np.arange(len(fitted.cells), dtype=float)  # the cells are sorted by x: rank = grid step
    test = fitted.t(np.linalg.pinv(np.column_stack([np.ones_like(steps), steps]))[1])
    out.update(slope=test["estimate"], **{k: test[k] for k in ("ci_low", "ci_high", "p", "mde")})
    out["verdict"] = intervals.verdict_words(
        test["ci_low"], test["ci_high"], f"falls with {x}", f"rises with {x}", NO_TREND
    )
    return out


# ---------------------------------------------------------------- sweet spot
def _sweet_spot_table(frame: pd.DataFrame, baseline: str, robust: str, max_accuracy_drop: float, x: str):
    """Rows with baseline, robust and x all present, plus their x levels and a (n, L) one-hot of level membership."""
    if not max_accuracy_drop >= 0:
        raise LrnoiseError(f"max_accuracy_drop={max_accuracy_drop} must be a fraction >= 0 (0.01 = 1 point)")
    run_table.require(frame, x, baseline, robust)
    have = frame.dropna(subset=[x, baseline, robust])
    levels, codes = np.unique(have[x].to_numpy(dtype=float), return_inverse=True)
    groups = [np.flatnonzero(codes == k) for k in range(len(levels))]
    onehot = np.eye(len(levels))[codes]
    return have, levels, groups, onehot


def _sweet_spot_codes(base: np.ndarray, robust: np.ndarray, onehot: np.ndarray, max_accuracy_drop: float) -> np.ndarray:
    """Level index of the sweet spot of each row of base/robust (m, n): per level the mean over its runs
    ((m, n) @ (n, L) / counts); among levels with mean baseline >= best - max_accuracy_drop, the highest mean
    robust (ties: the smaller x). Shape (m,)."""
    counts = onehot.sum(axis=0)
    mean_base, mean_robust = base @ onehot / counts, robust @ onehot / counts
    eligible = mean_base >= mean_base.max(axis=1, keepdims=True) - max_accuracy_drop - TIE
    return np.where(eligible, mean_robust, -np.inf).argmax(axis=1)


def sweet_spot(frame: pd.DataFrame, baseline: str, robust: str, max_accuracy_drop: float, x: str = "lr") -> float:
    """The x value whose mean `robust` is highest among those whose mean `baseline` is within
    `max_accuracy_drop` (a fraction) of the best mean baseline; rows missing either column are left out.
    NaN for an empty table."""
    have, levels, _, onehot = _sweet_spot_table(frame, baseline, robust, max_accuracy_drop, x)
    if len(have) == 0:
        return NAN
    base, rob = have[baseline].to_numpy(dtype=float), have[robust].to_numpy(dtype=float)
    return float(levels[_sweet_spot_codes(base[None, :], rob[None, :], onehot, max_accuracy_drop)[0]])


def sweet_spot_shares(
    frame: pd.DataFrame,
    baseline: str,
    robust: str,
    max_accuracy_drop: float,
    x: str = "lr",
    n_boot: int = 2000,
    seed: int = 0,
) -> dict:
    """{x value: share of within-x bootstrap resamples in which it is the sweet spot} for every x value
    (0.0 for one that never wins); the shares sum to 1. Empty dict for an empty table."""
    intervals.check_n_boot(n_boot)
    have, levels, groups, onehot = _sweet_spot_table(frame, baseline, robust, max_accuracy_drop, x)
    if len(have) == 0:
        return {}
    idx = intervals.resample_indices(groups, n_boot, np.random.default_rng(seed))
    base = intervals.inflate(have[baseline].to_numpy(dtype=float), groups)
    rob = intervals.inflate(have[robust].to_numpy(dtype=float), groups)
    wins = np.bincount(_sweet_spot_codes(base[idx], rob[idx], onehot, max_accuracy_drop), minlength=len(levels))
    return {float(level): float(share) for level, share in zip(levels, wins / int(n_boot))}


# ---------------------------------------------------------------- the paper
def paper_trend(dataset: str, model: str) -> float:
    """Spearman rho of the paper's Table III row (A_avr at each of paper.LRS) against lr; NaN without that row."""
    keys = [(dataset, model, lr) for lr in paper.LRS]
    if not all(key in paper.AVG_NORMALIZED_ACCURACY for key in keys):
        return NAN
    return intervals.spearman(paper.LRS, [paper.AVG_NORMALIZED_ACCURACY[key] for key in keys])


def _agrees(verdict: str, paper_rho: float) -> str:
    """ "yes" when our verdict has the paper's sign, "no" when it has the other sign or shows no clear trend,
    "—" when there is no paper row to compare or our verdict could not be reached (too few seeds)."""
    sign = {"falls with lr": -1, "rises with lr": 1, "no clear trend": 0}.get(verdict)
    if np.isnan(paper_rho) or sign is None:
        return NO_PAPER_ROW
    return "yes" if sign == np.sign(paper_rho) else "no"


# ---------------------------------------------------------------- association with a measured noise, within an lr
def association_within_lr(frame: pd.DataFrame, column: str, value: str = names.AVG_NORMALIZED_ACCURACY) -> dict:
    """How `value` moves with log(column) among runs at the same lr, so that the lr trend cannot pass for an
    association: OLS value ~ C(lr) + log(column) (statsmodels), the slope stated per doubling of `column` with its
    95 % t interval, p and mde. verdict: "negative" / "positive" when the interval excludes 0, else
    NO_ASSOCIATION; "too few runs" when no degree of freedom is left or `column` does not vary within any lr."""
    import statsmodels.api as sm

    have = frame.dropna(subset=[column, value])
    have = have[have[column] > 0]
    out = {**dict.fromkeys(("slope", "ci_low", "ci_high", "p", "mde"), NAN), "verdict": TOO_FEW_RUNS}
    x = np.log(have[column].to_numpy(dtype=float))
    lrs = have["lr"].to_numpy(dtype=float)
    lr_columns = (lrs[:, None] == np.unique(lrs)[None, :]).astype(float)
    design = np.column_stack([lr_columns, x])
    if len(have) - np.linalg.matrix_rank(design) < 1 or np.linalg.matrix_rank(design) < design.shape[1]:
        return out
    fitted = sm.OLS(have[value].to_numpy(dtype=float), design).fit()
    low, high = fitted.conf_int(alpha=cellfit.ALPHA)[-1] * np.log(2)
    se = float(fitted.bse[-1] * np.log(2))
    mde = (cellfit.t_quantile(fitted.df_resid) + sps.t.ppf(cellfit.POWER, fitted.df_resid)) * se
    out.update(slope=float(fitted.params[-1] * np.log(2)), ci_low=float(low), ci_high=float(high))
    out.update(p=float(fitted.pvalues[-1]), mde=float(mde))
    out["verdict"] = intervals.verdict_words(low, high, "negative", "positive", NO_ASSOCIATION)
    return out


def _mechanism(cell: pd.DataFrame, column: str) -> dict:
    """association_within_lr of A_avr with `column`, or only the verdict NOT_MEASURED where no run measured it."""
    if column not in cell or cell[column].isna().all():
        return {"verdict": NOT_MEASURED}
    return association_within_lr(cell, column)


# ---------------------------------------------------------------- the claims table
@dataclass(kw_only=True)
class ClaimRow:
    """One row of claims(): a cell (CLAIM_CELL) and its lr verdicts. The fields are the table's columns, in order:
    avr_* / baseline_* are the trend() of A_avr / the baseline accuracy, mechanism_* / update_mechanism_* the
    association_within_lr of A_avr with the measured C / the update's noise power (NaN where not measured)."""

    dataset: str
    model: str
    optimizer: str
    batch_size: float
    train_noise: float
    budget: str
    n_runs: int
    n_lrs: int
    seeds_per_lr: str  # runs per lr: "4", or "3-4" when they differ
    avr_rho: float
    avr_slope: float  # per step of the lr grid
    avr_ci_low: float
    avr_ci_high: float
    avr_p: float
    avr_mde: float
    avr_verdict: str
    baseline_rho: float
    baseline_slope: float
    baseline_ci_low: float
    baseline_ci_high: float
    baseline_p: float
    baseline_mde: float
    baseline_verdict: str
    sweet_spot_lr: float
    sweet_spot_share: float  # the share of within-lr resamples that pick sweet_spot_lr
    sweet_spot_shares: str  # every lr's share: "0.0005:0.120; 0.001:0.880"
    mechanism_slope: float = NAN  # per doubling of C
    mechanism_ci_low: float = NAN
    mechanism_ci_high: float = NAN
    mechanism_p: float = NAN
    mechanism_mde: float = NAN
    mechanism_verdict: str
    update_mechanism_slope: float = NAN  # per doubling of the update's noise power
    update_mechanism_ci_low: float = NAN
    update_mechanism_ci_high: float = NAN
    update_mechanism_p: float = NAN
    update_mechanism_mde: float = NAN
    update_mechanism_verdict: str
    paper_avr_rho: float  # Spearman rho of the paper's Table III row (Adam, trained clean), else NaN
    agrees_with_paper: str  # "yes", "no" or NO_PAPER_ROW


CLAIM_COLUMNS = run_table.columns(ClaimRow)


def _claim(key: tuple, cell: pd.DataFrame, max_accuracy_drop: float, n_boot: int, seed: int) -> ClaimRow:
    """One claims row from a cell's noise-evaluated runs (one row per run, A_avr present)."""
    named = dict(zip(CLAIM_CELL, key))
    base_name, avr_name = names.BASELINE_ACCURACY, names.AVG_NORMALIZED_ACCURACY
    avr = trend(cell, avr_name)
    base = trend(cell, base_name)
    spot = sweet_spot(cell, base_name, avr_name, max_accuracy_drop)
    shares = sweet_spot_shares(cell, base_name, avr_name, max_accuracy_drop, n_boot=n_boot, seed=seed)
    # Table III is Adam, trained clean: another optimizer or noise-injection training has no paper row
    clean_adam = named["optimizer"] == "adam" and not named["train_noise"]
    paper_rho = paper_trend(named["dataset"], named["model"]) if clean_adam else NAN
    return ClaimRow(
        **named,
        n_runs=len(cell),
        n_lrs=avr["n_levels"],
        seeds_per_lr=run_table.count_range(cell.groupby("lr").size()),
        **run_table.prefixed("avr", avr, ClaimRow),
        **run_table.prefixed("baseline", base, ClaimRow),
        sweet_spot_lr=spot,
        sweet_spot_share=shares.get(spot, NAN),
        sweet_spot_shares="; ".join(f"{lr:g}:{share:.3f}" for lr, share in sorted(shares.items())),
        **run_table.prefixed("mechanism", _mechanism(cell, names.GRAD_NOISE_C_MEAN), ClaimRow),
        # within an lr (and B), the update's noise power is its spread
        **run_table.prefixed("update_mechanism", _mechanism(cell, names.UPDATE_NOISE_POWER_MEAN), ClaimRow),
        paper_avr_rho=paper_rho,
        agrees_with_paper=_agrees(avr["verdict"], paper_rho),
    )


def claims(
    runs: pd.DataFrame, max_accuracy_drop: float, n_boot: int = 2000, seed: int = 0, min_lrs: int = 3
) -> pd.DataFrame:
    """One row per cell (CLAIM_CELL: dataset, model, optimizer, batch_size, train_noise, budget) with >= min_lrs
    distinct lrs having A_avr: the A_avr and baseline trends against lr, the sweet spot and how often resamples
    agree with it, the grad/update noise-power associations with A_avr, and the paper's Table III trend
    (columns: CLAIM_COLUMNS, the fields of ClaimRow).

    runs: one row per run (columns dataset, model, optimizer, lr, seed, baseline_accuracy,
    avg_normalized_accuracy, optionally batch_size, train_noise, budget, grad_noise_c_mean,
    update_noise_power_mean, learned). Runs with learned == False are dropped; a cell's sample is its runs
    with A_avr. Every cell uses the same `seed`."""
    intervals.check_n_boot(n_boot)
    required = ("dataset", "model", "optimizer", "lr", names.BASELINE_ACCURACY, names.AVG_NORMALIZED_ACCURACY)
    run_table.require(runs, *required)
    kept = run_table.evaluated_runs(runs)
    rows = [
        _claim(key, cell, max_accuracy_drop, n_boot, seed)
        for key, cell in kept.groupby(CLAIM_CELL, sort=True, dropna=False)
        if cell["lr"].nunique() >= min_lrs
    ]
    return run_table.frame(rows, ClaimRow)
