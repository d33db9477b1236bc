"""The statistics on synthetic run tables whose truth is planted: intervals and resampling (analysis.intervals,
noise.statistics), trends, sweet spots and claims (analysis.lr_claims), axis effects (analysis.axis_effects), eq. 2
(analysis.eq2), the cell model (analysis.cellfit) and the frontier (analysis.frontier)."""

import math
from dataclasses import fields

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from lrnoise import paper
from lrnoise.analysis import axis_effects, cellfit, eq2, frontier, intervals, lr_claims
from lrnoise.analysis.run_table import TOO_FEW_SEEDS
from lrnoise.errors import LrnoiseError
from lrnoise.noise import statistics
from lrnoise.report import claims_text
from lrnoise.settings import ReportSettings

DROP = ReportSettings.max_accuracy_drop  # the report's default accuracy margin (1 point)

LRS = np.array(paper.LRS)
SEEDS = 5


def lr_table(slope: float, rng: np.random.Generator, seeds: int = SEEDS, sd: float = 0.01) -> pd.DataFrame:
    """6 lrs x `seeds` runs: value = 0.6 + slope * (lr's position 0..5) + N(0, sd)."""
    position = np.repeat(np.arange(len(LRS)), seeds)
    return pd.DataFrame(
        {
            "lr": LRS[position],
            "seed": np.tile(np.arange(seeds), len(LRS)),
            "value": 0.6 + slope * position + rng.normal(0, sd, len(position)),
        }
    )


# ---------------------------------------------------------------- one sample, Spearman
def test_ci95_is_the_student_t_half_width():
    sample = np.array([0.61, 0.58, 0.66, 0.70, 0.55, 0.63])
    expected = sps.t.ppf(0.975, 5) * sample.std(ddof=1) / math.sqrt(6)
    assert statistics.ci95(sample) == pytest.approx(expected, rel=1e-12)
    assert statistics.ci95([0.5]) == 0.0 and statistics.ci95([]) == 0.0


def test_mean_ci_drops_nan():
    mean, half, n = statistics.mean_ci([0.2, np.nan, 0.4, 0.9, np.nan])
    assert (mean, n) == (pytest.approx(0.5), 3)
    assert half == pytest.approx(statistics.ci95([0.2, 0.4, 0.9]))
    assert math.isnan(statistics.mean_ci([np.nan])[0])


def test_above_chance_is_a_one_sided_binomial_test():
    # 1,000 test examples of 10 classes: 100 hits is chance (sd 9.5); 140 is 4.2 sd above it, 125 only 2.6 sd
    assert statistics.above_chance(0.14, 1000, 10) and not statistics.above_chance(0.125, 1000, 10)
    assert not statistics.above_chance(float("nan"), 1000, 10) and not statistics.above_chance(0.9, 0, 10)


@pytest.mark.parametrize(
    "x, y",
    [
        ([1, 2, 2, 3, 4, 4, 4, 5], [3.0, 1.0, 1.0, 2.5, 7.0, 6.0, 6.0, 2.0]),  # ties on both sides
        (np.repeat(LRS, 3), np.random.default_rng(3).integers(0, 4, 18)),  # the shape of a run table
        ([0.1, 0.2, 0.3], [0.9, 0.5, 0.1]),  # exactly -1
    ],
)
def test_spearman_equals_scipy_with_ties(x, y):
    assert intervals.spearman(x, y) == pytest.approx(sps.spearmanr(x, y).statistic, abs=1e-12)


@pytest.mark.parametrize("x, y", [([1, 1, 1, 1], [1, 2, 3, 4]), ([1, 2, 3, 4], [0.5, 0.5, 0.5, 0.5])])
def test_spearman_is_nan_on_constant_input(x, y):
    assert math.isnan(intervals.spearman(x, y))


# ---------------------------------------------------------------- trend
@pytest.mark.parametrize("slope, verdict", [(-0.03, "falls with lr"), (0.03, "rises with lr")])
def test_trend_finds_a_planted_trend(slope, verdict):
    found = lr_claims.trend(lr_table(slope, np.random.default_rng(7)), "value")
    assert found["verdict"] == verdict
    assert (found["n_runs"], found["n_levels"]) == (30, 6)
    assert found["ci_low"] < slope < found["ci_high"]  # the planted change per lr step
    assert math.copysign(1, found["rho"]) == math.copysign(1, slope) and abs(found["rho"]) > 0.8


def test_trend_sees_no_trend_in_pure_noise():
    # 50 independent replicates (numpy's spawned streams) of A_avr independent of lr; a 95 % interval should
    # call "no clear trend" in about 47.5 of them (benchmarks/calibration.py: 1,000 studies per design).
    streams = np.random.SeedSequence(2024).spawn(50)
    verdicts = [lr_claims.trend(lr_table(0.0, np.random.default_rng(s)), "value")["verdict"] for s in streams]
    assert verdicts.count("no clear trend") >= 45
    assert set(verdicts) <= {"no clear trend", "falls with lr", "rises with lr"}


