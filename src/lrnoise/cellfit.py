"""Cell means with seeds as blocks: the linear model behind the eq. 2 and batch-size / train-noise verdicts.

The runs of one (dataset, model, optimizer) fall into cells (an lr, a batch size, a train noise) with one run per
seed in each. A seed fixes the initial weights, the validation split and the batch order in every cell, so the
seeds are blocks:

    y_cs = mu_c + s_s + e_cs      (cell c, seed s; the s sum to 0; e ~ N(0, sigma^2) independent)

fitted by statsmodels' OLS (`y ~ 0 + C(cell) + C(seed, Sum)`). mu are the cell means with what a seed shares
across cells taken out; sigma^2 is estimated from what is left (df = runs - cells - seeds + 1). Where no seed is
in two cells the seed term is left out and sigma^2 is the pooled within-cell variance (df = runs - cells).

A question about the cells is a linear contrast L mu: a slope along an axis is a row of the least-squares
projection of the cell means on a design over the cells. statsmodels' `t_test` / `f_test` give its t interval and
p values, exact under the model above; benchmarks/calibration.py measures the false-alarm rates and coverage on
the presets' designs. `lack_of_fit` tests whether the cell means lie on the design at all (a curved response
makes a straight slope's ratio mean nothing)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps


@dataclass
class CellFit:
    """The fitted block model of one group of runs."""

    cells: pd.DataFrame  # one row per cell: the cell's axis values (the order of mu)
    result: object  # statsmodels RegressionResults of y ~ 0 + C(cell) [+ C(seed, Sum)]
    blocked: bool  # True when the seeds enter as blocks

    @property
    def df(self) -> float:
        """Residual degrees of freedom: what the seeds' variance is estimated with."""
        return float(self.result.df_resid)

    def contrast(self, weights: np.ndarray):
        """L (k, cells) over the cell means -> the full restriction matrix over the model's parameters."""
        weights = np.atleast_2d(weights)
        extra = len(self.result.params) - len(self.cells)
        return np.hstack([weights, np.zeros((len(weights), extra))])

    def t(self, weights: np.ndarray) -> dict:
        """One contrast w . mu: its estimate, standard error, 95 % t interval and two-sided p."""
        test = self.result.t_test(self.contrast(weights))
        low, high = test.conf_int(alpha=0.05)[0]
        return {
            "estimate": float(np.squeeze(test.effect)),
            "se": float(np.squeeze(test.sd)),
            "ci_low": float(low),
            "ci_high": float(high),
            "p": float(np.squeeze(test.pvalue)),
        }

    def f(self, weights: np.ndarray) -> float:
        """The joint F test that every row of the contrast matrix is 0: its p value."""
        return float(np.squeeze(self.result.f_test(self.contrast(weights)).pvalue))

    def lack_of_fit(self, design: np.ndarray) -> float:
        """p of the F test that the cell means lie in the column space of `design` (cells, k): that what the
        projection on `design` leaves of mu is 0. 1.0 when the design has as many columns as cells."""
        projection = design @ np.linalg.pinv(design)
        residual = np.eye(len(design)) - projection
        rank = len(design) - np.linalg.matrix_rank(design)
        if rank == 0:
            return 1.0
        # rank independent rows of the residual projector span what the design cannot fit
        rows = np.linalg.qr(residual.T)[0][:, :rank].T
        return self.f(rows)


def fit(runs: pd.DataFrame, value: str, axes: list[str], seed: str = "seed") -> CellFit | None:
    """The block model of `value` over the cells that `axes` make of `runs` (their seeds in column `seed`).
    None when the runs leave no degree of freedom for the seeds' variance (one run per cell, no shared seed)."""
    import statsmodels.api as sm  # heavy; only the claims that need it pay for it

    frame = runs[[*axes, seed, value]].dropna(subset=[value]).reset_index(drop=True)
    cells = frame[axes].drop_duplicates().sort_values(axes).reset_index(drop=True)
    cell = frame[axes].merge(cells.reset_index(), on=axes, how="left")["index"].to_numpy()
    columns = [np.eye(len(cells))[cell]]
    seeds = np.unique(frame[seed].to_numpy())
    shared = frame.groupby(seed)[axes].apply(lambda g: len(g.drop_duplicates()) > 1)  # a seed in several cells
    blocked = bool(shared.any()) and len(seeds) > 1
    if blocked:  # sum-to-zero coding: the cell columns then carry the cell means over seeds
        position = np.searchsorted(seeds, frame[seed].to_numpy())
        coded = np.eye(len(seeds))[position][:, :-1]
        coded[position == len(seeds) - 1] = -1.0
        columns.append(coded)
    exog = np.hstack(columns)
    if len(frame) - np.linalg.matrix_rank(exog) < 1:
        return None
    result = sm.OLS(frame[value].to_numpy(dtype=float), exog).fit()
    return CellFit(cells=cells, result=result, blocked=blocked)


def fieller(a: float, b: float, v_aa: float, v_ab: float, v_bb: float, t: float) -> list[tuple[float, float]]:
    """Fieller's exact confidence set of r = b / a: every r with (b - r a)^2 <= t^2 Var(b - r a), i.e. every
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


def t_quantile(df: float) -> float:
    return float(sps.t.ppf(0.975, df))
