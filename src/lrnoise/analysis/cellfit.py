"""Cell means, each with its own spread: the model behind every verdict of analysis.lr_claims, axis_effects, eq2
and frontier.

The runs of one (dataset, model, optimizer) fall into cells (an lr, a batch size, a train noise); a cell's runs
are its seeds. Nothing is assumed of how the seed-to-seed spread differs between cells (the demo's Table III
ranges from +-1.2 to +-8.5 points over its six lrs), nor of how a seed's runs in different cells go together:

    y_cs = mu_c + e_cs      (cell c, run s; Var e_cs = sigma_c^2, one per cell, estimated by the cell's s_c^2)

A question about the cells is a linear contrast w . mu. Its estimate is w . ybar, its variance
sum_c w_c^2 s_c^2 / n_c, and its t test takes Welch-Satterthwaite's degrees of freedom (Welch 1947, 1951):

    df = (sum_c a_c)^2 / sum_c a_c^2 / (n_c - 1),     a_c = w_c^2 s_c^2 / n_c.

Several contrasts at once (W, k rows: "a = b = 0", "the means lie on a plane") take the Wald statistic
T = (W ybar)' (W V W')^-1 (W ybar), V = diag(s_c^2 / n_c), against its null distribution drawn by a parametric
bootstrap of the cells' means and spreads (Krishnamoorthy, Lu & Mathew 2007), which holds its level with two or
three runs per cell where F approximations of it do not.

A seed's offset shared by every cell counts here as spread, so on paired seeds the tests are conservative; what
that costs in power, and the false alarms under unequal spread, ties and real residuals, are measured in
benchmarks/calibration.py. A cell needs two runs to have a spread: with fewer, `fit` returns None."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

ALPHA = 0.05  # every interval is 95 %, every single test two-sided at 5 %
POWER = 0.8  # the power at which a "no clear" verdict states the effect it could have detected
F_DRAWS = 4000  # parametric-bootstrap draws of a joint test's statistic: its p to about +-0.004 near 0.05


@dataclass
class CellFit:
    """The cells of one group of runs: their axis values, means, spreads and counts (all in the cells' order)."""

    cells: pd.DataFrame  # one row per cell: the cell's axis values, sorted
    means: np.ndarray  # (C,) ybar_c
    variances: np.ndarray  # (C,) s_c^2 (ddof 1)
    counts: np.ndarray  # (C,) n_c >= 2

    @property
    def mean_variances(self) -> np.ndarray:
        """(C,) Var(ybar_c) as estimated: s_c^2 / n_c."""
        return self.variances / self.counts

    @property
    def df(self) -> float:
        """The degrees of freedom the cells' spreads are estimated with: sum_c (n_c - 1)."""
        return float(np.sum(self.counts - 1))

    def covariance(self, weights: np.ndarray) -> np.ndarray:
        """W V W' of the contrasts W (k, C): their estimated covariance."""
        weights = np.atleast_2d(weights)
        return weights @ np.diag(self.mean_variances) @ weights.T

    def t(self, weights: np.ndarray, alpha: float = ALPHA) -> dict:
        """One contrast w . mu: estimate, se, Welch-Satterthwaite df, (1 - alpha) t interval, two-sided p, and mde:
        the smallest |w . mu| its two-sided test at `alpha` detects with POWER (NaN where the cells show no
        spread at all: ties everywhere)."""
        weights = np.asarray(weights, dtype=float)
        a = weights**2 * self.mean_variances
        var = float(a.sum())
        estimate = float(weights @ self.means)
        if not var > 0:
            nan = float("nan")
            return {"estimate": estimate, "se": 0.0, "df": nan, "ci_low": nan, "ci_high": nan, "p": nan, "mde": nan}
        df = var**2 / float(np.sum(a**2 / (self.counts - 1)))
        se = np.sqrt(var)
        quantile = sps.t.ppf(1 - alpha / 2, df)
        return {
            "estimate": estimate,
            "se": float(se),
            "df": float(df),
            "ci_low": float(estimate - quantile * se),
            "ci_high": float(estimate + quantile * se),
            "p": float(2 * sps.t.sf(abs(estimate) / se, df)),
            "mde": float((quantile + sps.t.ppf(POWER, df)) * se),
        }

    def f(self, weights: np.ndarray) -> float:
        """p of the test that every row of W (k, C) is 0; NaN where W V W' is singular (no spread). The
        statistic is the Wald form T = (W ybar)' (W V W')^-1 (W ybar) with V = diag(s_c^2 / n_c); its null
        distribution is drawn by a parametric bootstrap (Krishnamoorthy, Lu & Mathew 2007): cell-mean errors
        ~ N(0, s_c^2 / n_c) and variance estimates ~ s_c^2 / n_c x chi^2_{n_c - 1} / (n_c - 1), each draw's T
        computed with its own estimates, F_DRAWS draws from a fixed seed."""
        weights = np.atleast_2d(np.asarray(weights, dtype=float))
        middle = self.covariance(weights)
        if np.linalg.matrix_rank(middle) < len(weights):
            return float("nan")
        effect = weights @ self.means
        statistic = float(effect @ np.linalg.solve(middle, effect))
        rng = np.random.default_rng(0)
        variances, counts = self.mean_variances, self.counts
        errors = (rng.normal(size=(F_DRAWS, len(counts))) * np.sqrt(variances)) @ weights.T  # (draws, k)
        estimated = variances * rng.chisquare(counts - 1, size=(F_DRAWS, len(counts))) / (counts - 1)
        covariances = np.einsum("kc,dc,lc->dkl", weights, estimated, weights)  # (draws, k, k)
        drawn = np.einsum("dk,dk->d", errors, np.linalg.solve(covariances, errors[..., None])[..., 0])
        return float((1 + np.sum(drawn >= statistic)) / (1 + F_DRAWS))

    def lack_of_fit(self, design: np.ndarray) -> float:
        """p of the test that the cell means lie in the column space of `design` (C, k): that the cell means'
        projection on an orthonormal basis of the design's orthogonal complement is 0. 1.0 when the design
        spans every cell."""
        from scipy.linalg import null_space

        rows = null_space(np.asarray(design, dtype=float).T).T  # (C - rank, C): what the design cannot fit
        return 1.0 if len(rows) == 0 else self.f(rows)


def fit(runs: pd.DataFrame, value: str, axes: list[str]) -> CellFit | None:
    """The cells that `axes` make of `runs` with their means, spreads and counts of `value`. None when a cell has
    fewer than two runs (its spread cannot be estimated)."""
    frame = runs[[*axes, value]].dropna(subset=[value])
    grouped = frame.groupby(axes, sort=True)[value]
    counts = grouped.size()
    if len(counts) == 0 or counts.min() < 2:
        return None
    cells = counts.index.to_frame(index=False)
    return CellFit(
        cells=cells,
        means=grouped.mean().to_numpy(dtype=float),
        variances=grouped.var(ddof=1).to_numpy(dtype=float),
        counts=counts.to_numpy(dtype=float),
    )


def fieller(a: float, b: float, v_aa: float, v_ab: float, v_bb: float, t: float) -> list[tuple[float, float]]:
    """Fieller's confidence set of r = b / a: every r with (b - r a)^2 <= t^2 Var(b - r a), i.e. every
    ratio whose contrast b - r a a t test does not reject. A list of intervals: one bounded interval when a is
    clearly away from 0; two rays (-inf, r1] and [r2, inf) when a's own interval holds 0 but b's does not hold
    all of them; the whole line [(-inf, inf)] when neither says anything."""
    qa, qb, qc = a * a - t * t * v_aa, -2.0 * (a * b - t * t * v_ab), b * b - t * t * v_bb
    disc = qb * qb - 4.0 * qa * qc
    if qa > 0:  # a bounded interval (never empty: r = b / a is in it)
        root = np.sqrt(max(disc, 0.0))
        return [((-qb - root) / (2 * qa), (-qb + root) / (2 * qa))]
    if qa < 0 and disc > 0:  # the quadratic opens downwards: <= 0 outside its roots
        r1, r2 = sorted(((-qb - np.sqrt(disc)) / (2 * qa), (-qb + np.sqrt(disc)) / (2 * qa)))
        return [(-np.inf, float(r1)), (float(r2), np.inf)]
    return [(-np.inf, np.inf)]


def t_quantile(df: float, alpha: float = ALPHA) -> float:
    return float(sps.t.ppf(1 - alpha / 2, df))