def test_trend_names_x_and_drops_nan():
    frame = lr_table(-0.03, np.random.default_rng(1)).rename(columns={"lr": "depth"})
    frame.loc[[0, 7], "value"] = np.nan
    found = lr_claims.trend(frame, "value", x="depth")
    assert found["verdict"] == "falls with depth" and found["n_runs"] == 28


def test_trend_equals_the_textbook_contrast_of_lr_means():
    frame = lr_table(-0.002, np.random.default_rng(2))
    found = lr_claims.trend(frame, "value")
    means = frame.groupby("lr")["value"].mean().to_numpy()
    steps = np.arange(len(means)) - (len(means) - 1) / 2
    assert found["slope"] == pytest.approx(steps @ means / (steps @ steps))  # the least-squares slope of the means


def test_trend_with_one_run_per_lr_gives_no_verdict():
    # one seed per lr (the paper's design): nothing is left to estimate the seeds' spread
    found = lr_claims.trend(lr_table(-0.03, np.random.default_rng(0), seeds=1), "value")
    assert found["verdict"] == TOO_FEW_SEEDS and found["rho"] == pytest.approx(-1.0)


@pytest.mark.parametrize(
    "call",
    [
        lambda f: lr_claims.sweet_spot_shares(f, "value", "value", 0.01, n_boot=100),
        lambda f: lr_claims.trend(f, "no_such_column"),
        lambda f: lr_claims.sweet_spot(f, "value", "value", -0.01),
    ],
)
def test_bad_arguments_raise_lrnoise_error(call):
    with pytest.raises(LrnoiseError):
        call(lr_table(0.0, np.random.default_rng(0)))


# ---------------------------------------------------------------- resampling within lr
def test_resample_indices_stay_within_each_lr():
    codes = np.array([0, 1, 2, 1, 0, 3, 1, 0, 1, 3, 1, 3, 3])  # unequal groups: 3, 5, 1, 4 runs
    groups = [np.flatnonzero(codes == k) for k in range(4)]
    idx = intervals.resample_indices(groups, 2000, np.random.default_rng(0))
    assert idx.shape == (2000, len(codes))
    assert (codes[idx] == codes).all()  # every draw comes from its own lr, so every lr keeps its count
    assert (np.apply_along_axis(np.bincount, 1, codes[idx], minlength=4) == np.bincount(codes)).all()
    assert (idx != np.arange(len(codes))).any(axis=1).mean() > 0.99  # real resampling, not the identity
    with_repeats = [len(np.unique(row[groups[1]])) < len(groups[1]) for row in idx]
    assert np.mean(with_repeats) > 0.9  # with replacement (5 from 5 repeats one with p = 1 - 5!/5^5 = 0.96)


def test_inflate_keeps_means_and_restores_the_sample_spread():
    values = np.array([0.1, 0.3, 0.8, 0.5, 0.2, 0.9, 0.4])
    groups = [np.array([0, 1, 2]), np.array([3, 4, 5]), np.array([6])]
    out = intervals.inflate(values, groups)
    for g in groups[:2]:
        assert out[g].mean() == pytest.approx(values[g].mean())
        assert out[g].std(ddof=0) == pytest.approx(values[g].std(ddof=1))
    assert out[6] == values[6]


# ---------------------------------------------------------------- sweet spot
def spot_table(rng: np.random.Generator, baselines, robusts, seeds: int = 4, sd: float = 0.003) -> pd.DataFrame:
    """Runs with per-lr mean baseline and mean A_avr as given (one entry per paper lr)."""
    position = np.repeat(np.arange(len(LRS)), seeds)
    return pd.DataFrame(
        {
            "lr": LRS[position],
            "baseline_accuracy": np.array(baselines)[position] + rng.normal(0, sd, len(position)),
            "avg_normalized_accuracy": np.array(robusts)[position] + rng.normal(0, sd, len(position)),
        }
    )


def test_a_clearly_best_lr_wins_nearly_every_resample():
    frame = spot_table(np.random.default_rng(4), [0.91] * 6, [0.60, 0.65, 0.75, 0.62, 0.55, 0.50])
    shares = lr_claims.sweet_spot_shares(frame, "baseline_accuracy", "avg_normalized_accuracy", 0.01)
    assert lr_claims.sweet_spot(frame, "baseline_accuracy", "avg_normalized_accuracy", 0.01) == LRS[2]
    assert shares[LRS[2]] >= 0.99
    assert sorted(shares) == sorted(LRS) and sum(shares.values()) == pytest.approx(1.0)


