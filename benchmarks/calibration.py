"""Every verdict lrnoise prints, calibrated on synthetic studies of the design it is used on.

`python benchmarks/calibration.py [--studies N]` (default 1,000 per figure; about 22 minutes on a 2-core AVX-512
EPYC, one core busy): for each preset's design it draws N synthetic studies, runs the verdict exactly as the report
does (lrnoise.analysis: lr_claims, axis_effects, eq2, frontier), and measures how often it names an effect where
there is none (false alarm), how often it finds a planted one (power), and how often its interval holds the truth
(coverage). The figures go into benchmarks/results.json under "calibration" and the table in docs/statistics.md is
generated from them (between its markers).

A synthetic study on its own model: A_avr of run (cell c, seed s) = mu_c + o_s + e_cs, where o_s ~ N(0,
SEED_SHARED) is what a seed (initial weights, validation split, batch order) gives every cell alike and e_cs ~
N(0, SEED_OWN) is the rest: 2.5 points of seed spread in all, as the digits studies show. Baselines ~ 95 % with
the same structure. Off its own model: the spread rising 3x across the cells, every value rounded to a test
set's accuracy step (ties), grids of any size, and residuals resampled from real studies (benchmarks/residuals.csv,
written by benchmarks/residuals.py from finished `--preset seeds`, `mechanism` and `fashion` stores): the residual
bootstrap (each synthetic study draws every run's deviation with replacement from one real study's seed-to-seed
residuals, one run in five cells dropped as a model that did not learn would be, around a null or a planted
effect; PCM's A_avr near its 96-98 % ceiling and the baselines' ties are among them) and, as a stress on the
spreads, each synthetic cell given a real cell's sample sd (calibration_robust.cell_spread_draw). The whole report
(lrnoise.analysis.verdicts: every table, then the family) runs on each synthetic study for the family-wise figures.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

import calibration_residuals as residual_figures  # noqa: E402
import calibration_robust as off  # noqa: E402

from lrnoise import grid, names, paper  # noqa: E402
from lrnoise.analysis import axis_effects, frontier, lr_claims, run_table  # noqa: E402
from lrnoise.analysis.eq2 import CURVED, GATES, NO_EFFECT, PREDICTIONS, eq2_test  # noqa: E402
from lrnoise.settings import ReportSettings  # noqa: E402

DROP = ReportSettings.max_accuracy_drop  # the report's default accuracy margin (1 point)

SEED_SHARED = 0.015  # sd of a seed's offset shared by every cell (fraction of A_avr)
SEED_OWN = 0.02  # sd of the rest of a run's seed noise
MAX_FALSE_ALARM = 0.06  # what every false-alarm figure must stay under (5 % nominal + Monte-Carlo slack)
MIN_COVERAGE = 0.90
MECHANISM_LRS = grid.PRESETS["mechanism"]["blocks"][0]["lrs"]
MECHANISM_BATCH_SIZES = grid.PRESETS["mechanism"]["blocks"][0]["batch_sizes"]
TRAIN_NOISES = grid.PRESETS["mechanism"]["blocks"][1]["train_noises"]
EQ2_EFFECT = 0.03  # planted |a|: A_avr moves 3 points per unit of log lr (4 points over the mechanism lrs)


def runs_of(cells: list[dict], mu: np.ndarray, seeds: int, rng: np.random.Generator, paired=True) -> pd.DataFrame:
    """One run per (cell, seed): A_avr = mu_c + seed offset + own noise; the cells' axes from `cells`. Without
    `paired` a seed shares nothing across cells (the same 2.5 points of spread, all of it the run's own)."""
    draw = (
        off.normal_draw([SEED_OWN], SEED_SHARED) if paired else off.normal_draw([np.hypot(SEED_SHARED, SEED_OWN)], 0.0)
    )
    return off.study(cells, mu, draw, seeds, rng, step=None)


def rate(hits: list[bool]) -> float:
    return float(np.mean(hits))


# ---------------------------------------------------------------- the verdicts, on their designs
def lr_trend(studies: int, seeds: int, slope: float, rng, paired: bool = True, lrs=paper.LRS) -> float:
    """Share of studies whose A_avr-vs-lr verdict names a trend (the paper's six lrs, or `lrs`; A_avr + slope per
    lr step)."""
    cells = [{"lr": lr} for lr in lrs]
    mu = 0.7 + slope * np.arange(len(cells))
    return rate(
        [
            lr_claims.trend(runs_of(cells, mu, seeds, rng, paired), names.AVG_NORMALIZED_ACCURACY)["verdict"]
            != lr_claims.NO_TREND
            for _ in range(studies)
        ]
    )


def sweet_spot(studies: int, seeds: int, rng) -> tuple[float, float]:
    """(how often the sweet spot is the true one, the mean share of resamples the report gives it) on the demo's
    six lrs, A_avr rising by 1.5 points per lr step and every baseline alike, so the true sweet spot is the
    largest lr. A share that means what it says is close to the hit rate."""
    cells = [{"lr": lr} for lr in paper.LRS]
    mu = 0.7 + 0.015 * np.arange(len(cells))
    hits, shares = [], []
    for i in range(studies):
        runs = runs_of(cells, mu, seeds, rng)
        columns = (runs, names.BASELINE_ACCURACY, names.AVG_NORMALIZED_ACCURACY, 0.01)
        spot = lr_claims.sweet_spot(*columns)
        shares.append(lr_claims.sweet_spot_shares(*columns, seed=i).get(spot, 0.0))
        hits.append(spot == paper.LRS[-1])
    return rate(hits), float(np.mean(shares))


def association(studies: int, seeds: int, slope: float, rng, lrs=paper.LRS) -> float:
    """Share of studies whose gradient-noise-vs-A_avr verdict names an association, in a cell of the paper's six
    lrs where the measured noise C goes as lr^2 (x a run's own log-normal spread) and has no effect of its own;
    A_avr moves with lr by `slope` per lr step (0: pure noise)."""
    cells = [{"lr": lr} for lr in lrs]
    mu = 0.7 + slope * np.arange(len(cells))
    named = []
    for _ in range(studies):
        runs = runs_of(cells, mu, seeds, rng)
        runs[names.GRAD_NOISE_C_MEAN] = runs["lr"] ** 2 * np.exp(rng.normal(0, 0.3, len(runs)))
        found = lr_claims.association_within_lr(runs, names.GRAD_NOISE_C_MEAN)
        named.append(found["verdict"] != lr_claims.NO_ASSOCIATION)
    return rate(named)


def axis_effect(studies: int, axis: str, effect: float, rng, paired: bool = True) -> tuple[float, float]:
    """(share naming an effect, coverage of the effect's interval) of the pooled axis test on the mechanism
    design: batch size 8 and 32 at its three lrs, or its four train noises at one lr; effect per AXIS_UNITS step."""
    to_x = axis_effects.AXIS_UNITS[axis][0]
    if axis == "batch_size":
        cells = [{"lr": lr, "batch_size": b} for lr in MECHANISM_LRS for b in MECHANISM_BATCH_SIZES]
    else:
        cells = [{"lr": 0.00075, "train_noise": eta} for eta in TRAIN_NOISES]
    mu = np.array([0.7 - 10 * c["lr"] + effect * to_x(float(c[axis])) for c in cells])
    named, covered = [], []
    for _ in range(studies):
        row = axis_effects.axis_claims(runs_of(cells, mu, 3, rng, paired), axis).iloc[0]
        named.append(row["avr_verdict"] != "no clear effect")
        covered.append(row["avr_ci_low"] <= effect <= row["avr_ci_high"])
    return rate(named), rate(covered)


def eq2(studies: int, seeds: int, truth: str | None, rng, paired: bool = True) -> dict:
    """The eq. 2 verdict on the mechanism design: A_avr = 0.7 - a (log lr + r log B), r of `truth` (None: no
    effect). Returns the share with an effect found, with the truth excluded, with each rival excluded, with
    the truth inside Fieller's set, and with the response called curved."""
    cells = [{"lr": lr, "batch_size": b} for lr in MECHANISM_LRS for b in MECHANISM_BATCH_SIZES]
    r = PREDICTIONS[truth] if truth else 0.0
    a = EQ2_EFFECT if truth else 0.0
    mu = np.array([0.7 - a * (np.log(c["lr"]) + r * np.log(c["batch_size"])) for c in cells])
    found = []
    for _ in range(studies):
        row = eq2_test(runs_of(cells, mu, seeds, rng, paired)).iloc[0]
        excluded = set(filter(None, row["excluded"].split(", "))) if row["verdict"] not in GATES else set()
        found.append((row["verdict"], excluded, row[f"p_{truth}"] if truth else np.nan))
    out = {"effect": rate([v != NO_EFFECT for v, _, _ in found])}
    if truth:
        out["truth_excluded"] = rate([truth in e for _, e, _ in found])
        out["covered"] = rate([p >= 0.05 for _, _, p in found])  # r in Fieller's set <=> its contrast holds
        out["curved"] = rate([v == CURVED for v, _, _ in found])
        for rival in PREDICTIONS:
            if rival != truth:
                out[f"excludes {rival}"] = rate([rival in e for _, e, _ in found])
    return out


def frontier_rates(studies: int, gain: float, rng) -> tuple[float, float, float]:
    """(share naming a winner, coverage of the chosen configurations' true difference, coverage of the best
    against the best) of the lr-tuning vs noise-injection frontier on the mechanism design's B = 32 block: clean
    lrs 0.0005-0.002, noise training at 0.00075 whose A_avr rises by `gain` at eta 0.1 (linearly in eta), every
    baseline alike."""
    cells = [{"lr": lr, "train_noise": 0.0} for lr in (*MECHANISM_LRS, 0.00075)]
    cells += [{"lr": 0.00075, "train_noise": eta} for eta in TRAIN_NOISES if eta > 0]
    mu = np.array([0.7 + gain * c["train_noise"] / max(TRAIN_NOISES) for c in cells])
    truth = {(c["lr"], c["train_noise"]): m for c, m in zip(cells, mu)}
    named, chosen, best = [], [], []
    for i in range(studies):
        row = frontier.frontier(runs_of(cells, mu, 3, rng), DROP, seed=i).iloc[0]
        named.append(row["verdict"] not in (frontier.NO_CLEAR, run_table.TOO_FEW_SEEDS))
        if not np.isfinite(row["difference"]):  # a method did not reach the target: no interval stated
            chosen.append(False)
            best.append(False)
            continue
        picked = truth[(row["noise_lr"], row["noise_best_train_noise"])] - truth[(row["lr_best_lr"], 0.0)]
        chosen.append(bool(row["ci_low"] <= picked <= row["ci_high"]))
        best.append(bool(row["ci_low"] <= gain <= row["ci_high"]))
    return rate(named), rate(chosen), rate(best)


# ---------------------------------------------------------------- the table
def figures(studies: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []

    def add(verdict, design, truth, figure, value, target, key=None, n=None):
        n = n or studies
        rows.append(
            {
                "key": key,
                "mcse": round(float(np.sqrt(max(value * (1 - value), 0.0) / n)), 4) if 0 <= value <= 1 else None,
                "verdict": verdict,
                "design": design,
                "truth": truth,
                "figure": figure,
                "value": round(float(value), 4),
                "studies": studies,
                "target": target,
            }
        )
        print(f"{verdict:28} {design:44} {truth:34} {figure:22} {value:.3f}", flush=True)

    for preset, seeds in (("demo", 3), ("seeds", 5)):
        design = f"{preset}: 6 lrs x {seeds} seeds"
        add("A_avr trend over lr", design, "none", "false alarm", lr_trend(studies, seeds, 0.0, rng), "<= 0.06")
        unpaired = lr_trend(studies, seeds, 0.0, rng, paired=False)
        add("A_avr trend over lr", design, "none, seeds unpaired", "false alarm", unpaired, "<= 0.06")
        add("A_avr trend over lr", design, "+1 pt per lr step", "power", lr_trend(studies, seeds, 0.01, rng), None)
    design = "mechanism: 3 lrs x 3 seeds (a batch size's cell)"
    add(
        "A_avr trend over lr",
        design,
        "none",
        "false alarm",
        lr_trend(studies, 3, 0.0, rng, lrs=MECHANISM_LRS),
        "<= 0.06",
    )
    unpaired = lr_trend(studies, 3, 0.0, rng, paired=False, lrs=MECHANISM_LRS)
    add("A_avr trend over lr", design, "none, seeds unpaired", "false alarm", unpaired, "<= 0.06")
    design = "demo: 6 lrs x 3 seeds"
    add("measured noise vs A_avr", design, "none", "false alarm", association(studies, 3, 0.0, rng), "<= 0.06")
    add(
        "measured noise vs A_avr",
        design,
        "A_avr +1 pt per lr step, noise none",
        "false alarm",
        association(studies, 3, 0.01, rng),
        "<= 0.06",
    )
    design = "mechanism: 3 lrs x B 8, 32 x 3 seeds"
    named, covered = axis_effect(studies, "batch_size", 0.0, rng)
    add("batch-size effect", design, "none", "false alarm", named, "<= 0.06")
    named, covered = axis_effect(studies, "batch_size", 0.0, rng, paired=False)
    add("batch-size effect", design, "none, seeds unpaired", "false alarm", named, "<= 0.06")
    named, covered = axis_effect(studies, "batch_size", -0.02, rng)
    add("batch-size effect", design, "-2 pt per doubling", "power", named, None)
    add("batch-size effect", design, "-2 pt per doubling", "coverage", covered, ">= 0.90")
    noise_design = "mechanism: 4 train noises x 3 seeds"
    named, covered = axis_effect(studies, "train_noise", 0.0, rng)
    add("train-noise effect", noise_design, "none", "false alarm", named, "<= 0.06")
    named, covered = axis_effect(studies, "train_noise", 0.03, rng)
    add("train-noise effect", noise_design, "+3 pt per 0.1 eta", "power", named, None)
    add("train-noise effect", noise_design, "+3 pt per 0.1 eta", "coverage", covered, ">= 0.90")
    for seeds in (3, 5):
        design = f"mechanism: 3 lrs x B 8, 32 x {seeds} seeds"
        add("eq. 2 effect gate", design, "none", "false alarm", eq2(studies, seeds, None, rng)["effect"], "<= 0.06")
        unpaired = eq2(studies, seeds, None, rng, paired=False)["effect"]
        add("eq. 2 effect gate", design, "none, seeds unpaired", "false alarm", unpaired, "<= 0.06")
        for truth in PREDICTIONS:
            found = eq2(studies, seeds, truth, rng)
            planted = f"{truth} (|a| = {EQ2_EFFECT})"
            add("eq. 2 predictions", design, planted, "truth excluded", found["truth_excluded"], "<= 0.06")
            add("eq. 2 ratio b/a", design, planted, "coverage", found["covered"], ">= 0.90")
            add("eq. 2 predictions", design, planted, "called curved", found["curved"], None)
            for key, value in found.items():
                if key.startswith("excludes"):
                    add("eq. 2 predictions", design, planted, f"power: {key}", value, None)
    design = "mechanism: B 32, 4 lrs + 3 train noises x 3 seeds"
    named, chosen, _ = frontier_rates(studies, 0.0, rng)
    add("frontier", design, "no difference", "false alarm", named, "<= 0.06")
    add("frontier", design, "no difference", "coverage", chosen, ">= 0.90")
    named, chosen, best = frontier_rates(studies, 0.08, rng)
    add("frontier", design, "noise training +8 pt", "power", named, None)
    add("frontier", design, "noise training +8 pt", "coverage", chosen, ">= 0.90")
    add("frontier", design, "noise training +8 pt", "coverage of best vs best", best, None)
    design = "demo: 6 lrs x 3 seeds"
    hit, share = sweet_spot(studies, 3, rng)
    add("sweet spot", design, "+1.5 pt per lr step, largest lr best", "chosen right", hit, None)
    add("sweet spot", design, "+1.5 pt per lr step, largest lr best", "mean share reported", share, None)
    design = "mechanism: 3 lrs x 3 seeds (a batch size's cell)"
    for truth, slope in (("none", 0.0), ("A_avr +1 pt per lr step, noise none", 0.01)):
        named = association(studies, 3, slope, rng, lrs=MECHANISM_LRS)
        add("measured noise vs A_avr", design, truth, "false alarm", named, "<= 0.06")
    robust_figures(studies, rng, add)
    return rows


def robust_figures(studies: int, rng, add) -> None:
    """The figures off the verdicts' own model (calibration_robust)."""
    for seeds in (3, 5):
        add(
            "A_avr trend over lr",
            f"6 lrs x {seeds} seeds, spread rising 3x across the lrs",
            "none",
            "false alarm",
            off.trend_unequal_spread(studies, seeds, rng),
            "<= 0.06",
            key="trend_unequal_spread" if seeds == 3 else "trend_unequal_spread_5_seeds",
        )
    for lrs, batch_sizes in ((3, 2), (3, 3), (3, 4), (4, 3)):
        found = off.lack_of_fit(studies, lrs, batch_sizes, rng)
        design = f"{lrs} lrs x {batch_sizes} batch sizes x 3 seeds, values rounded to 1/360"
        truth = "a plane, lr^2/B (|a| = 0.03)"
        add(
            "eq. 2 lack of fit",
            design,
            truth,
            "called curved",
            found["curved"],
            "<= 0.06",
            key=f"eq2_lack_of_fit_{lrs}x{batch_sizes}",
        )
        add("eq. 2 predictions", design, truth, "truth excluded", found["truth_excluded"], "<= 0.06")
    found = off.lack_of_fit(studies, 3, 2, rng, wide_cell=True)
    design = "mechanism: 3 lrs x B 8, 32 x 3 seeds, one cell 3x the spread"
    add(
        "eq. 2 predictions",
        design,
        "lr^2/B (|a| = 0.03)",
        "truth excluded",
        found["truth_excluded"],
        "<= 0.06",
        key="eq2_unequal_spread",
    )
    design = "mechanism: B 32, 4 lrs + 3 train noises x 3 seeds"
    add(
        "frontier",
        design,
        "4 lrs tied at the best, eta 0.1 equal",
        "winner named",
        off.frontier_tied(studies, True, rng),
        "<= 0.06",
        key="frontier_tied_lrs",
    )
    add(
        "frontier",
        design,
        "3 etas tied at the best, lr 0.00075 equal",
        "winner named",
        off.frontier_tied(studies, False, rng),
        "<= 0.06",
        key="frontier_tied_etas",
    )
    _, _, best = frontier_rates(studies, 0.08, rng)
    add(
        "frontier",
        design,
        "noise training +8 pt",
        "coverage of best vs best",
        best,
        ">= 0.93",
        key="frontier_coverage_8pt",
    )
    named, _, _ = frontier_rates(studies, 0.15, rng)
    add("frontier", design, "noise training +15 pt", "power", named, None)
    on_model = (off.normal_draw([0.025]), off.normal_draw([0.01], shared=0.0))
    for name, make in (("demo", off.demo_report), ("mechanism", off.mechanism_report), ("fashion", off.fashion_report)):
        any_primary, exploratory = off.family_wise(studies, make, rng, on_model)
        design = f"{name}: the whole report, pure noise"
        add(
            "primary family (Holm)",
            design,
            "none",
            ">= 1 false primary",
            any_primary,
            "<= 0.06",
            key=f"family_wise_{name}",
        )
        add("exploratory verdicts", design, "none", "false ones per report", exploratory, None)
    residual_figures.residual_figures(studies, rng, add)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=1000, help="synthetic studies per figure (>= 500 to publish)")
    args = parser.parse_args()
    started = time.perf_counter()
    rows = figures(args.studies)
    results_path = HERE / "results.json"
    results = json.loads(results_path.read_text())
    results["calibration"] = rows
    results_path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    import table

    table.write_calibration(rows)
    print(f"{len(rows)} figures, {args.studies} studies each, in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
