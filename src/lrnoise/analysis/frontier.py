"""lr tuning against noise-injection training at the same clean accuracy: best against best, valid after the
choice of both bests (no MLflow, no figures).

Each method is a set of configurations: the lr sweep (every clean configuration, the eta = 0 one at the noise lr
included) and the noise-injection sweep (train noise > 0 at one lr). Among those whose mean baseline accuracy
reaches the target, each method's best is the one with the highest mean A_avr. The quantity compared is

    theta = max_j mu_j - max_i mu_i = max_j min_i (mu_j - mu_i)       (j: noise-injection, i: lr sweep)

and both maxima are taken on the same runs that estimate them. So every pair (j, i) gets a simultaneous interval
L_ji <= mu_j - mu_i <= U_ji from the max-t distribution of the pairs' Welch t statistics (each cell its own
spread, lrnoise.analysis.cellfit), and

    max_j min_i L_ji <= theta <= max_j min_i U_ji

holds whenever every pair's interval does: with probability >= 95 % whichever configurations the data favour.
The max-t quantile is drawn by simulation (cell-mean errors ~ N(0, s_c^2 / n_c), their variance estimates ~
scaled chi^2 with n_c - 1 df), seeded, so a report is reproducible."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from lrnoise import names
from lrnoise.analysis import cellfit, intervals, run_table
from lrnoise.analysis.run_table import NAN, TIE, TOO_FEW_SEEDS

LR_TUNING = "lr tuning"
NOISE_TRAINING = "noise-injection training"
NO_CLEAR = "no clear difference"
MAX_T_DRAWS = 20000  # simulated max-|t| values per comparison: the 95 % quantile to about +-0.01


@dataclass(kw_only=True)
class FrontierRow:
    """One row of frontier(). The fields are the table's columns, in order; n_pairs to mde come from
    best_against_best and read NaN where it was not run (too few seeds, a method short of the target)."""

    dataset: str
    model: str
    optimizer: str
    batch_size: float
    budget: str
    noise_lr: float  # the lr of the noise-injection runs
    n_runs: int
    target_accuracy: float
    target_from: str  # "given", or how the target was derived
    lr_best_lr: float
    lr_best_avr: float
    lr_best_baseline: float
    lr_reach_share: float
    noise_best_train_noise: float
    noise_best_avr: float
    noise_best_baseline: float
    noise_reach_share: float
    n_pairs: int = NAN
    critical_t: float = NAN
    difference: float = NAN  # theta: best noise-injection mean A_avr less best lr-sweep mean A_avr
    ci_low: float = NAN
    ci_high: float = NAN
    p: float = NAN
    mde: float = NAN
    verdict: str


FRONTIER_COLUMNS = run_table.columns(FrontierRow)


def max_t_draws(variances: np.ndarray, counts: np.ndarray, pairs: np.ndarray, rng, draws: int) -> np.ndarray:
    """(draws,) simulated max over `pairs` ((P, 2) cell indices j, i) of |Welch t| of mu_j - mu_i when every pair
    difference is 0: cell-mean errors with variance `variances` (s_c^2 / n_c) and their estimates drawn as
    variances * chi^2_{n_c - 1} / (n_c - 1)."""
    errors = rng.normal(size=(draws, len(variances))) * np.sqrt(variances)
    estimated = variances * rng.chisquare(counts - 1, size=(draws, len(variances))) / (counts - 1)
    j, i = pairs[:, 0], pairs[:, 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.abs(errors[:, j] - errors[:, i]) / np.sqrt(estimated[:, j] + estimated[:, i])
    return np.nanmax(np.nan_to_num(t, nan=0.0), axis=1)


def best_against_best(fit: cellfit.CellFit, noise_cells: np.ndarray, lr_cells: np.ndarray, seed: int = 0) -> dict:
    """theta = best noise-injection mean - best lr-sweep mean over the candidate cells, with its simultaneous
    95 % interval (module docstring), the p at which a winner would first be named, the critical max-t value,
    and the mde: the |theta| a winner is named for with 80 % power when one pair dominates."""
    pairs = np.array([(j, i) for j in noise_cells for i in lr_cells])
    variances, counts = fit.mean_variances, fit.counts
    difference = fit.means[pairs[:, 0]] - fit.means[pairs[:, 1]]
    se = np.sqrt(variances[pairs[:, 0]] + variances[pairs[:, 1]])
    draws = max_t_draws(variances, counts, pairs, np.random.default_rng(seed), MAX_T_DRAWS)
    critical = float(np.quantile(draws, 1 - cellfit.ALPHA))
    shape = (len(noise_cells), len(lr_cells))
    low = (difference - critical * se).reshape(shape).min(axis=1).max()
    high = (difference + critical * se).reshape(shape).min(axis=1).max()
    with np.errstate(invalid="ignore", divide="ignore"):
        t = (difference / se).reshape(shape)
    named_at = max(t.min(axis=1).max(), (-t).max(axis=1).min())  # the largest critical value naming a winner
    estimate = float(difference.reshape(shape).min(axis=1).max())
    dfs = [fit.t(np.eye(len(counts))[j] - np.eye(len(counts))[i])["df"] for j, i in pairs]
    power_quantile = sps.t.ppf(cellfit.POWER, np.nanmin(dfs)) if np.isfinite(np.nanmin(dfs)) else np.nan
    return {
        "n_pairs": len(pairs),
        "critical_t": critical,
        "difference": estimate,
        "ci_low": float(low),
        "ci_high": float(high),
        "p": float(np.mean(draws >= named_at)) if np.isfinite(named_at) else float("nan"),
        "mde": float((critical + power_quantile) * np.max(se)),
    }


def _best_at_target(mean_base: np.ndarray, mean_avr: np.ndarray, members: np.ndarray, target: float) -> int | None:
    eligible = np.flatnonzero(members & (mean_base >= target - TIE))
    return int(eligible[np.argmax(mean_avr[eligible])]) if len(eligible) else None


def frontier(
    runs: pd.DataFrame,
    max_accuracy_drop: float,
    target_accuracy: float | None = None,
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Does a tuned lr buy as much noise resistance as noise-injection training, at the same clean accuracy?
    Per (dataset, model, optimizer, batch_size, budget) with clean runs at >= 2 lrs and noise-injection runs at
    one lr:

    - the target accuracy: `target_accuracy` when given (fixed in advance: the clean comparison), else the eta = 0
      configuration's mean baseline less max_accuracy_drop, estimated from the same runs. The eta = 0
      configuration belongs to the lr sweep, so lr tuning reaches that target by construction (target_from
      says which);
    - the candidates of each method are its configurations whose mean baseline reaches the target; theta, its
      interval and p come from best_against_best (valid after choosing both bests);
    - lr_reach_share / noise_reach_share: how often each method has a configuration at the target when the runs
      are resampled within configurations.

    verdict: "noise-injection training dominates" (interval above 0), "lr tuning dominates" (below), NO_CLEAR,
    "only <method> reaches the target", "neither method reaches the target", or "too few seeds" (a configuration
    with fewer than two runs). Calibration: benchmarks/calibration.py (columns: FRONTIER_COLUMNS, the fields of
    FrontierRow)."""
    intervals.check_n_boot(n_boot)
    kept = run_table.evaluated_runs(runs)
    rows = []
    for (dataset, model, optimizer, batch_size, budget), group in kept.groupby(
        ["dataset", "model", "optimizer", "batch_size", "budget"], sort=True, dropna=False
    ):
        noisy = group[group["train_noise"] > 0]
        if noisy.empty or noisy["lr"].nunique() != 1 or group[group["train_noise"] == 0]["lr"].nunique() < 2:
            continue
        noise_lr = float(noisy["lr"].iloc[0])
        use = group[(group["train_noise"] == 0) | (group["lr"] == noise_lr)].reset_index(drop=True)
        cells = use[["lr", "train_noise"]].drop_duplicates().sort_values(["lr", "train_noise"]).reset_index(drop=True)
        position = use[["lr", "train_noise"]].merge(cells.reset_index(), on=["lr", "train_noise"])["index"].to_numpy()
        onehot = np.eye(len(cells))[position]  # (runs, cells)
        counts = onehot.sum(axis=0)
        base = use[names.BASELINE_ACCURACY].to_numpy(dtype=float)
        avr = use[names.AVG_NORMALIZED_ACCURACY].to_numpy(dtype=float)
        mean_base, mean_avr = base @ onehot / counts, avr @ onehot / counts
        lr_members = (cells["train_noise"] == 0).to_numpy()
        noise_members = ~lr_members
        start = np.flatnonzero(lr_members & (cells["lr"] == noise_lr).to_numpy())
        if target_accuracy is not None:
            target, target_from = float(target_accuracy), "given"
        elif len(start):
            target = float(mean_base[start[0]] - max_accuracy_drop)
            target_from = (
                f"eta 0 at lr {noise_lr:g} less {max_accuracy_drop:.0%}, from the same runs: that configuration is "
                "in the lr sweep, so lr tuning reaches the target by construction"
            )
        else:
            continue  # no clean run at the noise lr to fix the target from
        lr_at = _best_at_target(mean_base, mean_avr, lr_members, target)
        noise_at = _best_at_target(mean_base, mean_avr, noise_members, target)
        groups = [np.flatnonzero(position == k) for k in range(len(cells))]
        idx = intervals.resample_indices(groups, n_boot, np.random.default_rng(seed))
        reaches = intervals.inflate(base, groups)[idx] @ onehot / counts >= target - TIE  # (n_boot, cells)

        def at(k, column):
            return float(column[k]) if k is not None else NAN

        out = {
            "dataset": dataset,
            "model": model,
            "optimizer": optimizer,
            "batch_size": batch_size,
            "budget": budget,
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
        }
        fitted = cellfit.fit(use, names.AVG_NORMALIZED_ACCURACY, ["lr", "train_noise"])
        found = {}
        if fitted is None:
            verdict = TOO_FEW_SEEDS
        elif lr_at is None or noise_at is None:
            reached = [name for name, k in ((LR_TUNING, lr_at), (NOISE_TRAINING, noise_at)) if k is not None]
            verdict = f"only {reached[0]} reaches the target" if reached else "neither method reaches the target"
        else:
            eligible = mean_base >= target - TIE
            found = best_against_best(
                fitted, np.flatnonzero(noise_members & eligible), np.flatnonzero(lr_members & eligible), seed
            )
            verdict = intervals.verdict_words(
                found["ci_low"], found["ci_high"], f"{LR_TUNING} dominates", f"{NOISE_TRAINING} dominates", NO_CLEAR
            )
        rows.append(FrontierRow(**out, **found, verdict=verdict))
    return run_table.frame(rows, FrontierRow)