@pytest.mark.parametrize("drop, winner", [(0.01, LRS[3]), (0.1, LRS[0])])
def test_an_lr_too_far_below_the_best_baseline_never_wins(drop, winner):
    # lr 0.0005 has the best A_avr but a baseline 5 points below the best: out at a 1-point drop, in at 10
    frame = spot_table(
        np.random.default_rng(5), [0.87, 0.92, 0.92, 0.92, 0.92, 0.92], [0.80, 0.60, 0.62, 0.70, 0.55, 0.50]
    )
    shares = lr_claims.sweet_spot_shares(frame, "baseline_accuracy", "avg_normalized_accuracy", drop)
    assert lr_claims.sweet_spot(frame, "baseline_accuracy", "avg_normalized_accuracy", drop) == winner
    assert max(shares, key=shares.get) == winner
    if drop == 0.01:
        assert shares[LRS[0]] == 0.0
    assert sum(shares.values()) == pytest.approx(1.0)


def test_sweet_spot_shares_split_between_two_close_lrs():
    frame = spot_table(np.random.default_rng(6), [0.91] * 6, [0.60, 0.70, 0.70, 0.62, 0.55, 0.50], sd=0.01)
    shares = lr_claims.sweet_spot_shares(frame, "baseline_accuracy", "avg_normalized_accuracy", 0.01)
    assert 0.1 < shares[LRS[1]] < 0.9 and 0.1 < shares[LRS[2]] < 0.9
    assert shares[LRS[1]] + shares[LRS[2]] > 0.99


# ---------------------------------------------------------------- association
def test_the_within_lr_association_needs_a_spread_within_an_lr():
    frame = pd.DataFrame({"lr": [0.001, 0.001, 0.002, 0.002], "c": [1.0, 1.0, 2.0, 2.0], "avr": [0.5, 0.6, 0.7, 0.8]})
    found = lr_claims.association_within_lr(frame, "c", "avr")  # C does not vary within either lr
    assert found["verdict"] == lr_claims.TOO_FEW_RUNS and math.isnan(found["slope"])
    assert lr_claims.association_within_lr(frame.iloc[:2], "c", "avr")["verdict"] == lr_claims.TOO_FEW_RUNS


# ---------------------------------------------------------------- paper and claims
def test_paper_trend_is_the_spearman_of_table_iii():
    row = [paper.AVG_NORMALIZED_ACCURACY[("cifar10", "resnet56", lr)] for lr in paper.LRS]
    assert lr_claims.paper_trend("cifar10", "resnet56") == pytest.approx(sps.spearmanr(paper.LRS, row).statistic)
    assert math.isnan(lr_claims.paper_trend("cifar10", "resnet110"))


# (dataset, model, optimizer): A_avr slope per lr position (None = 2 lrs only)
CELLS = {
    ("cifar10", "resnet20", "adam"): -0.03,  # falls, like the paper
    ("cifar100", "resnet32", "adam"): 0.03,  # rises, the paper falls
    ("cifar10", "resnet44", "adam"): 0.0,  # flat: no clear trend
    ("cifar10", "resnet110", "adam"): -0.03,  # not in the paper
    ("cifar10", "resnet20", "sgd"): -0.03,  # Table III is Adam only
    ("cifar10", "resnet56", "adam"): None,  # only 2 lrs: no claim
}


@pytest.fixture
def runs() -> pd.DataFrame:
    """4 seeds per lr (one lr with 3) for every cell of CELLS; the grad-noise power is planted as 1 / A_avr."""
    rng = np.random.default_rng(11)
    rows = []
    for (dataset, model, optimizer), slope in CELLS.items():
        positions = range(2) if slope is None else range(len(LRS))
        for position in positions:
            for seed in range(3 if position == 4 else 4):
                avr = 0.6 + (slope or 0.0) * position + rng.normal(0, 0.01)
                rows.append(
                    {
                        "dataset": dataset,
                        "model": model,
                        "optimizer": optimizer,
                        "lr": LRS[position],
                        "seed": seed,
                        "baseline_accuracy": 0.9 + rng.normal(0, 0.002),
                        "avg_normalized_accuracy": avr,
                        "grad_noise_c_mean": 1 / avr + rng.normal(0, 0.01),
                        "learned": True,
                    }
                )
    return pd.DataFrame(rows)


def test_claims_columns_and_cells(runs):
    table = lr_claims.claims(runs, DROP)
    assert list(table.columns) == lr_claims.CLAIM_COLUMNS == [f.name for f in fields(lr_claims.ClaimRow)]
    assert lr_claims.CLAIM_COLUMNS[: len(lr_claims.CLAIM_CELL)] == lr_claims.CLAIM_CELL
    expected = {key for key, slope in CELLS.items() if slope is not None}
    assert set(map(tuple, table[["dataset", "model", "optimizer"]].values)) == expected
    row = table.set_index(["dataset", "model", "optimizer"]).loc[("cifar10", "resnet20", "adam")]
    assert (row["n_runs"], row["n_lrs"], row["seeds_per_lr"]) == (23, 6, "3-4")
    assert row["avr_verdict"] == "falls with lr" and row["baseline_verdict"] == "no clear trend"
    # the text lists every lr in order with shares summing to 1, and agrees with the number columns
    pairs = [part.split(":") for part in row["sweet_spot_shares"].split("; ")]
    assert [float(lr) for lr, _ in pairs] == sorted(LRS)
    assert sum(float(share) for _, share in pairs) == pytest.approx(1.0, abs=0.01)
    assert dict((float(lr), float(s)) for lr, s in pairs)[row["sweet_spot_lr"]] == pytest.approx(
        row["sweet_spot_share"], abs=1e-3
    )
    assert row["sweet_spot_lr"] == LRS[0]  # A_avr falls and every baseline is within 1 point


