"""The report's verdicts as a family: Holm and Benjamini-Hochberg, the primary rule, words rewritten where Holm
does not let a primary verdict through, the frontier's interval after selection, and equal steps."""

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.multitest import multipletests

from lrnoise import config, grid, paper
from lrnoise.analysis import cellfit, frontier, verdicts
from lrnoise.errors import LrnoiseError


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_holm_and_bh_equal_statsmodels(seed):
    p = np.random.default_rng(seed).uniform(0, 0.2, 9)
    assert verdicts.holm(p) == pytest.approx(multipletests(p, method="holm")[1])
    assert verdicts.benjamini_hochberg(p) == pytest.approx(multipletests(p, method="fdr_bh")[1])


def lr_runs(slope: float, seeds: int, rng, a_avr: float = 0.7) -> pd.DataFrame:
    rows = [
        {
            "dataset": "digits",
            "model": "resnet20",
            "optimizer": "adam",
            "batch_size": 32,
            "lr": lr,
            "seed": s,
            "baseline_accuracy": 0.95 + rng.normal(0, 0.003),
            "avg_normalized_accuracy": a_avr + slope * k + rng.normal(0, 0.01),
        }
        for k, lr in enumerate(paper.LRS)
        for s in range(seeds)
    ]
    return pd.DataFrame(rows)


def test_the_lr_trend_is_primary_and_a_weak_one_is_held_back_by_holm():
    rng = np.random.default_rng(4)
    per_config = {f"config{i}": verdicts.tables(lr_runs(0.0, 3, rng), 0.01, None) for i in range(6)}
    strong = lr_runs(0.02, 3, rng)
    per_config["strong"] = verdicts.tables(strong, 0.01, None)
    family = verdicts.assess(per_config)
    assert family.primary == 7 and "lr trend of A_avr" in family.question
    row = per_config["strong"]["claims"].iloc[0]
    assert (row["avr_family"], row["avr_verdict"]) == (verdicts.PRIMARY, "rises with lr")
    assert row["avr_p_adjusted"] >= row["avr_p"]  # Holm never lowers a p
    assert row["baseline_family"] == verdicts.EXPLORATORY
    # a primary verdict whose own interval excludes 0 but whose Holm p does not pass reads as no clear trend
    weak = {name: frames for name, frames in per_config.items() if name != "strong"}
    claims = weak["config0"]["claims"]
    claims.loc[0, ["avr_p", "avr_verdict"]] = [0.02, "rises with lr"]  # 0.02 alone; Holm over 6: 0.12
    verdicts.assess(weak)
    assert claims.loc[0, "avr_verdict"] == "no clear trend" and claims.loc[0, "avr_p_adjusted"] > 0.05
    assert "This report prints" in family.sentence() and "Holm" in family.sentence()


def test_a_baseline_verdict_counts_once_however_many_noise_configurations_print_it():
    runs = lr_runs(0.02, 3, np.random.default_rng(5))
    pcm = runs.assign(avg_normalized_accuracy=0.97 + np.random.default_rng(6).normal(0, 0.005, len(runs)))
    per_config = {"additive": verdicts.tables(runs, 0.01, None), "pcm": verdicts.tables(pcm, 0.01, None)}
    family = verdicts.assess(per_config)
    assert family.primary == 2 and family.exploratory == 1  # two A_avr trends, one baseline trend
    first, second = (per_config[name]["claims"].iloc[0] for name in ("additive", "pcm"))
    assert first["baseline_p_adjusted"] == second["baseline_p_adjusted"] == first["baseline_p"]


def test_best_against_best_covers_the_best_whichever_configurations_are_chosen():
    rng = np.random.default_rng(7)
    covered = []
    for seed in range(60):  # 4 tied lr configurations, 2 noise configurations 3 points better
        mu = np.array([0.70, 0.70, 0.70, 0.70, 0.73, 0.73])
        runs = pd.DataFrame([{"cell": c, "y": m + e} for c, m in enumerate(mu) for e in rng.normal(0, 0.02, 3)])
        fitted = cellfit.fit(runs, "y", ["cell"])
        found = frontier.best_against_best(fitted, np.array([4, 5]), np.arange(4), seed)
        covered.append(found["ci_low"] <= 0.03 <= found["ci_high"])
        assert found["n_pairs"] == 8 and found["critical_t"] > cellfit.t_quantile(4)  # wider than one pair's
    assert np.mean(covered) >= 0.9


def test_budget_steps_never_stops_early():
    with pytest.raises(LrnoiseError, match="patience must be 0"):
        config.TrainConfig(budget="steps", patience=4).validate()
    steps = grid.StudySpec("demo", budget="steps").train_configs()
    assert {c.patience for c in steps} == {0}
    assert {c.patience for c in grid.StudySpec("mechanism").train_configs()} == {0}
