"""Statistics over seeds for the paper's claims (numpy, pandas and scipy only: no mlflow, no matplotlib).

The paper reads "A_avr falls as the learning rate rises" off ONE run per cell. Here each seed is a point:
trends are Spearman's rho over runs with a percentile bootstrap interval that resamples runs WITHIN each
learning rate (every lr keeps its count, so only seed-to-seed spread moves the interval), the sweet spot gets
the share of resamples that pick each lr, and the grad-noise mechanism is a Spearman association across runs.

Within-x resampling of n_g runs gives each x value's mean a bootstrap variance of (n_g - 1)/n_g times its
sampling variance, so plain percentile intervals are too narrow with a few seeds (measured false "trend"
rate on pure noise, 6 lrs: 25 % with 2 seeds, 13 % with 3, 7-8 % with 5). Before resampling, each run's
deviation from its x value's mean is therefore scaled by sqrt(n_g / (n_g - 1)) (Davison & Hinkley 1997,
stratified bootstrap with adjusted residuals), which brings 5 seeds to the nominal 5 % (14 % / 8 % with 2 / 3).

Spearman's rho (ties get average ranks) is Pearson's r of the ranks:
    rho = sum_i (r_i - mean r)(s_i - mean s) / sqrt(sum_i (r_i - mean r)^2 * sum_i (s_i - mean s)^2).
Every bootstrap is seeded with numpy.random.default_rng(seed) and vectorised: one (n_boot, n) matrix of
row indices, ranked row by row at once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

from lrnoise import cellfit, config, paper
from lrnoise.errors import LrnoiseError

BASELINE = "baseline_accuracy"  # a_0, the same name as lrnoise.tracking.BASELINE_ACCURACY
A_AVR = "avg_normalized_accuracy"  # A_avr, eq. 9; lrnoise.tracking.AVG_NORMALIZED_ACCURACY
GRAD_NOISE = "grad_noise_power_mean"  # lr^2 C / B, eq. 2's bound; lrnoise.tracking.GRAD_NOISE_POWER_MEAN
GRAD_NOISE_C = "grad_noise_c_mean"  # C itself, as measured (eq. 3); lrnoise.tracking.GRAD_NOISE_C + MEAN_SUFFIX
UPDATE_NOISE = "update_noise_power_mean"  # lrnoise.tracking.UPDATE_NOISE_POWER_MEAN
UPDATE_SPREAD = "update_noise_spread_mean"  # update_noise_power_mean / lr^2: the update's own measured spread
AXES = config.AXES  # the swept training axes; a claim over one holds the others fixed
CELL = list(config.CELL)  # an lr claim's cell: runs of it are seeds
MIN_BOOT = 2000
NOT_MEASURED = "not measured"
TOO_FEW_RUNS = "too few runs"
TOO_FEW_SEEDS = "too few seeds"  # some x value has a single run: the within-x bootstrap cannot see its spread
NO_PAPER_ROW = "—"
_TIE = 1e-12  # floating slack so a baseline exactly max_accuracy_drop below the best still counts as within it


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
def _check_n_boot(n_boot: int) -> None:
    if int(n_boot) < MIN_BOOT:
        raise LrnoiseError(f"n_boot={n_boot} is too few bootstrap resamples; use n_boot >= {MIN_BOOT}")


def _resample_indices(groups, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Row indices of n_boot resamples, (n_boot, n): column j draws with replacement from the group holding row j.

    groups: index arrays that partition range(n) (one per x value). Because a column never leaves its group,
    every resample keeps each group's count and x[idx] == x; one draw per group, no loop over resamples."""
    groups = [np.asarray(g, dtype=np.intp) for g in groups]
    n = sum(len(g) for g in groups)
    idx = np.empty((int(n_boot), n), dtype=np.intp)
    for g in groups:
        idx[:, g] = g[rng.integers(0, len(g), size=(int(n_boot), len(g)))]
    return idx