def test_claims_needs_min_lrs(runs):
    none = lr_claims.claims(runs, DROP, min_lrs=7)
    assert len(none) == 0 and list(none.columns) == lr_claims.CLAIM_COLUMNS  # an empty table keeps its columns
    assert ("cifar10", "resnet56", "adam") in set(
        map(tuple, lr_claims.claims(runs, DROP, min_lrs=2)[["dataset", "model", "optimizer"]].values)
    )


@pytest.mark.parametrize("learned, changes", [(False, False), ("false", False), (True, True)])
def test_claims_excludes_runs_that_did_not_learn(runs, learned, changes):
    broken = runs.iloc[[0]].assign(
        seed=99, baseline_accuracy=0.1, avg_normalized_accuracy=0.0, grad_noise_power_mean=50.0, learned=learned
    )
    with_broken = lr_claims.claims(pd.concat([runs, broken], ignore_index=True).astype({"learned": object}), DROP)
    same = with_broken.equals(lr_claims.claims(runs, DROP))
    assert same != changes


@pytest.mark.parametrize("cell", [key for key, slope in CELLS.items() if slope is not None])
def test_claims_paper_rho_is_the_spearman_of_its_table_iii_row(runs, cell):
    dataset, model, optimizer = cell
    got = lr_claims.claims(runs, DROP).set_index(["dataset", "model", "optimizer"]).loc[cell, "paper_avr_rho"]
    if optimizer != "adam" or (dataset, model, paper.LRS[0]) not in paper.AVG_NORMALIZED_ACCURACY:
        assert math.isnan(got)  # Table III is Adam only, and has no resnet110
    else:
        row = [paper.AVG_NORMALIZED_ACCURACY[(dataset, model, lr)] for lr in paper.LRS]
        assert got == pytest.approx(sps.spearmanr(paper.LRS, row).statistic)


@pytest.mark.parametrize(
    "cell, verdict, agrees",
    [
        (("cifar10", "resnet20", "adam"), "falls with lr", "yes"),
        (("cifar100", "resnet32", "adam"), "rises with lr", "no"),
        (("cifar10", "resnet44", "adam"), "no clear trend", "no"),
        (("cifar10", "resnet110", "adam"), "falls with lr", "—"),
        (("cifar10", "resnet20", "sgd"), "falls with lr", "—"),
    ],
)
def test_claims_agrees_with_paper(runs, cell, verdict, agrees):
    row = lr_claims.claims(runs, DROP).set_index(["dataset", "model", "optimizer"]).loc[cell]
    assert (row["avr_verdict"], row["agrees_with_paper"]) == (verdict, agrees)


def test_claims_without_paper_verdict_when_one_seed_per_lr(runs):
    one_seed = runs[runs["seed"] == 0]
    row = (
        lr_claims.claims(one_seed, DROP)
        .set_index(["dataset", "model", "optimizer"])
        .loc[("cifar10", "resnet20", "adam")]
    )
    assert (row["seeds_per_lr"], row["avr_verdict"], row["agrees_with_paper"]) == ("1", TOO_FEW_SEEDS, "—")


@pytest.mark.parametrize(
    "grad, update, mechanism, update_mechanism",
    [
        ("drop", "drop", "not measured", "not measured"),
        ("keep", "empty", "negative", "not measured"),
        ("keep", "copy", "negative", "negative"),
    ],
)
def test_claims_mechanism_columns(runs, grad, update, mechanism, update_mechanism):
    frame = runs.copy()
    if update == "empty":
        frame["update_noise_power_mean"] = np.nan
    elif update == "copy":
        frame["update_noise_power_mean"] = frame["grad_noise_c_mean"] * 2
    if grad == "drop":
        frame = frame.drop(columns="grad_noise_c_mean")
    table = lr_claims.claims(frame, DROP)
    row = table.set_index(["dataset", "model", "optimizer"]).loc[("cifar10", "resnet20", "adam")]
    assert (row["mechanism_verdict"], row["update_mechanism_verdict"]) == (mechanism, update_mechanism)
    assert math.isnan(row["mechanism_slope"]) == (mechanism == "not measured")
    if mechanism == "negative":  # A_avr = 1 / C: -1.5 points per doubling of C at A_avr ~ 0.6, within each lr
        assert row["mechanism_ci_high"] < 0 and row["mechanism_slope"] < -0.1


