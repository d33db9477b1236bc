"""Statistics over seeds for the paper's claims (numpy, pandas, scipy and statsmodels: no mlflow, no matplotlib).

The paper reads "A_avr falls as the learning rate rises" off ONE run per cell. Here each seed is a point, and
every verdict is a contrast of cell means, each cell with its own seed-to-seed spread (lrnoise.analysis.cellfit: Welch
t tests, a parametric-bootstrap Wald test for several contrasts): the lr trend is the least-squares slope of the
cell means per step of the lr grid, an axis effect (batch size, train noise) the slope per doubling of B or per
+0.1 eta with each lr its own intercept, eq. 2 a plane in log lr and log B. Every such row carries its p value
and its mde (the effect its test detects with 80 % power), so lrnoise.analysis.verdicts can sort the report's verdicts
into a family-wise controlled primary family and an exploratory rest, and a "no clear" verdict can say what it
could have detected. The sweet spot is descriptive: the share of within-lr bootstrap resamples (deviations
scaled by sqrt(n_g / (n_g - 1)), Davison & Hinkley 1997) that pick each lr. Spearman's rho (average ranks for
ties) describes a ranking beside a slope.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

from lrnoise import config, paper
from lrnoise.analysis import cellfit
from lrnoise.errors import LrnoiseError

BASELINE = "baseline_accuracy"  # a_0, the same name as lrnoise.store.tracking.BASELINE_ACCURACY
A_AVR = "avg_normalized_accuracy"  # A_avr, eq. 9; lrnoise.store.tracking.AVG_NORMALIZED_ACCURACY
GRAD_NOISE_C = "grad_noise_c_mean"  # C itself, as measured (eq. 3); lrnoise.store.tracking.GRAD_NOISE_C + MEAN_SUFFIX
UPDATE_NOISE = "update_noise_power_mean"  # lrnoise.store.tracking.UPDATE_NOISE_POWER_MEAN
UPDATE_SPREAD = "update_noise_spread_mean"  # update_noise_power_mean / lr^2: the update's own measured spread
AXES = config.AXES  # the swept training axes; a claim over one holds the others fixed
CELL = list(config.CELL)  # an lr claim's cell: runs of it are seeds
MIN_BOOT = 2000
NOT_MEASURED = "not measured"
TOO_FEW_RUNS = "too few runs"
TOO_FEW_SEEDS = "too few seeds"  # some x value has a single run: the within-x bootstrap cannot see its spread
NO_PAPER_ROW = "—"
NO_TREND = "no clear trend"
NO_AXIS_EFFECT = "no clear effect"
NO_ASSOCIATION = "no clear association"
TIE = 1e-12  # floating slack so a baseline exactly max_accuracy_drop below the best still counts as within it


# ---------------------------------------------------------------- one sample
def _finite(values) -> np.ndarray:
    values = np.asarray(values, dtype=float).ravel()
    return values[~np.isnan(values)]


def ci95(values) -> float:
    """Half-width of the 95 % t interval of the mean: t_{0.975, n-1} * s / sqrt(n) (s with ddof=1); 0.0 for n < 2."""
    values = np.asarray(values, dtype=float).ravel()
    n = len(values)
    if n < 2:
        return 0.0
    return float(sps.t.ppf(0.975, n - 1) * np.std(values, ddof=1) / np.sqrt(n))


def mean_ci(values) -> tuple[float, float, int]:
    """(mean, ci95 half-width, n) of the non-NaN values; mean is NaN when none is left."""
    values = _finite(values)
    mean = float(values.mean()) if len(values) else float("nan")
    return mean, ci95(values), len(values)


# ---------------------------------------------------------------- Spearman, row by row
def _row_spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rho of each row of a (m, n) against the same row of b (m, n) or against b (1, n): shape (m,).
    Average ranks for ties; NaN for a row where either side is constant."""
    ra = sps.rankdata(a, method="average", axis=1)
    rb = sps.rankdata(b, method="average", axis=1)
    ra = ra - ra.mean(axis=1, keepdims=True)
    rb = rb - rb.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (ra * rb).sum(axis=1) / np.sqrt((ra * ra).sum(axis=1) * (rb * rb).sum(axis=1))
    spread = (np.ptp(a, axis=1) > 0) & (np.ptp(b, axis=1) > 0)  # exact zero test, not a rounding-prone 0/0
    return np.where(spread, rho, np.nan)


