"""The accuracy statistics of eq. 7-9 over draws and seeds, and whether a model learned (numpy and scipy only: no
keras, no MLflow), so that the noise evaluation, the training, the analysis and the report share one definition.

mean_ci: a mean with its 95 % t interval (eq. 7's a^x over draws, a report's mean over seeds); above_chance: the
one-sided binomial test behind a training run's "learned" tag (at chance, A = a / a_0 of eq. 8 means nothing).
"""

from __future__ import annotations

import numpy as np
from scipy import stats as sps

LEARNED_P_VALUE = 1e-3  # one-sided binomial test of the test accuracy against chance (1 / classes)


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


def above_chance(accuracy: float, n: int, classes: int, p_value: float = LEARNED_P_VALUE) -> bool:
    """True when `accuracy` on `n` test examples is clearly above chance 1/classes: a one-sided binomial test
    (H0: hits ~ Binomial(n, 1/classes)) rejects at `p_value`. A model at chance has A = a / a_0 meaningless."""
    if not np.isfinite(accuracy) or n < 1:
        return False
    hits = int(round(accuracy * n))
    return bool(sps.binomtest(hits, n, 1.0 / classes, alternative="greater").pvalue < p_value)