def test_the_noise_association_holds_lr_fixed_so_an_lr_trend_is_not_restated():
    rng = np.random.default_rng(13)
    lrs = np.repeat(paper.LRS, 5)
    frame = pd.DataFrame(
        {
            "lr": lrs,
            "avg_normalized_accuracy": 0.5 + 100 * lrs + rng.normal(0, 0.01, len(lrs)),  # rises with lr
            "grad_noise_c_mean": lrs**2 * np.exp(rng.normal(0, 0.3, len(lrs))),  # goes with lr, no effect of its own
        }
    )
    assert intervals.spearman(frame["grad_noise_c_mean"], frame["avg_normalized_accuracy"]) > 0.8  # across lrs
    found = lr_claims.association_within_lr(frame, "grad_noise_c_mean")
    assert found["verdict"] == "no clear association" and found["ci_low"] < 0 < found["ci_high"]
    planted = frame.assign(
        avg_normalized_accuracy=frame["avg_normalized_accuracy"] - 0.05 * np.log(frame["grad_noise_c_mean"] / lrs**2)
    )
    assert lr_claims.association_within_lr(planted, "grad_noise_c_mean")["verdict"] == "negative"


# ---------------------------------------------------------------- effects of batch size and train noise
def axis_table(axis: str, slope: float, rng, seeds: int = 4, levels=(16, 32, 64, 128), lr=0.001) -> pd.DataFrame:
    """A_avr = 0.6 + slope * (position of the axis value) + a seed's own offset + seed noise, the other axes
    fixed."""
    offsets = rng.normal(0, 0.02, seeds)  # what a seed (initial weights, split, batch order) shares across cells
    rows = []
    for position, value in enumerate(levels):
        for seed in range(seeds):
            row = {
                "dataset": "digits",
                "model": "resnet20",
                "optimizer": "adam",
                "lr": lr,
                "batch_size": 32,
                "train_noise": 0.0,
                "seed": seed,
                "baseline_accuracy": 0.9 + rng.normal(0, 0.002),
                "avg_normalized_accuracy": 0.6 + slope * position + offsets[seed] + rng.normal(0, 0.01),
            }
            rows.append({**row, axis: value})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("axis, levels", [("batch_size", (16, 32, 64, 128)), ("train_noise", (0.0, 0.02, 0.05, 0.1))])
def test_axis_claims_find_a_planted_effect_in_points_per_step(axis, levels):
    table = axis_effects.axis_claims(axis_table(axis, -0.03, np.random.default_rng(3), levels=levels), axis)
    assert list(table.columns) == [f.name for f in fields(axis_effects.AxisClaimRow)] and len(table) == 1
    row = table.iloc[0]
    assert row["avr_verdict"] == f"falls with {axis}" and row["n_levels"] == 4 and row["seeds_per_cell"] == "4"
    assert row["avr_p"] < 0.05 and row["avr_mde"] > (row["avr_ci_high"] - row["avr_ci_low"]) / 2  # 80 % power
    # the least-squares slope of the four cell means on log2 B (1 per step) or eta / 0.1 (0.2, 0.3, 0.5 per step)
    x = axis_effects.AXIS_UNITS[axis][0](np.asarray(levels, dtype=float))
    expected = np.polyfit(x, -0.03 * np.arange(4), 1)[0]
    assert row["avr_ci_low"] < expected < row["avr_ci_high"]
    assert np.isnan(row[axis]) and np.isnan(row["lr"])  # pooled over lrs; the swept axis


def test_axis_claims_pool_the_lrs_with_an_intercept_each_and_keep_other_axes_apart():
    rng = np.random.default_rng(4)
    two = pd.concat(
        [
            axis_table("batch_size", -0.01, rng),
            axis_table("batch_size", -0.01, rng, lr=0.002).eval(
                "avg_normalized_accuracy = avg_normalized_accuracy - 0.2"
            ),
            axis_table("batch_size", 0.03, rng, levels=(32,), lr=0.004),  # one batch size: no evidence, left out
            axis_table("batch_size", 0.03, rng).assign(train_noise=0.05),  # another train noise: its own test
        ]
    )
    table = axis_effects.axis_claims(two, "batch_size").set_index("train_noise")
    assert table.loc[0.0, "n_lrs"] == 2 and table.loc[0.0, "n_runs"] == 32
    assert table.loc[0.0, "avr_verdict"] == "falls with batch_size"  # the lrs' 20-point gap is their intercepts
    assert table.loc[0.05, "avr_verdict"] == "rises with batch_size"
    with pytest.raises(LrnoiseError, match="unknown axis 'lr'"):
        axis_effects.axis_claims(two, "lr")