def spearman(x, y) -> float:
    """Spearman rho of paired x, y (average ranks for ties); NaN when either side is constant or n < 2."""
    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if len(x) != len(y):
        raise LrnoiseError(f"spearman needs paired values: got {len(x)} x and {len(y)} y")
    if len(x) < 2:
        return float("nan")
    return float(_row_spearman(x[None, :], y[None, :])[0])


# ---------------------------------------------------------------- bootstrap machinery
def check_n_boot(n_boot: int) -> None:
    if int(n_boot) < MIN_BOOT:
        raise LrnoiseError(f"n_boot={n_boot} is too few bootstrap resamples; use n_boot >= {MIN_BOOT}")


def resample_indices(groups, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Row indices of n_boot resamples, (n_boot, n): column j draws with replacement from the group holding row j.

    groups: index arrays that partition range(n) (one per x value). Because a column never leaves its group,
    every resample keeps each group's count and x[idx] == x; one draw per group, no loop over resamples."""
    groups = [np.asarray(g, dtype=np.intp) for g in groups]
    n = sum(len(g) for g in groups)
    idx = np.empty((int(n_boot), n), dtype=np.intp)
    for g in groups:
        idx[:, g] = g[rng.integers(0, len(g), size=(int(n_boot), len(g)))]
    return idx


def inflate(values: np.ndarray, groups) -> np.ndarray:
    """values (n,) with each group's deviations from its mean scaled by sqrt(n_g / (n_g - 1)): the group means
    stay, the within-group spread (ddof=0) becomes the sample sd (ddof=1), so resampling sees the seed spread
    unshrunk. A group of one run is left as it is."""
    out = np.array(values, dtype=float)
    for g in groups:
        if len(g) > 1:
            mean = out[g].mean()
            out[g] = mean + np.sqrt(len(g) / (len(g) - 1)) * (out[g] - mean)
    return out


def _require(frame: pd.DataFrame, *columns: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        have = ", ".join(map(str, frame.columns))
        raise LrnoiseError(f"column(s) {', '.join(missing)} missing; the table has {have}")


def _levels(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Sorted distinct x values (L,), each row's level code (n,), and the row indices of each level."""
    levels, codes = np.unique(x, return_inverse=True)
    return levels, codes, [np.flatnonzero(codes == k) for k in range(len(levels))]


# ---------------------------------------------------------------- trend against x
def trend(frame: pd.DataFrame, value: str, x: str = "lr") -> dict:
    """How `value` moves along the grid of `x`: the least-squares slope of the cell means (one cell per x value)
    on the x values' ranks, i.e. per step of the grid, with its Welch t interval, p and mde (cellfit: each x
    value its own spread). Spearman's rho over runs is given beside it to describe the ranking.

    verdict: f"falls with {x}" if ci_high < 0, f"rises with {x}" if ci_low > 0, else "no clear trend";
    f"too few {x} values" with fewer than 2 distinct x, "too few seeds" when an x value has a single run."""
    _require(frame, x, value)
    have = frame.dropna(subset=[x, value])
    levels = np.unique(have[x].to_numpy(dtype=float))
    out = {
        "rho": float("nan"),
        **dict.fromkeys(("slope", "ci_low", "ci_high", "p", "mde"), float("nan")),
        "verdict": f"too few {x} values",
        "n_runs": len(have),
        "n_levels": len(levels),
    }
    if len(levels) < 2:
        return out
    out["rho"] = spearman(have[x].to_numpy(dtype=float), have[value].to_numpy(dtype=float))
    fitted = cellfit.fit(have, value, [x])
    if fitted is None:
        out["verdict"] = TOO_FEW_SEEDS
        return out
    steps = np.arange(len(fitted.cells), dtype=float)  # the cells are sorted by x: rank = grid step
    test = fitted.t(np.linalg.pinv(np.column_stack([np.ones_like(steps), steps]))[1])
    out.update(slope=test["estimate"], **{k: test[k] for k in ("ci_low", "ci_high", "p", "mde")})
    out["verdict"] = verdict_words(test["ci_low"], test["ci_high"], f"falls with {x}", f"rises with {x}", NO_TREND)
    return out


def verdict_words(low: float, high: float, negative: str, positive: str, neither: str) -> str:
    if high < 0:
        return negative
    if low > 0:
        return positive
    return neither  # also when the interval is NaN


# ---------------------------------------------------------------- sweet spot
def _sweet_spot_table(frame: pd.DataFrame, baseline: str, robust: str, max_accuracy_drop: float, x: str):
    """Rows with baseline, robust and x all present, plus their x levels and a (n, L) one-hot of level membership."""
    if not max_accuracy_drop >= 0:
        raise LrnoiseError(f"max_accuracy_drop={max_accuracy_drop} must be a fraction >= 0 (0.01 = 1 point)")
    _require(frame, x, baseline, robust)
    have = frame.dropna(subset=[x, baseline, robust])
    levels, codes, groups = _levels(have[x].to_numpy(dtype=float))
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
        return float("nan")
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
    check_n_boot(n_boot)
    have, levels, groups, onehot = _sweet_spot_table(frame, baseline, robust, max_accuracy_drop, x)
    if len(have) == 0:
        return {}
    idx = resample_indices(groups, n_boot, np.random.default_rng(seed))
    base = inflate(have[baseline].to_numpy(dtype=float), groups)
    rob = inflate(have[robust].to_numpy(dtype=float), groups)
    wins = np.bincount(_sweet_spot_codes(base[idx], rob[idx], onehot, max_accuracy_drop), minlength=len(levels))
    return {float(level): float(share) for level, share in zip(levels, wins / int(n_boot))}


# ---------------------------------------------------------------- association between two measurements
# ---------------------------------------------------------------- the paper and the claims table
def paper_trend(dataset: str, model: str) -> float:
    """Spearman rho of the paper's Table III row (A_avr at each of paper.LRS) against lr; NaN without that row."""
    keys = [(dataset, model, lr) for lr in paper.LRS]
    if not all(key in paper.AVG_NORMALIZED_ACCURACY for key in keys):
        return float("nan")
    return spearman(paper.LRS, [paper.AVG_NORMALIZED_ACCURACY[key] for key in keys])


def _agrees(verdict: str, paper_rho: float) -> str:
    """ "yes" when our verdict has the paper's sign, "no" when it has the other sign or shows no clear trend,
    "—" when there is no paper row to compare or our verdict could not be reached (too few seeds)."""
    sign = {"falls with lr": -1, "rises with lr": 1, "no clear trend": 0}.get(verdict)
    if np.isnan(paper_rho) or sign is None:
        return NO_PAPER_ROW
    return "yes" if sign == np.sign(paper_rho) else "no"


def _learned(runs: pd.DataFrame) -> pd.Series:
    """False only for runs marked learned == False (a bool, or the text "false" as a tracking store returns it)."""
    if "learned" not in runs:
        return pd.Series(True, index=runs.index)
    return ~runs["learned"].map(lambda v: str(v).strip().lower() == "false")


def association_within_lr(frame: pd.DataFrame, column: str, value: str = A_AVR) -> dict:
    """How `value` moves with log(column) among runs at the same lr, so that the lr trend cannot pass for an
    association: OLS value ~ C(lr) + log(column) (statsmodels), the slope stated per doubling of `column` with its
    95 % t interval, p and mde. verdict: "negative" / "positive" when the interval excludes 0, else
    NO_ASSOCIATION; "too few runs" when no degree of freedom is left or `column` does not vary within any lr."""
    import statsmodels.api as sm

    have = frame.dropna(subset=[column, value])
    have = have[have[column] > 0]
    out = {**dict.fromkeys(ASSOCIATION_KEYS[:-1], float("nan")), "verdict": TOO_FEW_RUNS}
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
    out["verdict"] = verdict_words(low, high, "negative", "positive", NO_ASSOCIATION)
    return out


TREND_KEYS = ("rho", "slope", "ci_low", "ci_high", "p", "mde", "verdict")  # a trend's columns in a claims row
ASSOCIATION_KEYS = ("slope", "ci_low", "ci_high", "p", "mde", "verdict")


def _mechanism(cell: pd.DataFrame, column: str, prefix: str) -> dict:
    if column not in cell or cell[column].isna().all():
        found = {**dict.fromkeys(ASSOCIATION_KEYS[:-1], float("nan")), "verdict": NOT_MEASURED}
    else:
        found = association_within_lr(cell, column)
    return {f"{prefix}_{key}": found[key] for key in ASSOCIATION_KEYS}


def _count_range(counts) -> str:
    low, high = int(min(counts)), int(max(counts))
    return str(low) if low == high else f"{low}-{high}"


CLAIM_CELL = [*CELL, "budget"]  # an lr claim's cell: the runs of one configuration but for lr and seed
CLAIM_COLUMNS = [
    *CLAIM_CELL,
    "n_runs",
    "n_lrs",
    "seeds_per_lr",
    *[f"avr_{k}" for k in TREND_KEYS],
    *[f"baseline_{k}" for k in TREND_KEYS],
    "sweet_spot_lr",
    "sweet_spot_share",
    "sweet_spot_shares",
    *[f"mechanism_{k}" for k in ASSOCIATION_KEYS],
    *[f"update_mechanism_{k}" for k in ASSOCIATION_KEYS],
    "paper_avr_rho",
    "agrees_with_paper",
]


def _claim(key: tuple, cell: pd.DataFrame, max_accuracy_drop: float, n_boot: int, seed: int) -> dict:
    """One claims row from a cell's noise-evaluated runs (one row per run, A_avr present)."""
    named = dict(zip(CLAIM_CELL, key))
    avr = trend(cell, A_AVR)
    base = trend(cell, BASELINE)
    spot = sweet_spot(cell, BASELINE, A_AVR, max_accuracy_drop)
    shares = sweet_spot_shares(cell, BASELINE, A_AVR, max_accuracy_drop, n_boot=n_boot, seed=seed)
    # Table III is Adam, trained clean: another optimizer or noise-injection training has no paper row
    clean_adam = named["optimizer"] == "adam" and not named["train_noise"]
    paper_rho = paper_trend(named["dataset"], named["model"]) if clean_adam else float("nan")
    return {
        **named,
        "n_runs": len(cell),
        "n_lrs": avr["n_levels"],
        "seeds_per_lr": _count_range(cell.groupby("lr").size()),
        **{f"avr_{k}": avr[k] for k in TREND_KEYS},
        **{f"baseline_{k}": base[k] for k in TREND_KEYS},
        "sweet_spot_lr": spot,
        "sweet_spot_share": shares.get(spot, float("nan")),
        "sweet_spot_shares": "; ".join(f"{lr:g}:{share:.3f}" for lr, share in sorted(shares.items())),
        **_mechanism(cell, GRAD_NOISE_C, "mechanism"),
        **_mechanism(cell, UPDATE_NOISE, "update_mechanism"),  # within an lr (and B), its power is its spread
        "paper_avr_rho": paper_rho,
        "agrees_with_paper": _agrees(avr["verdict"], paper_rho),
    }


def claims(
    runs: pd.DataFrame, max_accuracy_drop: float = 0.01, n_boot: int = 2000, seed: int = 0, min_lrs: int = 3
) -> pd.DataFrame:
    """One row per cell (CLAIM_CELL: dataset, model, optimizer, batch_size, train_noise, budget) with >= min_lrs
    distinct lrs having A_avr: the A_avr and baseline trends against lr, the sweet spot and how often resamples
    agree with it, the grad/update noise-power associations with A_avr, and the paper's Table III trend
    (columns: CLAIM_COLUMNS).

    runs: one row per run (columns dataset, model, optimizer, lr, seed, baseline_accuracy,
    avg_normalized_accuracy, optionally batch_size, train_noise, budget, grad_noise_c_mean,
    update_noise_power_mean, learned). Runs with learned == False are dropped; a cell's sample is its runs
    with A_avr. Every cell uses the same `seed`."""
    check_n_boot(n_boot)
    _require(runs, "dataset", "model", "optimizer", "lr", BASELINE, A_AVR)
    kept = evaluated_runs(runs)
    rows = [
        _claim(key, cell, max_accuracy_drop, n_boot, seed)
        for key, cell in kept.groupby(CLAIM_CELL, sort=True, dropna=False)
        if cell["lr"].nunique() >= min_lrs
    ]
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)


def with_axes(runs: pd.DataFrame) -> pd.DataFrame:
    """runs with every training axis as a number: lr and batch_size as given (batch_size NaN when absent),
    train_noise 0.0 where absent (a run from before noise-injection training trained clean), and the budget
    (epochs where absent: a training under the epochs budget does not log one)."""
    out = runs.copy()
    out["lr"] = out["lr"].astype(float)
    out["batch_size"] = pd.to_numeric(out["batch_size"], errors="coerce") if "batch_size" in out else np.nan
    out["train_noise"] = pd.to_numeric(out["train_noise"], errors="coerce").fillna(0.0) if "train_noise" in out else 0.0
    out["budget"] = out["budget"].fillna(config.TrainConfig.budget) if "budget" in out else config.TrainConfig.budget
    return out


def evaluated_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs every claim is made on: models that learned, with A_avr, their axes as numbers."""
    return with_axes(runs[_learned(runs)].dropna(subset=[A_AVR]))


# ---------------------------------------------------------------- effects of batch size and train noise
AXIS_UNITS = {  # each axis's effect is stated per step of this size (x as the pooled test sees it, and its words)
    "batch_size": (lambda b: np.log2(b), "per doubling of B"),
    "train_noise": (lambda eta: eta / 0.1, "per +0.1 train-noise eta"),
}
EFFECT_KEYS = ("effect", "ci_low", "ci_high", "p", "mde", "verdict")  # an axis effect's columns
AXIS_CLAIM_COLUMNS = [
    "axis",
    "dataset",
    "model",
    "optimizer",
    "lr",
    "batch_size",
    "train_noise",
    "budget",
    "n_runs",
    "n_lrs",
    "n_levels",
    "seeds_per_cell",
    "unit",
    *[f"avr_{k}" for k in EFFECT_KEYS],
    *[f"baseline_{k}" for k in EFFECT_KEYS],
]


def axis_weights(cells: pd.DataFrame, axis: str) -> np.ndarray:
    """(cells,) the contrast of the cell means that is the least-squares slope on the axis (AXIS_UNITS) with each
    lr its own intercept."""
    lr_columns = (cells["lr"].to_numpy()[:, None] == np.unique(cells["lr"])[None, :]).astype(float)
    design = np.column_stack([lr_columns, AXIS_UNITS[axis][0](cells[axis].to_numpy(dtype=float))])
    return np.linalg.pinv(design)[-1]


def _axis_effect(group: pd.DataFrame, value: str, axis: str) -> dict:
    """The pooled effect of `axis` on `value` over every lr of `group` (axis_weights) with its Welch t interval,
    p and mde (cellfit: each cell its own spread), and its verdict."""
    fitted = cellfit.fit(group, value, ["lr", axis])
    if fitted is None:
        return {**dict.fromkeys(EFFECT_KEYS[:-1], float("nan")), "verdict": TOO_FEW_SEEDS}
    test = fitted.t(axis_weights(fitted.cells, axis))
    words = verdict_words(test["ci_low"], test["ci_high"], f"falls with {axis}", f"rises with {axis}", NO_AXIS_EFFECT)
    return {"effect": test["estimate"], **{k: test[k] for k in EFFECT_KEYS[1:-1]}, "verdict": words}


def axis_claims(runs: pd.DataFrame, axis: str, min_levels: int = 2) -> pd.DataFrame:
    """The effect of `axis` (batch_size or train_noise) on A_avr and on the baseline accuracy: one pooled test
    per group of runs that differ only in lr, that axis and their seed (>= min_levels values of the axis at some
    lr), each lr its own intercept (_axis_effect). The effect is in accuracy (a fraction; x100: points) per step
    of AXIS_UNITS, with its 95 % t interval. verdict: "falls with <axis>" when the interval is below 0, "rises
    with <axis>" above, else NO_AXIS_EFFECT; "too few seeds" when a cell has a single run. The budget is part of
    the group: under steps a larger batch also saw more examples, under epochs it took fewer updates, and the
    two are never pooled. The swept axis's own column and lr read NaN (columns: AXIS_CLAIM_COLUMNS)."""
    if axis not in AXIS_UNITS:
        raise LrnoiseError(f"unknown axis {axis!r}: choose one of {', '.join(AXIS_UNITS)} (lr: claims())")
    _require(runs, "dataset", "model", "optimizer", "lr", BASELINE, A_AVR)
    kept = evaluated_runs(runs)
    fixed = ["dataset", "model", "optimizer", *[a for a in AXES if a not in (axis, "lr")], "budget"]
    rows = []
    for key, group in kept.groupby(fixed, sort=True, dropna=False):
        varied = group.groupby("lr")[axis].nunique()
        group = group[group["lr"].isin(varied[varied >= min_levels].index)]  # lrs with the axis varied
        if group.empty:
            continue
        out = {
            "axis": axis,
            **dict(zip(fixed, key)),
            "lr": float("nan"),
            axis: float("nan"),
            "n_runs": len(group),
            "n_lrs": group["lr"].nunique(),
            "n_levels": group[axis].nunique(),
            "seeds_per_cell": _count_range(group.groupby(["lr", axis]).size()),
            "unit": AXIS_UNITS[axis][1],
        }
        for name, column in (("avr", A_AVR), ("baseline", BASELINE)):
            out.update({f"{name}_{k}": v for k, v in _axis_effect(group, column, axis).items()})
        rows.append(out)
    return pd.DataFrame(rows, columns=AXIS_CLAIM_COLUMNS)


INTERACTION_COLUMNS = [
    "dataset",
    "model",
    "train_noise",
    "budget",
    "optimizer",
    "versus",
    "n_runs",
    "seeds_per_cell",
    "unit",
    *[f"avr_{k}" for k in EFFECT_KEYS],
]


def batch_size_interactions(runs: pd.DataFrame) -> pd.DataFrame:
    """Does batch size move A_avr differently for two optimizers? Per (dataset, model, train_noise, budget) and
    pair of optimizers whose runs vary B at the same lrs: the difference of their batch-size effects
    (axis_weights of each, one Welch contrast over both optimizers' cells), per doubling of B. verdict:
    "higher for <optimizer>" / "higher for <versus>" (the signed effect) or NO_AXIS_EFFECT (columns:
    INTERACTION_COLUMNS)."""
    kept = evaluated_runs(runs)
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
                    "seeds_per_cell": _count_range(pair.groupby(["optimizer", "lr", "batch_size"]).size()),
                    "unit": AXIS_UNITS["batch_size"][1],
                }
                fitted = cellfit.fit(pair, A_AVR, ["optimizer", "lr", "batch_size"])
                if fitted is None:
                    rows.append({**out, "avr_verdict": TOO_FEW_SEEDS})
                    continue
                weights = np.zeros(len(fitted.cells))
                for optimizer, sign in ((first, 1.0), (second, -1.0)):
                    mine = (fitted.cells["optimizer"] == optimizer).to_numpy()
                    weights[mine] = sign * axis_weights(fitted.cells[mine].reset_index(drop=True), "batch_size")
                test = fitted.t(weights)
                words = verdict_words(
                    test["ci_low"], test["ci_high"], f"higher for {second}", f"higher for {first}", NO_AXIS_EFFECT
                )
                rows.append(
                    {
                        **out,
                        "avr_effect": test["estimate"],
                        **{f"avr_{k}": test[k] for k in EFFECT_KEYS[1:-1]},
                        "avr_verdict": words,
                    }
                )
    return pd.DataFrame(rows, columns=INTERACTION_COLUMNS)


# ---------------------------------------------------------------- eq. 2: which gradient-noise scale matters?
# value = c + a log lr + b log B over the cells. A response that depends on lr and B only through lr^k / B has
# b / a = -1 / k: eq. 2's bound on the gradient-noise power (lr^2 C / B) predicts -1/2, the SDE noise scale of
# Smith & Le (2018) and Jastrzebski et al. (2017) (lr / B) predicts -1, and a response to lr alone b = 0.
PREDICTIONS = {"lr^2/B": -0.5, "lr/B": -1.0, "lr alone": 0.0}  # name -> the b / a it predicts
NO_EFFECT = "no effect to test"
CURVED = "not linear in log lr and log B: no prediction tested"
GATES = (TOO_FEW_SEEDS, NO_EFFECT, CURVED)  # verdicts that name no prediction
PREDICTS = "predictions"  # an eq. 2 row on A_avr: which of PREDICTIONS its plane excludes
SCALES = "scaling"  # an eq. 2 row on a measured noise (log): how it scales with lr and B, no prediction
EQ2_COLUMNS = [
    "dataset",
    "model",
    "optimizer",
    "train_noise",
    "budget",
    "value",
    "kind",
    "n_runs",
    "n_lrs",
    "n_batch_sizes",
    "seeds_per_cell",
    "df",
    *[f"{slope}{k}" for slope in ("lr_slope", "b_slope") for k in ("", "_ci_low", "_ci_high", "_p", "_mde")],
    "effect_p",
    "effect_mde",
    "lack_of_fit_p",
    "ratio",
    "ratio_set",
    *[f"p_{name}" for name in PREDICTIONS],
    "excluded",
    "verdict",
]


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


def eq2_test(runs: pd.DataFrame, value: str = A_AVR, log_value: bool = False) -> pd.DataFrame:
    """Which gradient-noise scale moves `value`? Per (dataset, model, optimizer, train_noise, budget) with >= 2 lrs
    and >= 2 batch sizes: the least-squares plane value = c + a log(lr) + b log(B) through the cell means
    (cellfit: each cell its own spread).

    On A_avr (kind PREDICTS): each prediction of PREDICTIONS is tested by its linear contrast b - r a (b + a/2 for
    lr^2/B, b + a for lr/B, b for lr alone) with a Welch t test; ratio_set is Fieller's 95 % set of b / a;
    eq2_verdict gives the gates ("too few seeds", "no effect to test" when the F test of a = b = 0 does not
    reject, CURVED when the lack-of-fit test rejects) and the excluded predictions.
    On log(value) (`log_value`, kind SCALES: a measured noise C or the update's own spread): a and b are the
    exponents of lr and B in value ~ lr^a B^b, stated with their intervals; no prediction of A_avr is tested.
    Calibration: benchmarks/calibration.py (columns: EQ2_COLUMNS)."""
    _require(runs, "dataset", "model", "optimizer", "lr", "batch_size", value)
    kept = with_axes(runs[_learned(runs)]).dropna(subset=[value, "batch_size"])
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
            "seeds_per_cell": _count_range(group.groupby(["lr", "batch_size"]).size()),
            "df": fitted.df if fitted is not None else 0.0,
        }
        if fitted is None:
            rows.append({**out, "verdict": TOO_FEW_SEEDS})
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
            rows.append({**out, "verdict": scaling_verdict(out)})
            continue
        (v_aa, v_ab), (_, v_bb) = fitted.covariance(np.vstack([a_w, b_w]))
        df = min(fitted.t(a_w)["df"], fitted.t(b_w)["df"])  # Fieller's quantile at the smaller of the two dfs
        a, b = out["lr_slope"], out["b_slope"]
        ratio_set = cellfit.fieller(a, b, v_aa, v_ab, v_bb, cellfit.t_quantile(df))
        p_of = {name: fitted.t(b_w - r * a_w)["p"] for name, r in PREDICTIONS.items()}
        excluded, verdict = eq2_verdict(out["effect_p"], out["lack_of_fit_p"], p_of)
        rows.append(
            {
                **out,
                "ratio": b / a if a else float("nan"),
                "ratio_set": _interval_text(ratio_set),
                **{f"p_{name}": p for name, p in p_of.items()},
                "excluded": ", ".join(excluded),
                "verdict": verdict,
            }
        )
    return pd.DataFrame(rows, columns=EQ2_COLUMNS)


# ---------------------------------------------------------------- did the model learn?
LEARNED_P_VALUE = 1e-3  # one-sided binomial test of the test accuracy against chance (1 / classes)


def above_chance(accuracy: float, n: int, classes: int, p_value: float = LEARNED_P_VALUE) -> bool:
    """True when `accuracy` on `n` test examples is clearly above chance 1/classes: a one-sided binomial test
    (H0: hits ~ Binomial(n, 1/classes)) rejects at `p_value`. A model at chance has A = a / a_0 meaningless."""
    if not np.isfinite(accuracy) or n < 1:
        return False
    hits = int(round(accuracy * n))
    return bool(sps.binomtest(hits, n, 1.0 / classes, alternative="greater").pvalue < p_value)