def _inflate(values: np.ndarray, groups) -> np.ndarray:
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
    on the x values' ranks, i.e. per step of the grid, with its 95 % t interval from the block model (cellfit:
    seeds as blocks where a `seed` column pairs runs across x values, else the pooled within-x variance).
    Exact under equal means whatever the seed count, so the verdict keeps its nominal 5 % false alarms with two
    or three seeds per value (benchmarks/calibration.py); Spearman's rho over runs is given beside it to describe
    the ranking.

    verdict: f"falls with {x}" if ci_high < 0, f"rises with {x}" if ci_low > 0, else "no clear trend";
    f"too few {x} values" with fewer than 2 distinct x, "too few seeds" when no degree of freedom is left for the
    seeds' variance (one run per x value)."""
    _require(frame, x, value)
    have = frame.dropna(subset=[x, value])
    if "seed" not in have:
        have = have.assign(seed=np.arange(len(have)))
    levels = np.unique(have[x].to_numpy(dtype=float))
    out = {
        "rho": float("nan"),
        "slope": float("nan"),
        "ci_low": float("nan"),
        "ci_high": float("nan"),
        "verdict": f"too few {x} values",
        "n_runs": len(have),
        "n_levels": len(levels),
        "seed_blocks": False,
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
    out.update(slope=test["estimate"], ci_low=test["ci_low"], ci_high=test["ci_high"], seed_blocks=fitted.blocked)
    out["verdict"] = _verdict(test["ci_low"], test["ci_high"], f"falls with {x}", f"rises with {x}", "no clear trend")
    return out


def _verdict(low: float, high: float, negative: str, positive: str, neither: str) -> str:
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
    eligible = mean_base >= mean_base.max(axis=1, keepdims=True) - max_accuracy_drop - _TIE
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
    _check_n_boot(n_boot)
    have, levels, groups, onehot = _sweet_spot_table(frame, baseline, robust, max_accuracy_drop, x)
    if len(have) == 0:
        return {}
    idx = _resample_indices(groups, n_boot, np.random.default_rng(seed))
    base = _inflate(have[baseline].to_numpy(dtype=float), groups)
    rob = _inflate(have[robust].to_numpy(dtype=float), groups)
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
    95 % t interval. verdict: "negative" / "positive" when the interval excludes 0, else "no clear association";
    "too few runs" when no degree of freedom is left or `column` does not vary within any lr."""
    import statsmodels.api as sm

    have = frame.dropna(subset=[column, value])
    have = have[have[column] > 0]
    out = {"slope": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "verdict": TOO_FEW_RUNS}
    x = np.log(have[column].to_numpy(dtype=float))
    lrs = have["lr"].to_numpy(dtype=float)
    lr_columns = (lrs[:, None] == np.unique(lrs)[None, :]).astype(float)
    design = np.column_stack([lr_columns, x])
    if len(have) - np.linalg.matrix_rank(design) < 1 or np.linalg.matrix_rank(design) < design.shape[1]:
        return out
    fitted = sm.OLS(have[value].to_numpy(dtype=float), design).fit()
    low, high = fitted.conf_int(alpha=0.05)[-1] * np.log(2)
    out.update(slope=float(fitted.params[-1] * np.log(2)), ci_low=float(low), ci_high=float(high))
    out["verdict"] = _verdict(low, high, "negative", "positive", "no clear association")
    return out


def _mechanism(cell: pd.DataFrame, column: str, prefix: str) -> dict:
    if column not in cell or cell[column].isna().all():
        found = {"slope": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "verdict": NOT_MEASURED}
    else:
        found = association_within_lr(cell, column)
    return {f"{prefix}_{key}": found[key] for key in ("slope", "ci_low", "ci_high", "verdict")}


def _count_range(counts) -> str:
    low, high = int(min(counts)), int(max(counts))
    return str(low) if low == high else f"{low}-{high}"


CLAIM_COLUMNS = [
    *CELL,
    "n_runs",
    "n_lrs",
    "seeds_per_lr",
    "seed_blocks",
    "avr_rho",
    "avr_slope",
    "avr_ci_low",
    "avr_ci_high",
    "avr_verdict",
    "baseline_rho",
    "baseline_slope",
    "baseline_ci_low",
    "baseline_ci_high",
    "baseline_verdict",
    "sweet_spot_lr",
    "sweet_spot_share",
    "sweet_spot_shares",
    "mechanism_slope",
    "mechanism_ci_low",
    "mechanism_ci_high",
    "mechanism_verdict",
    "update_mechanism_slope",
    "update_mechanism_ci_low",
    "update_mechanism_ci_high",
    "update_mechanism_verdict",
    "paper_avr_rho",
    "agrees_with_paper",
]


def _claim(key: tuple, cell: pd.DataFrame, max_accuracy_drop: float, n_boot: int, seed: int) -> dict:
    """One claims row from a cell's noise-evaluated runs (one row per run, A_avr present)."""
    dataset, model, optimizer, batch_size, train_noise = key
    avr = trend(cell, A_AVR)
    base = trend(cell, BASELINE)
    spot = sweet_spot(cell, BASELINE, A_AVR, max_accuracy_drop)
    shares = sweet_spot_shares(cell, BASELINE, A_AVR, max_accuracy_drop, n_boot=n_boot, seed=seed)
    # Table III is Adam, trained clean: another optimizer or noise-injection training has no paper row
    paper_rho = paper_trend(dataset, model) if optimizer == "adam" and not train_noise else float("nan")
    return {
        "dataset": dataset,
        "model": model,
        "optimizer": optimizer,
        "batch_size": batch_size,
        "train_noise": train_noise,
        "n_runs": len(cell),
        "n_lrs": avr["n_levels"],
        "seeds_per_lr": _count_range(cell.groupby("lr").size()),
        "seed_blocks": avr["seed_blocks"],
        **{f"avr_{k}": avr[k] for k in ("rho", "slope", "ci_low", "ci_high", "verdict")},
        **{f"baseline_{k}": base[k] for k in ("rho", "slope", "ci_low", "ci_high", "verdict")},
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
    """One row per cell (dataset, model, optimizer, batch_size, train_noise) with >= min_lrs distinct lrs
    having A_avr: the A_avr and baseline trends against lr, the sweet spot and how often resamples agree with
    it, the grad/update noise-power associations with A_avr, and the paper's Table III trend (columns:
    CLAIM_COLUMNS).

    runs: one row per run (columns dataset, model, optimizer, lr, seed, baseline_accuracy,
    avg_normalized_accuracy, optionally batch_size, train_noise, grad_noise_power_mean,
    update_noise_power_mean, learned). Runs with learned == False are dropped; a cell's sample is its runs
    with A_avr. Every cell uses the same `seed`."""
    _check_n_boot(n_boot)
    _require(runs, "dataset", "model", "optimizer", "lr", BASELINE, A_AVR)
    kept = evaluated_runs(runs)
    rows = [
        _claim(key, cell, max_accuracy_drop, n_boot, seed)
        for key, cell in kept.groupby(CELL, sort=True, dropna=False)
        if cell["lr"].nunique() >= min_lrs
    ]
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)


def with_axes(runs: pd.DataFrame) -> pd.DataFrame:
    """runs with every training axis as a number: lr and batch_size as given (batch_size NaN when absent),
    train_noise 0.0 where absent (a run from before noise-injection training trained clean)."""
    out = runs.copy()
    out["lr"] = out["lr"].astype(float)
    out["batch_size"] = pd.to_numeric(out["batch_size"], errors="coerce") if "batch_size" in out else np.nan
    out["train_noise"] = pd.to_numeric(out["train_noise"], errors="coerce").fillna(0.0) if "train_noise" in out else 0.0
    return out


def evaluated_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs every claim is made on: models that learned, with A_avr, their axes as numbers."""
    return with_axes(runs[_learned(runs)].dropna(subset=[A_AVR]))


# ---------------------------------------------------------------- effects of batch size and train noise
AXIS_UNITS = {  # each axis's effect is stated per step of this size (x as the pooled test sees it, and its words)
    "batch_size": (lambda b: np.log2(b), "per doubling of B"),
    "train_noise": (lambda eta: eta / 0.1, "per +0.1 train-noise eta"),
}
AXIS_CLAIM_COLUMNS = [
    "axis",
    "dataset",
    "model",
    "optimizer",
    "lr",
    "batch_size",
    "train_noise",
    "n_runs",
    "n_lrs",
    "n_levels",
    "seeds_per_cell",
    "seed_blocks",
    "df",
    "unit",
    "avr_effect",
    "avr_ci_low",
    "avr_ci_high",
    "avr_p",
    "avr_verdict",
    "baseline_effect",
    "baseline_ci_low",
    "baseline_ci_high",
    "baseline_p",
    "baseline_verdict",
]


def _axis_effect(group: pd.DataFrame, value: str, axis: str) -> tuple[dict, cellfit.CellFit | None]:
    """The pooled effect of `axis` on `value` over every lr of `group`: the least-squares slope of the cell
    means on x (AXIS_UNITS) with each lr its own intercept, seeds as blocks (cellfit), its t interval and p;
    and the fit."""
    fitted = cellfit.fit(group, value, ["lr", axis])
    if fitted is None:
        return {"effect": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "p": float("nan")}, None
    cells = fitted.cells
    to_x = AXIS_UNITS[axis][0]
    lr_columns = (cells["lr"].to_numpy()[:, None] == np.unique(cells["lr"])[None, :]).astype(float)
    design = np.column_stack([lr_columns, to_x(cells[axis].to_numpy(dtype=float))])  # (cells, lrs + 1)
    test = fitted.t(np.linalg.pinv(design)[-1])
    return {"effect": test["estimate"], "ci_low": test["ci_low"], "ci_high": test["ci_high"], "p": test["p"]}, fitted


def axis_claims(runs: pd.DataFrame, axis: str, min_levels: int = 2) -> pd.DataFrame:
    """The effect of `axis` (batch_size or train_noise) on A_avr and on the baseline accuracy: one pooled test
    per group of runs that differ only in lr, that axis and their seed (>= min_levels values of the axis at some
    lr), lr and seed as fixed effects (_axis_effect). The effect is in accuracy (a fraction; x100: points) per
    step of AXIS_UNITS, with its 95 % t interval. verdict: "falls with <axis>" when the interval is below 0,
    "rises with <axis>" above, else "no clear effect"; "too few seeds" when the seeds leave no degree of freedom.
    The swept axis's own column and lr read NaN (columns: AXIS_CLAIM_COLUMNS)."""
    if axis not in AXIS_UNITS:
        raise LrnoiseError(f"unknown axis {axis!r}: choose one of {', '.join(AXIS_UNITS)} (lr: claims())")
    _require(runs, "dataset", "model", "optimizer", "lr", BASELINE, A_AVR)
    kept = evaluated_runs(runs)
    if "seed" not in kept:
        kept = kept.assign(seed=np.arange(len(kept)))  # no seeds recorded: every run its own
    fixed = ["dataset", "model", "optimizer", *[a for a in AXES if a not in (axis, "lr")]]
    rows = []
    for key, group in kept.groupby(fixed, sort=True, dropna=False):
        varied = group.groupby("lr")[axis].nunique()
        group = group[group["lr"].isin(varied[varied >= min_levels].index)]  # lrs with the axis varied
        if group.empty:
            continue
        effects = {name: _axis_effect(group, column, axis) for name, column in (("avr", A_AVR), ("baseline", BASELINE))}
        fitted = effects["avr"][1]
        out = {
            "axis": axis,
            **dict(zip(fixed, key)),
            "lr": float("nan"),
            axis: float("nan"),
            "n_runs": len(group),
            "n_lrs": group["lr"].nunique(),
            "n_levels": group[axis].nunique(),
            "seeds_per_cell": _count_range(group.groupby(["lr", axis]).size()),
            "seed_blocks": bool(fitted is not None and fitted.blocked),
            "df": fitted.df if fitted is not None else 0.0,
            "unit": AXIS_UNITS[axis][1],
        }
        for name, (effect, _) in effects.items():
            out.update({f"{name}_{k}": v for k, v in effect.items()})
            out[f"{name}_verdict"] = (
                TOO_FEW_SEEDS
                if fitted is None
                else _verdict(
                    effect["ci_low"], effect["ci_high"], f"falls with {axis}", f"rises with {axis}", "no clear effect"
                )
            )
        rows.append(out)
    return pd.DataFrame(rows, columns=AXIS_CLAIM_COLUMNS)


# ---------------------------------------------------------------- eq. 2: which gradient-noise scale matters?
# value = c + a log lr + b log B over the cells. A response that depends on lr and B only through lr^k / B has
# b / a = -1 / k: eq. 2's bound on the gradient-noise power (lr^2 C / B) predicts -1/2, the SDE noise scale of
# Smith & Le (2018) and Jastrzebski et al. (2017) (lr / B) predicts -1, and a response to lr alone b = 0.
PREDICTIONS = {"lr^2/B": -0.5, "lr/B": -1.0, "lr alone": 0.0}  # name -> the b / a it predicts
NO_EFFECT = "no effect to test"
CURVED = "not linear in log lr and log B: no prediction tested"
GATES = (TOO_FEW_SEEDS, NO_EFFECT, CURVED)  # verdicts that name no prediction
EQ2_COLUMNS = [
    "dataset",
    "model",
    "optimizer",
    "train_noise",
    "value",
    "n_runs",
    "n_lrs",
    "n_batch_sizes",
    "seeds_per_cell",
    "seed_blocks",
    "df",
    "lr_slope",
    "lr_slope_ci_low",
    "lr_slope_ci_high",
    "b_slope",
    "b_slope_ci_low",
    "b_slope_ci_high",
    "effect_p",
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
    from lr/B'."""
    kept = [name for name in PREDICTIONS if name not in excluded]
    if not excluded:
        return "cannot tell " + ", ".join(kept[:-1]) + f" or {kept[-1]} apart"
    said = "excludes " + (
        " and ".join(excluded) if len(excluded) < 3 else f"{excluded[0]}, {excluded[1]} and {excluded[2]}"
    )
    if not kept:
        return said + " (none of the three predictions holds)"
    if len(kept) == 1:
        return f"{said}; consistent with {kept[0]}"
    return f"{said}; cannot tell {kept[0]} from {kept[1]}"


def eq2_test(runs: pd.DataFrame, value: str = A_AVR, log_value: bool = False) -> pd.DataFrame:
    """Which gradient-noise scale moves `value`? Per (dataset, model, optimizer, train_noise) with >= 2 lrs and
    >= 2 batch sizes: the least-squares plane value = c + a log(lr) + b log(B) through the cell means of the block
    model (cellfit: seeds as blocks; log(value) when `log_value`, for a measured noise power). Each prediction of
    PREDICTIONS is tested by its linear contrast b - r a (b + a/2 for lr^2/B, b + a for lr/B, b for lr alone) with
    a t test; ratio_set is Fieller's exact 95 % set of b / a (an interval, two rays, or every ratio), the ratios
    those tests do not reject.

    Gates, in order: "too few seeds" when no degree of freedom is left for the seeds' variance; "no effect to
    test" when the F test of a = b = 0 does not reject at 5 % (effect_p); CURVED when the cell means are not on a
    plane (lack-of-fit F test at 5 %: a straight slope's ratio would mean nothing). Else the verdict names the
    predictions the data exclude (p < 0.05) and those they cannot tell apart (prediction_verdict).
    False alarms and coverage on the presets' designs: benchmarks/calibration.py (columns: EQ2_COLUMNS)."""
    _require(runs, "dataset", "model", "optimizer", "lr", "batch_size", value)
    kept = with_axes(runs[_learned(runs)]).dropna(subset=[value, "batch_size"])
    if log_value:
        kept = kept[kept[value] > 0]
        kept = kept.assign(**{value: np.log(kept[value].to_numpy(dtype=float))})
    if "seed" not in kept:
        kept = kept.assign(seed=np.arange(len(kept)))
    rows = []
    for (dataset, model, optimizer, train_noise), group in kept.groupby(
        ["dataset", "model", "optimizer", "train_noise"], sort=True
    ):
        if group["lr"].nunique() < 2 or group["batch_size"].nunique() < 2:
            continue
        fitted = cellfit.fit(group, value, ["lr", "batch_size"])
        cell_sizes = group.groupby(["lr", "batch_size"]).size()
        out = {
            "dataset": dataset,
            "model": model,
            "optimizer": optimizer,
            "train_noise": train_noise,
            "value": f"log {value}" if log_value else value,
            "n_runs": len(group),
            "n_lrs": group["lr"].nunique(),
            "n_batch_sizes": group["batch_size"].nunique(),
            "seeds_per_cell": _count_range(cell_sizes),
            "seed_blocks": bool(fitted is not None and fitted.blocked),
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
        a, b = fitted.t(a_w), fitted.t(b_w)
        cov = fitted.result.cov_params()
        restriction = fitted.contrast(np.vstack([a_w, b_w]))
        (v_aa, v_ab), (_, v_bb) = restriction @ cov @ restriction.T
        ratio_set = cellfit.fieller(a["estimate"], b["estimate"], v_aa, v_ab, v_bb, cellfit.t_quantile(fitted.df))
        p_of = {name: fitted.t(b_w - r * a_w)["p"] for name, r in PREDICTIONS.items()}
        effect_p = fitted.f(np.vstack([a_w, b_w]))
        lack_of_fit_p = fitted.lack_of_fit(design)
        excluded = [name for name, p in p_of.items() if p < 0.05]
        verdict = NO_EFFECT if effect_p >= 0.05 else CURVED if lack_of_fit_p < 0.05 else prediction_verdict(excluded)
        rows.append(
            {
                **out,
                "lr_slope": a["estimate"],
                "lr_slope_ci_low": a["ci_low"],
                "lr_slope_ci_high": a["ci_high"],
                "b_slope": b["estimate"],
                "b_slope_ci_low": b["ci_low"],
                "b_slope_ci_high": b["ci_high"],
                "effect_p": effect_p,
                "lack_of_fit_p": lack_of_fit_p,
                "ratio": b["estimate"] / a["estimate"] if a["estimate"] else float("nan"),
                "ratio_set": _interval_text(ratio_set),
                **{f"p_{name}": p for name, p in p_of.items()},
                "excluded": ", ".join(excluded),
                "verdict": verdict,
            }
        )
    return pd.DataFrame(rows, columns=EQ2_COLUMNS)


# ---------------------------------------------------------------- lr tuning against noise-injection training
LR_TUNING = "lr tuning"
NOISE_TRAINING = "noise-injection training"
FRONTIER_COLUMNS = [
    "dataset",
    "model",
    "optimizer",
    "batch_size",
    "noise_lr",
    "n_runs",
    "target_accuracy",
    "target_from",
    "lr_best_lr",
    "lr_best_avr",
    "lr_best_baseline",
    "lr_reach_share",
    "noise_best_train_noise",
    "noise_best_avr",
    "noise_best_baseline",
    "noise_reach_share",
    "difference",
    "ci_low",
    "ci_high",
    "seed_blocks",
    "df",
    "verdict",
]


def _best_at_target(mean_base: np.ndarray, mean_avr: np.ndarray, members: np.ndarray, target: float) -> int | None:
    """Index of the configuration of `members` with the highest mean A_avr among those whose mean baseline
    reaches `target`; None when none does."""
    eligible = np.flatnonzero(members & (mean_base >= target - _TIE))
    return int(eligible[np.argmax(mean_avr[eligible])]) if len(eligible) else None


def frontier(
    runs: pd.DataFrame,
    max_accuracy_drop: float = 0.01,
    target_accuracy: float | None = None,
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Does a tuned lr buy as much noise resistance as noise-injection training, at the same clean accuracy?
    Per (dataset, model, optimizer, batch_size) with clean runs at >= 2 lrs and noise-injection runs
    (train_noise > 0) at one lr:

    - the lr-tuning sweep is every clean configuration (the eta = 0 run at the noise lr included: it is a clean
      lr, and it is counted there only); the noise-injection sweep is the train noises > 0 at that lr;
    - the target accuracy is fixed before the comparison: `target_accuracy` when given, else the eta = 0
      configuration's mean baseline less max_accuracy_drop (computed once, never per resample);
    - each method's best is its configuration with the highest mean A_avr among those whose mean baseline reaches
      the target; difference = noise best - lr best, with the 95 % t interval of that contrast of the two cell
      means (cellfit: seeds as blocks). The interval is for the two configurations chosen (on the same runs);
    - lr_reach_share / noise_reach_share: how often each method has a configuration at the target when the runs
      are resampled within configurations (no sentinel value enters any interval).

    verdict: "noise-injection training dominates" (interval above 0), "lr tuning dominates" (below), "no clear
    difference", "only <method> reaches the target", "neither method reaches the target", or "too few seeds"
    (no degree of freedom for the seeds' variance). Coverage on the mechanism design: benchmarks/calibration.py
    (columns: FRONTIER_COLUMNS)."""
    _check_n_boot(n_boot)
    kept = evaluated_runs(runs)
    if "seed" not in kept:
        kept = kept.assign(seed=np.arange(len(kept)))
    rows = []
    for (dataset, model, optimizer, batch_size), group in kept.groupby(
        ["dataset", "model", "optimizer", "batch_size"], sort=True, dropna=False
    ):
        noisy = group[group["train_noise"] > 0]
        if noisy.empty or noisy["lr"].nunique() != 1 or group[group["train_noise"] == 0]["lr"].nunique() < 2:
            continue
        noise_lr = float(noisy["lr"].iloc[0])
        use = group[(group["train_noise"] == 0) | (group["lr"] == noise_lr)].reset_index(drop=True)
        fitted = cellfit.fit(use, A_AVR, ["lr", "train_noise"])
        cells = fitted.cells if fitted is not None else use[["lr", "train_noise"]].drop_duplicates()
        cells = cells.sort_values(["lr", "train_noise"]).reset_index(drop=True)
        position = use[["lr", "train_noise"]].merge(cells.reset_index(), on=["lr", "train_noise"])["index"]
        onehot = np.eye(len(cells))[position.to_numpy()]  # (runs, cells)
        counts = onehot.sum(axis=0)
        base, avr = use[BASELINE].to_numpy(dtype=float), use[A_AVR].to_numpy(dtype=float)
        mean_base, mean_avr = base @ onehot / counts, avr @ onehot / counts
        lr_members = (cells["train_noise"] == 0).to_numpy()
        noise_members = ~lr_members
        start = np.flatnonzero(lr_members & (cells["lr"] == noise_lr).to_numpy())
        if target_accuracy is not None:
            target, target_from = float(target_accuracy), "given"
        elif len(start):
            target = float(mean_base[start[0]] - max_accuracy_drop)
            target_from = f"eta 0 at lr {noise_lr:g} less {max_accuracy_drop:.0%}"
        else:
            continue  # no clean run at the noise lr to fix the target from
        lr_at = _best_at_target(mean_base, mean_avr, lr_members, target)
        noise_at = _best_at_target(mean_base, mean_avr, noise_members, target)
        groups = [np.flatnonzero(position.to_numpy() == k) for k in range(len(cells))]
        idx = _resample_indices(groups, n_boot, np.random.default_rng(seed))
        boot_base = _inflate(base, groups)[idx] @ onehot / counts  # (n_boot, cells)
        reaches = boot_base >= target - _TIE

        def at(k, column):
            return float(column[k]) if k is not None else float("nan")

        out = {
            "dataset": dataset,
            "model": model,
            "optimizer": optimizer,
            "batch_size": batch_size,
            "noise_lr": noise_lr,
            "n_runs": len(use),
            "target_accuracy": target,
            "target_from": target_from,
            "lr_best_lr": at(lr_at, cells["lr"].to_numpy()),
            "lr_best_avr": at(lr_at, mean_avr),
            "lr_best_baseline": at(lr_at, mean_base),
            "lr_reach_share": float(reaches[:, lr_members].any(axis=1).mean()),
            "noise_best_train_noise": at(noise_at, cells["train_noise"].to_numpy()),
            "noise_best_avr": at(noise_at, mean_avr),
            "noise_best_baseline": at(noise_at, mean_base),
            "noise_reach_share": float(reaches[:, noise_members].any(axis=1).mean()),
            "difference": float("nan"),
            "ci_low": float("nan"),
            "ci_high": float("nan"),
            "seed_blocks": bool(fitted is not None and fitted.blocked),
            "df": fitted.df if fitted is not None else 0.0,
        }
        if fitted is None:
            verdict = TOO_FEW_SEEDS
        elif lr_at is None or noise_at is None:
            reached = [name for name, k in ((LR_TUNING, lr_at), (NOISE_TRAINING, noise_at)) if k is not None]
            verdict = f"only {reached[0]} reaches the target" if reached else "neither method reaches the target"
        else:
            contrast = fitted.t(np.eye(len(cells))[noise_at] - np.eye(len(cells))[lr_at])
            out.update(difference=contrast["estimate"], ci_low=contrast["ci_low"], ci_high=contrast["ci_high"])
            verdict = _verdict(
                contrast["ci_low"],
                contrast["ci_high"],
                f"{LR_TUNING} dominates",
                f"{NOISE_TRAINING} dominates",
                "no clear difference",
            )
        rows.append({**out, "verdict": verdict})
    return pd.DataFrame(rows, columns=FRONTIER_COLUMNS)


# ---------------------------------------------------------------- did the model learn?
LEARNED_P_VALUE = 1e-3  # one-sided binomial test of the test accuracy against chance (1 / classes)


def above_chance(accuracy: float, n: int, classes: int, p_value: float = LEARNED_P_VALUE) -> bool:
    """True when `accuracy` on `n` test examples is clearly above chance 1/classes: a one-sided binomial test
    (H0: hits ~ Binomial(n, 1/classes)) rejects at `p_value`. A model at chance has A = a / a_0 meaningless."""
    if not np.isfinite(accuracy) or n < 1:
        return False
    hits = int(round(accuracy * n))
    return bool(sps.binomtest(hits, n, 1.0 / classes, alternative="greater").pvalue < p_value)