def false_alarms(make, test, studies: int, seed: int) -> float:
    """The share of `studies` synthetic studies (make(rng) -> runs) in which test(runs) names an effect."""
    streams = np.random.SeedSequence(seed).spawn(studies)
    return float(np.mean([test(make(np.random.default_rng(s))) for s in streams]))


@pytest.mark.slow
def test_the_batch_size_effect_on_pure_seed_noise_is_found_at_about_the_nominal_rate():
    # the mechanism preset's design: 3 lrs x B 8, 32 x 3 seeds (benchmarks/calibration.py: 1,000 studies)
    def make(rng):
        return pd.concat(
            [axis_table("batch_size", 0.0, rng, seeds=3, levels=(8, 32), lr=lr) for lr in (5e-4, 1e-3, 2e-3)]
        )

    def names_one(runs):
        return axis_effects.axis_claims(runs, "batch_size")["avr_verdict"].iloc[0] != axis_effects.NO_AXIS_EFFECT

    rate = false_alarms(make, names_one, 200, 77)
    assert rate <= 0.09  # 5 % nominal; 200 studies: sd 1.5 %


# ---------------------------------------------------------------- the block model and Fieller's set
def test_cell_contrasts_equal_welchs_textbook_formulas():
    rng = np.random.default_rng(8)
    counts = np.array([3, 4, 2, 5])
    y = [rng.normal(c, 1 + c, n) for c, n in enumerate(counts)]  # each cell its own spread and count
    runs = pd.DataFrame({"x": np.repeat(np.arange(4), counts), "y": np.concatenate(y)})
    w = np.array([1.0, -1.0, 0.5, -0.5])
    a = w**2 * np.array([v.var(ddof=1) for v in y]) / counts  # Welch (1947): a_c = w_c^2 s_c^2 / n_c
    fitted = cellfit.fit(runs, "y", ["x"])
    got = fitted.t(w)
    assert got["estimate"] == pytest.approx(w @ [v.mean() for v in y]) and got["se"] == pytest.approx(np.sqrt(a.sum()))
    assert got["df"] == pytest.approx(a.sum() ** 2 / np.sum(a**2 / (counts - 1)))
    assert got["p"] == pytest.approx(2 * sps.t.sf(abs(got["estimate"]) / got["se"], got["df"]))
    # one contrast as a joint test: the bootstrap of t^2 with each cell's spread agrees with Welch's t test
    assert fitted.f(w) == pytest.approx(got["p"], abs=0.03)
    assert cellfit.fit(runs[runs.index % 2 == 0].head(3), "y", ["x"]) is None  # one run in a cell: no spread


@pytest.mark.parametrize("lrs, batch_sizes", [(3, 2), (3, 3), (3, 4), (4, 3)])
def test_lack_of_fit_reads_a_plane_as_a_plane_on_any_grid(lrs, batch_sizes):
    # cell means exactly on a plane in log lr and log B: the gate must not reject (it rejected every 3 x 3 and
    # 3 x 4 study when it kept the first columns of a QR of the residual projector)
    rng = np.random.default_rng(lrs * 10 + batch_sizes)
    cells = [(lr, b) for lr in 0.0005 * 2.0 ** np.arange(lrs) for b in 8 * 2.0 ** np.arange(batch_sizes)]
    mu = np.array([0.7 - 0.03 * (np.log(lr) - 0.5 * np.log(b)) for lr, b in cells])
    runs = pd.DataFrame(
        [{"lr": lr, "batch_size": b, "y": m + e} for (lr, b), m in zip(cells, mu) for e in rng.normal(0, 0.001, 3)]
    )
    fitted = cellfit.fit(runs, "y", ["lr", "batch_size"])
    design = np.column_stack([np.ones(len(cells)), np.log([c[0] for c in cells]), np.log([c[1] for c in cells])])
    assert fitted.lack_of_fit(design) > 0.05
    curved = runs.assign(y=runs["y"] + 0.02 * (np.log(runs["lr"]) - np.log(runs["lr"]).mean()) ** 2)
    assert cellfit.fit(curved, "y", ["lr", "batch_size"]).lack_of_fit(design) < 0.001


@pytest.mark.parametrize(
    "a, b, shape",
    [(-0.05, 0.025, "interval"), (0.002, 0.04, "rays"), (0.001, 0.001, "line")],
)
def test_fiellers_set_is_every_ratio_whose_contrast_is_not_rejected(a, b, shape):
    v_aa, v_ab, v_bb, t = 1e-4, 2e-5, 1e-4, 2.2
    found = cellfit.fieller(a, b, v_aa, v_ab, v_bb, t)
    assert {"interval": 1, "rays": 2, "line": 1}[shape] == len(found)
    if shape == "line":
        assert found == [(-np.inf, np.inf)]
    for r in np.linspace(-10, 10, 2001):  # inside the set <=> |b - r a| <= t se(b - r a)
        accepted = (b - r * a) ** 2 <= t * t * (v_bb - 2 * r * v_ab + r * r * v_aa)
        assert any(low <= r <= high for low, high in found) == accepted, r


