"""A report's verdicts as one family: which are primary (family-wise controlled), which exploratory, and what
to expect of them together (no MLflow, no figures).

Every verdict a report prints is a test with a p value (analysis.lr_claims, analysis.axis_effects, analysis.eq2,
analysis.frontier). The design of the runs decides which answer the study's question, by one rule whatever the
preset or grid:

- the runs span an lr x batch-size grid (an eq. 2 row on A_avr exists): the primary family is eq. 2's
  predictions (each row's effect gate and its three closed-test predictions), the batch-size effect on A_avr,
  and lr tuning against noise-injection training, under every noise configuration of the report;
- otherwise: the lr trend of A_avr of every cell (dataset, model, optimizer, ...) under every noise
  configuration.

The primary family is controlled family-wise at 5 % by Holm's step-down (valid under any dependence); a primary
verdict names an effect only when its Holm-adjusted p is below 0.05. Every other verdict is exploratory: it
names an effect when its own 95 % interval excludes 0, and carries its Benjamini-Hochberg q over the report's
exploratory verdicts. A verdict without a p (too few seeds, a gate not passed) is no claim and is not counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from lrnoise import grid, names
from lrnoise.analysis import axis_effects, cellfit, eq2, frontier, lr_claims

PRIMARY = "primary"
EXPLORATORY = "exploratory"
TABLES = ("claims", "axis_claims", "interactions", "eq2", "frontier")  # a noise configuration's verdict tables
UPDATE_SPREAD = "update_noise_spread_mean"  # update_noise_power_mean / lr^2: the update's own measured spread


def tables(joined: pd.DataFrame, max_accuracy_drop: float, target_accuracy: float | None) -> dict:
    """Every verdict table of one noise configuration's runs (one row per run, A_avr present), before the family
    is assessed: the lr claims per cell, the batch-size and train-noise effects, the optimizer x batch-size
    interactions, eq. 2 on A_avr and (as scaling) on the measured noise C and the update's own spread, and the
    frontier. A table the runs do not span is empty."""
    if names.AVG_NORMALIZED_ACCURACY not in joined:
        return {name: pd.DataFrame() for name in TABLES}
    measured = joined.copy()
    if names.UPDATE_NOISE_POWER_MEAN in measured:
        measured[UPDATE_SPREAD] = measured[names.UPDATE_NOISE_POWER_MEAN] / measured["lr"].astype(float) ** 2
    eq2_rows = pd.DataFrame(columns=eq2.EQ2_COLUMNS)
    if "batch_size" in joined:  # eq. 2 on A_avr, then how the measured noise scales
        tests = [eq2.eq2_test(joined, names.AVG_NORMALIZED_ACCURACY)] + [
            eq2.eq2_test(measured, spread, log_value=True)
            for spread in (names.GRAD_NOISE_C_MEAN, UPDATE_SPREAD)
            if spread in measured
        ]
        eq2_rows = pd.concat(tests, ignore_index=True)
    return {
        "claims": lr_claims.claims(joined, max_accuracy_drop),
        "axis_claims": pd.concat([axis_effects.axis_claims(joined, a) for a in grid.AXES[1:]], ignore_index=True),
        "interactions": axis_effects.batch_size_interactions(joined),
        "eq2": eq2_rows,
        "frontier": frontier.frontier(joined, max_accuracy_drop, target_accuracy),
    }


@dataclass
class Test:
    """One verdict of a report: where it stands in its configuration's tables, its p, and its family."""

    config: str  # the noise configuration's name
    table: str  # one of TABLES
    row: int  # the row's index in that table
    prefix: str  # the verdict's column prefix in that row ("" for the frontier's)
    p: float
    primary: bool
    p_adjusted: float = float("nan")  # Holm's p (primary) or the BH q (exploratory), set by assess


def column(prefix: str, what: str) -> str:
    """A verdict's column: '<prefix>_<what>', or '<what>' for the frontier's (prefix '')."""
    return f"{prefix}_{what}" if prefix else what


NEITHER = {  # the words of a primary verdict that Holm does not let through (eq. 2: eq2_verdict)
    "claims": lr_claims.NO_TREND,
    "axis_claims": axis_effects.NO_AXIS_EFFECT,
    "frontier": frontier.NO_CLEAR,
}


def _tests(name: str, frames: dict, mechanism_design: bool) -> list[Test]:
    """Every verdict with a p in one configuration's tables, each marked primary or not by the module's rule."""
    found = []

    def add(table, row, prefix, p, primary=False):
        if np.isfinite(p):
            found.append(Test(name, table, row, prefix, float(p), primary))

    for i, row in frames["claims"].iterrows():
        add("claims", i, "avr", row["avr_p"], primary=not mechanism_design)
        for prefix in ("baseline", "mechanism", "update_mechanism"):
            add("claims", i, prefix, row[f"{prefix}_p"])
    for i, row in frames["axis_claims"].iterrows():
        add("axis_claims", i, "avr", row["avr_p"], primary=row["axis"] == "batch_size")
        add("axis_claims", i, "baseline", row["baseline_p"])
    for i, row in frames["interactions"].iterrows():
        add("interactions", i, "avr", row["avr_p"])
    for i, row in frames["eq2"].iterrows():
        if row["kind"] == eq2.SCALES:
            add("eq2", i, "lr_slope", row["lr_slope_p"])
            add("eq2", i, "b_slope", row["b_slope_p"])
        elif np.isfinite(row.get("effect_p", np.nan)):
            add("eq2", i, "effect", row["effect_p"], primary=True)  # its mde: effect_mde
            for prediction in eq2.PREDICTIONS:  # closed test: excluded only where the effect gate rejects too
                add("eq2", i, prediction, max(row["effect_p"], row[f"p_{prediction}"]), primary=True)
    for i, row in frames["frontier"].iterrows():
        add("frontier", i, "", row["p"], primary=True)
    return found


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p values (same order as p)."""
    p = np.asarray(p, dtype=float)
    order = np.argsort(p)
    m = len(p)
    stepped = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = stepped
    return out


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q values (same order as p)."""
    p = np.asarray(p, dtype=float)
    m = len(p)
    order = np.argsort(p)
    ranked = p[order] * m / np.arange(1, m + 1)
    stepped = np.minimum(1.0, np.minimum.accumulate(ranked[::-1])[::-1])
    out = np.empty(m)
    out[order] = stepped
    return out


