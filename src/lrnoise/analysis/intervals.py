"""What every verdict is built from, beside the cell model (lrnoise.analysis.cellfit): Spearman's rho (average
ranks for ties) row by row, the within-group bootstrap (resample indices that never leave their group, and the
sqrt(n_g / (n_g - 1)) inflation of Davison & Hinkley 1997 that gives resamples the seeds' sample spread), and an
interval's verdict in words (numpy and scipy only).

The 95 % t interval of a mean over seeds or draws (eq. 7) is lrnoise.noise.statistics.mean_ci.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as sps

from lrnoise.errors import LrnoiseError

MIN_BOOT = 2000


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


# ---------------------------------------------------------------- an interval in words
def verdict_words(low: float, high: float, negative: str, positive: str, neither: str) -> str:
    """`negative` when the interval [low, high] is below 0, `positive` when above, else `neither`."""
    if high < 0:
        return negative
    if low > 0:
        return positive
    return neither  # also when the interval is NaN