# ---------------------------------------------------------------- eq. 2
def eq2_table(effect: float, ratio: float, rng, seeds: int = 3, noise: float = 0.01) -> pd.DataFrame:
    """A_avr = 0.7 + effect * (log lr + ratio * log B) + a seed's offset + seed noise: b / a is `ratio`."""
    offsets = rng.normal(0, noise, seeds)
    rows = []
    for lr in (0.0005, 0.001, 0.002):
        for batch_size in (16, 64):
            for seed in range(seeds):
                u = np.log(lr) + ratio * np.log(batch_size)
                rows.append(
                    {
                        "dataset": "digits",
                        "model": "resnet20",
                        "optimizer": "adam",
                        "lr": lr,
                        "batch_size": batch_size,
                        "seed": seed,
                        "baseline_accuracy": 0.9,
                        "avg_normalized_accuracy": 0.7 + effect * u + offsets[seed] + rng.normal(0, noise),
                    }
                )
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    "ratio, verdict",
    [
        (-0.5, "excludes lr/B and lr alone; does not exclude lr^2/B"),
        (-1.0, "excludes lr^2/B and lr alone; does not exclude lr/B"),
        (0.0, "excludes lr^2/B and lr/B; does not exclude lr alone"),
        (0.5, "excludes lr^2/B, lr/B and lr alone (none of the three predictions holds)"),
    ],
)
def test_eq2_names_the_predictions_a_planted_ratio_excludes(ratio, verdict):
    found = eq2.eq2_test(eq2_table(-0.05, ratio, np.random.default_rng(6), noise=0.005))
    assert list(found.columns) == eq2.EQ2_COLUMNS and len(found) == 1
    assert [f"p_{name}" for name in eq2.PREDICTIONS] == [c for c in eq2.EQ2_COLUMNS if c.startswith("p_")]
    row = found.iloc[0]
    assert row["verdict"] == verdict and row["effect_p"] < 0.001
    assert row["ratio"] == pytest.approx(ratio, abs=0.15) and row["ratio_set"].startswith("[")
    assert row["lr_slope_ci_low"] < -0.05 < row["lr_slope_ci_high"]
    assert (row["n_lrs"], row["n_batch_sizes"], row["seeds_per_cell"], row["kind"]) == (3, 2, "3", eq2.PREDICTS)


def test_eq2_cannot_tell_the_two_noise_scales_apart_on_a_weak_effect():
    row = eq2.eq2_test(eq2_table(-0.012, -0.75, np.random.default_rng(11), noise=0.008)).iloc[0]
    assert row["verdict"] == "excludes lr alone; cannot tell lr^2/B from lr/B", row["ratio_set"]
    assert row["p_lr^2/B"] >= 0.05 and row["p_lr/B"] >= 0.05 and row["p_lr alone"] < 0.05


def test_eq2_gates_a_curved_response_and_seeds_too_few():
    frame = eq2_table(0.0, -0.5, np.random.default_rng(12), noise=0.002)
    u = 2 * np.log(frame["lr"]) - np.log(frame["batch_size"])
    frame["avg_normalized_accuracy"] += 0.02 * (u - u.mean()) ** 2  # depends on lr^2 / B, but not on a plane
    row = eq2.eq2_test(frame).iloc[0]
    assert row["verdict"] == eq2.CURVED and row["lack_of_fit_p"] < 0.05
    one_seed = eq2.eq2_test(eq2_table(-0.05, -0.5, np.random.default_rng(6), seeds=1)).iloc[0]
    assert one_seed["verdict"] == TOO_FEW_SEEDS


@pytest.mark.slow
def test_eq2_on_pure_seed_noise_finds_an_effect_at_about_the_nominal_rate():
    # 3 seeds per (lr, B), seeds as blocks (benchmarks/calibration.py: 1,000 studies each at 3 and 5 seeds)
    rate = false_alarms(
        lambda rng: eq2_table(0.0, -0.5, rng),
        lambda runs: eq2.eq2_test(runs)["verdict"].iloc[0] != eq2.NO_EFFECT,
        200,
        99,
    )
    assert rate <= 0.09


def test_eq2_reads_a_measured_noise_power_on_a_log_scale():
    rng = np.random.default_rng(6)
    frame = eq2_table(-0.05, -0.5, rng)
    frame["grad_noise_power_mean"] = [
        lr**2 / b * np.exp(rng.normal(0, 0.05))  # eq. 2: lr^2 C / B
        for lr, b in zip(frame["lr"], frame["batch_size"])
    ]
    row = eq2.eq2_test(frame, "grad_noise_power_mean", log_value=True).iloc[0]
    assert row["value"] == "log grad_noise_power_mean" and row["kind"] == eq2.SCALES
    assert row["verdict"].startswith("scales as lr^+2.0") and " x B^-1.0" in row["verdict"]  # exponents, no prediction
    assert row["lr_slope"] == pytest.approx(2.0, abs=0.1) and row["b_slope"] == pytest.approx(-1.0, abs=0.1)