@dataclass
class Family:
    """What a report's verdicts are, together."""

    primary: int  # verdicts in the primary family
    exploratory: int
    primary_named: int  # primary verdicts that name an effect after Holm
    exploratory_named: int
    question: str  # the primary question, in words

    def sentence(self) -> str:
        """The multiplicity sentence a report begins with."""
        total = self.primary + self.exploratory
        return (
            f"This report prints {total} verdicts. {self.primary} are primary ({self.question}), family-wise "
            f"controlled at 5 % (Holm): if nothing had any effect, the chance that any of them names one is at most "
            f"5 %; {self.primary_named} {'names' if self.primary_named == 1 else 'name'} an effect. "
            f"{self.exploratory} are exploratory, each at 5 % on its own with its Benjamini-Hochberg q: if nothing "
            f"had any effect, about {0.05 * self.exploratory:.1f} of them would name one by chance; "
            f"{self.exploratory_named} {'does' if self.exploratory_named == 1 else 'do'}."
        )


def mechanism_design(per_config: dict) -> bool:
    """True when the runs span an lr x batch-size grid: some eq. 2 row on A_avr."""
    return any(len(frames["eq2"]) and (frames["eq2"]["kind"] == eq2.PREDICTS).any() for frames in per_config.values())


def _scaled_mde(mde: float, tests: int) -> float:
    """mde at 5 % scaled to Holm's strictest step, 5 % / tests (normal quantiles: about, for the df at hand)."""
    if tests <= 1 or not np.isfinite(mde):
        return mde
    z = sps.norm.ppf
    power = z(cellfit.POWER)
    return float(mde * (z(1 - cellfit.ALPHA / (2 * tests)) + power) / (z(1 - cellfit.ALPHA / 2) + power))


def assess(per_config: dict) -> Family:
    """Sorts the verdicts of every configuration's tables ({name: tables()}) into the primary family and the
    exploratory rest, in place: each verdict gets `<prefix>_family` and `<prefix>_p_adjusted` (Holm's p for a
    primary verdict, the BH q for an exploratory one); a primary verdict Holm does not let through gets the
    words of no effect (eq. 2 rows: eq2_verdict at the adjusted p values), and a primary verdict's mde is scaled
    to Holm's strictest step."""
    design = mechanism_design(per_config)
    found = [test for name, frames in per_config.items() for test in _tests(name, frames, design)]
    # a baseline-accuracy verdict is about the trained models, not the noise: one test however many noise
    # configurations print it
    once = {}
    for test in found:
        key = (test.table, test.prefix, test.p) if test.prefix == "baseline" else id(test)
        once.setdefault(key, []).append(test)
    primary = [same[0] for same in once.values() if same[0].primary]
    exploratory = [same[0] for same in once.values() if not same[0].primary]
    for group, adjust in ((primary, holm), (exploratory, benjamini_hochberg)):
        for test, p in zip(group, adjust([t.p for t in group]) if group else []):
            test.p_adjusted = float(p)
    for same in once.values():
        for test in same[1:]:
            test.p_adjusted = same[0].p_adjusted
    for test in found:
        frame = per_config[test.config][test.table]
        frame.loc[test.row, column(test.prefix, "family")] = PRIMARY if test.primary else EXPLORATORY
        frame.loc[test.row, column(test.prefix, "p_adjusted")] = test.p_adjusted
        if not test.primary:
            continue
        if column(test.prefix, "mde") in frame:
            mde = frame.loc[test.row, column(test.prefix, "mde")]
            frame.loc[test.row, column(test.prefix, "mde")] = _scaled_mde(mde, len(primary))
        if test.p_adjusted >= cellfit.ALPHA and test.table in NEITHER:
            frame.loc[test.row, column(test.prefix, "verdict")] = NEITHER[test.table]
    for frames in per_config.values():
        rows = frames["eq2"]
        if "effect_p_adjusted" not in rows:
            continue
        for i, row in rows[rows["effect_p_adjusted"].notna()].iterrows():
            p_of = {prediction: row[f"{prediction}_p_adjusted"] for prediction in eq2.PREDICTIONS}
            excluded, verdict = eq2.eq2_verdict(row["effect_p_adjusted"], row["lack_of_fit_p"], p_of)
            rows.loc[i, "excluded"], rows.loc[i, "verdict"] = ", ".join(excluded), verdict
    question = (
        "eq. 2's predictions, the batch-size effect on A_avr and lr tuning vs noise-injection training"
        if design
        else "the lr trend of A_avr in each cell under each noise configuration"
    )
    return Family(
        primary=len(primary),
        exploratory=len(exploratory),
        primary_named=sum(t.p_adjusted < cellfit.ALPHA for t in primary),
        exploratory_named=sum(t.p < cellfit.ALPHA for t in exploratory),
        question=question,
    )