# ---------------------------------------------------------------- lr tuning vs noise-injection training
def frontier_table(rng, noise_gain: float, seeds: int = 3) -> pd.DataFrame:
    """An lr sweep (clean; A_avr falls with lr) and a train-noise sweep at lr 0.00075 (eta 0 is the clean run
    there); the noise sweep's A_avr moves by noise_gain per step of eta at the same clean accuracy."""
    rows = []
    configs = [(lr, 0.0, 0.95, 0.70 - 200 * (lr - 0.0005)) for lr in (0.0005, 0.00075, 0.001, 0.002)]
    configs += [(0.00075, tn, 0.95, 0.65 + noise_gain * (i + 1)) for i, tn in enumerate((0.02, 0.05, 0.1))]
    for lr, tn, base, avr in configs:
        for seed in range(seeds):
            rows.append(
                {
                    "dataset": "digits",
                    "model": "resnet20",
                    "optimizer": "adam",
                    "lr": lr,
                    "batch_size": 64,
                    "train_noise": tn,
                    "seed": seed,
                    "baseline_accuracy": base + rng.normal(0, 0.002),
                    "avg_normalized_accuracy": avr + rng.normal(0, 0.005),
                }
            )
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    "gain, verdict", [(0.05, "noise-injection training dominates"), (-0.05, "lr tuning dominates")]
)
def test_frontier_names_the_method_that_buys_more_robustness(gain, verdict):
    found = frontier.frontier(frontier_table(np.random.default_rng(8), gain), DROP)
    assert list(found.columns) == [f.name for f in fields(frontier.FrontierRow)] and len(found) == 1
    row = found.iloc[0]
    assert row["verdict"] == verdict and row["noise_lr"] == 0.00075 and row["lr_best_lr"] == 0.0005
    assert row["ci_low"] <= row["difference"] <= row["ci_high"]
    if gain > 0:
        assert row["noise_best_train_noise"] == 0.1 and row["difference"] == pytest.approx(0.10, abs=0.02)


def test_frontier_leaves_out_a_configuration_below_the_accuracy_margin():
    frame = frontier_table(np.random.default_rng(9), 0.05)
    frame.loc[frame["train_noise"] == 0.1, "baseline_accuracy"] -= 0.05  # the most robust one costs 5 points
    row = frontier.frontier(frame, max_accuracy_drop=0.01).iloc[0]
    assert row["noise_best_train_noise"] == 0.05
    assert frontier.frontier(frame, max_accuracy_drop=0.1).iloc[0]["noise_best_train_noise"] == 0.1


def test_frontier_reads_both_methods_at_a_fixed_target_and_says_who_reaches_it():
    frame = frontier_table(np.random.default_rng(10), 0.05)
    derived = frontier.frontier(frame, DROP).iloc[
        0
    ]  # from the eta = 0 configuration (lr 0.00075): its mean less 1 point
    eta0 = frame[(frame["lr"] == 0.00075) & (frame["train_noise"] == 0)]["baseline_accuracy"].mean()
    assert derived["target_accuracy"] == pytest.approx(eta0 - 0.01) and derived["target_from"].startswith("eta 0")
    assert derived["lr_reach_share"] == derived["noise_reach_share"] == 1.0 and derived["n_pairs"] == 12
    frame.loc[frame["train_noise"] > 0, "baseline_accuracy"] -= 0.03  # noise training costs 3 points of a_0
    row = frontier.frontier(frame, DROP, target_accuracy=0.94).iloc[0]
    assert (row["target_accuracy"], row["target_from"]) == (0.94, "given")
    assert row["verdict"] == "only lr tuning reaches the target" and row["noise_reach_share"] == 0.0
    assert np.isnan(row["noise_best_avr"]) and np.isnan(row["difference"]) and np.isnan(row["ci_low"])
    assert "no configuration at the target" in claims_text.frontier_line(row)
    none = frontier.frontier(frame, DROP, target_accuracy=0.99).iloc[0]
    assert none["verdict"] == "neither method reaches the target"


@pytest.mark.slow
def test_frontier_on_equal_methods_mostly_finds_no_clear_difference():
    frames = []
    for stream in np.random.SeedSequence(5).spawn(40):  # every configuration alike: pure seed noise
        rng = np.random.default_rng(stream)
        frame = frontier_table(rng, 0.0)
        frame["avg_normalized_accuracy"] = 0.7 + rng.normal(0, 0.005, len(frame))
        frames.append(frame)
    verdicts = [frontier.frontier(f, DROP, seed=i)["verdict"].iloc[0] for i, f in enumerate(frames)]
    assert verdicts.count("no clear difference") >= 36
